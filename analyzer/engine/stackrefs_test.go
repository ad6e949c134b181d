package engine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/shm"
)

func (s *stream) stack(pid, tid uint32, ts, id uint64, pcs ...uint64) *stream {
	return s.add(pid, tid, shm.AppendStack(nil, ts, 0, shm.Stack{ID: id, PCs: pcs}))
}

// TestStacksForgotten: the engine keeps a stack while a process or a
// fork cut that wrote or inherited it lives (stackrefs.go R1-R2), and
// each process's report gets the stacks of its sites even after another
// holder ended; with every process ended, no stack is left.
func TestStacksForgotten(t *testing.T) {
	const a, b, child = 500, 501, 502
	type step struct {
		end       uint32   // the process ended at this step
		wantKept  []uint64 // the stacks the engine holds after it
		wantStack []uint64 // the stacks of the ended process's report
	}
	for _, tc := range []struct {
		name  string
		recs  func(s *stream)
		steps []step
	}{
		{
			name: "two processes share a stack id",
			recs: func(s *stream) {
				s.process(a, a, 1*ms, shm.ProcessStart, 1, "/bin/a").
					stack(a, a, 2*ms, 10, 0x401000).malloc(a, a, 2*ms, 0x1000, 16, 10).
					stack(a, a, 3*ms, 11, 0x401100).malloc(a, a, 3*ms, 0x1100, 16, 11).
					process(b, b, 1*ms, shm.ProcessStart, 1, "/bin/a").
					stack(b, b, 4*ms, 10, 0x401000).malloc(b, b, 4*ms, 0x2000, 16, 10)
			},
			steps: []step{
				{end: a, wantKept: []uint64{10}, wantStack: []uint64{10, 11}},
				{end: b, wantKept: nil, wantStack: []uint64{10}},
			},
		},
		{
			// The child writes no STACK of its own: its inherited block
			// uses the parent's, which must outlive the parent. The FORKED
			// record comes first: the cut holds the stacks until the
			// child takes it. STACK records are applied as they are read,
			// the FORKED record in time order, so the cut also holds 11,
			// written after the fork: kept a little longer, never too
			// short.
			name: "a fork child inherits its parent's stacks (cut)",
			recs: func(s *stream) {
				s.process(a, a, 1*ms, shm.ProcessStart, 1, "/bin/a").
					stack(a, a, 2*ms, 10, 0x401000).malloc(a, a, 2*ms, 0x1000, 16, 10).
					forked(a, 3*ms, 1).
					stack(a, a, 4*ms, 11, 0x401100).malloc(a, a, 4*ms, 0x1100, 16, 11).
					forkChild(child, a, 5*ms, 1)
			},
			steps: []step{
				{end: a, wantKept: []uint64{10, 11}, wantStack: []uint64{10, 11}},
				{end: child, wantKept: nil, wantStack: []uint64{10}},
			},
		},
		{
			// The child's STACK records are read before its fork is
			// applied in time order: it holds 10 and 12 when it takes the
			// cut's 10 and 11. 10, held by both, must be counted once.
			name: "a fork child that wrote stacks before taking its cut (fewer than the cut's)",
			recs: func(s *stream) {
				s.process(a, a, 1*ms, shm.ProcessStart, 1, "/bin/a").
					stack(a, a, 2*ms, 10, 0x401000).malloc(a, a, 2*ms, 0x1000, 16, 10).
					forked(a, 3*ms, 1).
					stack(a, a, 4*ms, 11, 0x401100).malloc(a, a, 4*ms, 0x1100, 16, 11).
					forkChild(child, a, 5*ms, 1).
					stack(child, child, 6*ms, 10, 0x401000).
					stack(child, child, 6*ms, 12, 0x401200).malloc(child, child, 6*ms, 0x3000, 16, 12)
			},
			steps: []step{
				{end: a, wantKept: []uint64{10, 11, 12}, wantStack: []uint64{10, 11}},
				{end: child, wantKept: nil, wantStack: []uint64{10, 12}},
			},
		},
		{
			name: "a fork child that wrote stacks before taking its cut (more than the cut's)",
			recs: func(s *stream) {
				s.process(a, a, 1*ms, shm.ProcessStart, 1, "/bin/a").
					stack(a, a, 2*ms, 10, 0x401000).malloc(a, a, 2*ms, 0x1000, 16, 10).
					forked(a, 3*ms, 1).
					forkChild(child, a, 5*ms, 1).
					stack(child, child, 6*ms, 10, 0x401000).
					stack(child, child, 6*ms, 12, 0x401200).malloc(child, child, 6*ms, 0x3000, 16, 12).
					stack(child, child, 7*ms, 13, 0x401300).malloc(child, child, 7*ms, 0x3100, 16, 13)
			},
			steps: []step{
				{end: a, wantKept: []uint64{10, 12, 13}, wantStack: []uint64{10}},
				{end: child, wantKept: nil, wantStack: []uint64{10, 12, 13}},
			},
		},
		{
			name: "a fork child inherits its parent's stacks (not numbered)",
			recs: func(s *stream) {
				s.process(a, a, 1*ms, shm.ProcessStart, 1, "/bin/a").
					stack(a, a, 2*ms, 10, 0x401000).malloc(a, a, 2*ms, 0x1000, 16, 10).
					forkChild(child, a, 3*ms, 0).
					stack(child, child, 4*ms, 12, 0x401200).malloc(child, child, 4*ms, 0x3000, 16, 12)
			},
			steps: []step{
				{end: a, wantKept: []uint64{10, 12}, wantStack: []uint64{10}},
				{end: child, wantKept: nil, wantStack: []uint64{10, 12}},
			},
		},
		{
			// An exec keeps the old image's stacks until the process ends.
			name: "exec",
			recs: func(s *stream) {
				s.process(a, a, 1*ms, shm.ProcessStart, 1, "/bin/a").
					stack(a, a, 2*ms, 10, 0x401000).malloc(a, a, 2*ms, 0x1000, 16, 10).
					process(a, a, 3*ms, shm.ProcessExec, 1, "/bin/b").
					stack(a, a, 4*ms, 20, 0x501000).malloc(a, a, 4*ms, 0x1000, 16, 20)
			},
			steps: []step{{end: a, wantKept: nil, wantStack: []uint64{20}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStream(t)
			tc.recs(s)
			e := run(t, time.Millisecond, s.recs)
			e.Flush()
			for _, st := range tc.steps {
				p := e.EndProcess(st.end, ExitStatus{})
				require.NotNil(t, p, "process %d", st.end)
				assert.ElementsMatch(t, st.wantStack, keysOf(p.Stacks), "process %d: its report's stacks", st.end)
				assert.ElementsMatch(t, st.wantKept, keysOf(e.stacks), "after process %d: stacks kept", st.end)
				assert.Len(t, e.stackRefs, len(st.wantKept), "after process %d: stacks counted", st.end)
			}
			assert.Empty(t, e.forkCuts)
		})
	}
}

// TestStacksForgottenAfterRestore: a restored state holds the same
// stacks for the same processes (the held ids are in the state, the
// counts rebuilt from them).
func TestStacksForgottenAfterRestore(t *testing.T) {
	const a, b = 500, 501
	s := newStream(t)
	s.process(a, a, 1*ms, shm.ProcessStart, 1, "/bin/a").
		stack(a, a, 2*ms, 10, 0x401000).malloc(a, a, 2*ms, 0x1000, 16, 10).
		process(b, b, 1*ms, shm.ProcessStart, 1, "/bin/a").
		stack(b, b, 3*ms, 10, 0x401000).malloc(b, b, 3*ms, 0x2000, 16, 10).
		stack(b, b, 4*ms, 11, 0x401100).malloc(b, b, 4*ms, 0x2100, 16, 11)
	e := run(t, time.Millisecond, s.recs)
	e.Flush()
	restored := New(Options{ReorderWindow: time.Millisecond})
	require.NoError(t, restored.RestoreState(e.AppendState(nil)))
	assert.Equal(t, map[uint64]int32{10: 2, 11: 1}, restored.stackRefs)
	require.NotNil(t, restored.EndProcess(b, ExitStatus{}))
	assert.ElementsMatch(t, []uint64{10}, keysOf(restored.stacks))
	p := restored.EndProcess(a, ExitStatus{})
	require.NotNil(t, p)
	assert.ElementsMatch(t, []uint64{10}, keysOf(p.Stacks))
	assert.Empty(t, restored.stacks)
	assert.Empty(t, restored.stackRefs)
}

func keysOf[V any](m map[uint64]V) []uint64 {
	var ks []uint64
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
