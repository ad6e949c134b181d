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

// TestStacksForgotten: each process sees the stacks it wrote and those
// its parent had when it forked (stacktable.go T2), its report gets the
// stacks of its sites even after its parent ended, and the stacks of
// the living processes are counted (T3): none once every process ended.
func TestStacksForgotten(t *testing.T) {
	const a, b, child = 500, 501, 502
	type step struct {
		end       uint32   // the process ended at this step
		wantKept  []uint64 // the stacks the living processes see after it
		wantOwned int      // the stacks they wrote (ownedStacks)
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
				{end: a, wantKept: []uint64{10}, wantOwned: 1, wantStack: []uint64{10, 11}},
				{end: b, wantKept: nil, wantStack: []uint64{10}},
			},
		},
		{
			// The child writes no STACK of its own: its inherited block
			// uses the parent's, which must outlive the parent. The FORKED
			// record comes first: the cut sees the parent's table until
			// the child takes it. STACK records are applied as they are
			// read, the FORKED record in time order, so the child also
			// sees 11, written after the fork: kept a little longer,
			// never too short.
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
			// applied in time order: it has written 10 and 12 when it
			// takes the cut, which sees 10 and 11.
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
				{end: a, wantKept: []uint64{10, 11, 12}, wantOwned: 2, wantStack: []uint64{10, 11}},
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
				{end: a, wantKept: []uint64{10, 12, 13}, wantOwned: 3, wantStack: []uint64{10}},
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
				{end: a, wantKept: []uint64{10, 12}, wantOwned: 1, wantStack: []uint64{10}},
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
				assert.ElementsMatch(t, st.wantKept, seenStacks(e), "after process %d: stacks seen", st.end)
				assert.Equal(t, st.wantOwned, e.ownedStacks, "after process %d: stacks counted", st.end)
			}
			assert.Empty(t, e.forkCuts)
		})
	}
}

// TestStacksForgottenAfterRestore: a restored state gives each process
// the stacks it saw (the ids are in the state, the count rebuilt from
// them).
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
	assert.Equal(t, 3, restored.ownedStacks)
	pb := restored.EndProcess(b, ExitStatus{})
	require.NotNil(t, pb)
	assert.ElementsMatch(t, []uint64{10, 11}, keysOf(pb.Stacks))
	assert.Equal(t, []uint64{0x401100}, pb.Stacks[11])
	assert.ElementsMatch(t, []uint64{10}, seenStacks(restored))
	p := restored.EndProcess(a, ExitStatus{})
	require.NotNil(t, p)
	assert.ElementsMatch(t, []uint64{10}, keysOf(p.Stacks))
	assert.Empty(t, seenStacks(restored))
	assert.Zero(t, restored.ownedStacks)
}

// TestStacksOfForkChainRestored: a child that sees its parent's stacks
// through its table's link sees the same ones after a restore, where
// each has a table of its own; and a stack written twice (the child's
// again, S3) is stored and counted once.
func TestStacksOfForkChainRestored(t *testing.T) {
	const a, child = 500, 502
	s := newStream(t)
	s.process(a, a, 1*ms, shm.ProcessStart, 1, "/bin/a").
		stack(a, a, 2*ms, 10, 0x401000).malloc(a, a, 2*ms, 0x1000, 16, 10).
		forkChild(child, a, 3*ms, 0).
		stack(child, child, 4*ms, 10, 0x401000).malloc(child, child, 4*ms, 0x2000, 16, 10).
		stack(child, child, 5*ms, 12, 0x401200, 0x401300).malloc(child, child, 5*ms, 0x3000, 16, 12)
	e := run(t, -1, s.recs) // applied as they come: the fork before the child's STACK
	assert.Equal(t, 2, e.ownedStacks, "10 once (the parent's), 12")
	pcs, ok := e.Stack(child, 10)
	require.True(t, ok)
	assert.Equal(t, []uint64{0x401000}, pcs)

	restored := New(Options{ReorderWindow: time.Millisecond})
	require.NoError(t, restored.RestoreState(e.AppendState(nil)))
	assert.Equal(t, 3, restored.ownedStacks, "the child's own table has 10 too")
	for _, pid := range []uint32{child, a} {
		want, got := e.EndProcess(pid, ExitStatus{}), restored.EndProcess(pid, ExitStatus{})
		require.NotNil(t, want)
		require.NotNil(t, got)
		assert.Equal(t, want.Stacks, got.Stacks, "process %d", pid)
	}
	assert.Zero(t, e.ownedStacks)
	assert.Zero(t, restored.ownedStacks)
}

// TestTooManyStacks: the bound counts the stacks of the living processes
// (T3): a ring that writes more is refused, one whose processes end in
// time is not.
func TestTooManyStacks(t *testing.T) {
	e := New(Options{ReorderWindow: -1, MaxStacks: 2})
	s := newStream(t)
	s.process(500, 500, 1*ms, shm.ProcessStart, 1, "/bin/a").
		stack(500, 500, 2*ms, 10, 0x401000).
		stack(500, 500, 3*ms, 11, 0x401100).
		stack(500, 500, 4*ms, 11, 0x401100) // seen: not counted again
	for _, r := range s.recs {
		require.NoError(t, e.Apply(r))
	}
	e.EndProcess(500, ExitStatus{})
	s = newStream(t)
	s.process(501, 501, 5*ms, shm.ProcessStart, 1, "/bin/a").
		stack(501, 501, 6*ms, 10, 0x401000).
		stack(501, 501, 7*ms, 11, 0x401100).
		stack(501, 501, 8*ms, 12, 0x401200)
	var err error
	for _, r := range s.recs {
		if err = e.Apply(r); err != nil {
			break
		}
	}
	require.Error(t, err)
	assert.Contains(t, err.Error(), "more than 2 distinct stacks")
}

// seenStacks lists the stacks the engine's living processes see.
func seenStacks(e *Engine) []uint64 {
	seen := map[uint64]bool{}
	for _, p := range e.procs {
		for _, id := range visibleStackIDs(nil, p) {
			seen[id] = true
		}
	}
	return keysOf(seen)
}

func keysOf[V any](m map[uint64]V) []uint64 {
	var ks []uint64
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestStacksForkCycle: records that make two processes each other's
// fork parent (a corrupt or hostile ring) do not link their tables into
// a loop: a lookup of a stack neither wrote ends, and each still sees
// the other's stacks.
func TestStacksForkCycle(t *testing.T) {
	const a, b = 500, 501
	s := newStream(t)
	s.process(a, a, 1*ms, shm.ProcessStart, 1, "/bin/a").
		stack(a, a, 2*ms, 10, 0x401000).malloc(a, a, 2*ms, 0x1000, 16, 10).
		forkChild(b, a, 3*ms, 0).
		stack(b, b, 4*ms, 12, 0x401200).malloc(b, b, 4*ms, 0x2000, 16, 12).
		forkChild(a, b, 5*ms, 0) // a "forked" from its own child
	done := make(chan *Engine, 1)
	go func() { done <- run(t, -1, s.recs) }()
	var e *Engine
	select {
	case e = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("applying the records did not end")
	}
	for _, pid := range []uint32{a, b} {
		_, ok := e.Stack(pid, 99)
		assert.False(t, ok, "process %d: a stack nobody wrote", pid)
		for _, id := range []uint64{10, 12} {
			_, ok := e.Stack(pid, id)
			assert.True(t, ok, "process %d sees stack %d", pid, id)
		}
	}
}
