package engine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/shm"
)

// forked and forkChild are the two sides of fork k (include/memscope.h
// F1): the parent's FORKED record and the child's FORK record.
func (s *stream) forked(parent uint32, ts uint64, k int32) *stream {
	return s.add(parent, parent, shm.AppendProcess(nil, ts, shm.Process{Pid: parent, Event: shm.ProcessForked, Status: k}))
}

func (s *stream) forkChild(child, parent uint32, ts uint64, k int32) *stream {
	return s.add(child, child, shm.AppendProcess(nil, ts, shm.Process{Pid: child, Ppid: parent, Event: shm.ProcessFork, Status: k, Exe: "/bin/parent"}))
}

// TestForkNumbered: a child's heap is its parent's at the fork, as the
// parent's FORKED record places it among the parent's records, whichever
// of the fork's two records is applied first and whenever the child's
// comes (after the parent's post-fork records, after the parent's end).
func TestForkNumbered(t *testing.T) {
	const parent, child = 400, 401
	// The parent: 0x1000 before the fork; after it, 0x2000 allocated and
	// 0x1000 freed. The child: frees its copy of 0x1000, allocates 0x3000.
	parentSide := func(s *stream, forkedAt uint64, k int32) {
		s.process(parent, parent, 1*ms, shm.ProcessStart, 1, "/bin/parent").
			malloc(parent, parent, 2*ms, 0x1000, 100, 1)
		if k != 0 {
			s.forked(parent, forkedAt, k)
		}
		s.malloc(parent, parent, 10*ms, 0x2000, 200, 2).
			free(parent, parent, 11*ms, 0x1000)
	}
	childSide := func(s *stream, at uint64, k int32) {
		s.forkChild(child, parent, at, k).
			free(child, child, at+1*ms, 0x1000).
			malloc(child, child, at+2*ms, 0x3000, 300, 3)
	}
	// The child as valgrind sees it: it had 0x1000, never 0x2000.
	want := Totals{Allocations: 2, Frees: 1, BytesAllocated: 400, LiveObjects: 1, LiveBytes: 300, PeakBytes: 300, PeakObjects: 1, TemporaryAllocations: 0}
	for _, tc := range []struct {
		name       string
		forkedAt   uint64 // the parent's FORKED record
		childAt    uint64 // the child's FORK record
		k          int32  // the child's fork number
		endParent  bool   // the parent ends before the child's records are read
		wantTotals Totals
	}{
		{name: "parent's record first, child's after the parent's post-fork records", forkedAt: 3 * ms, childAt: 20 * ms, k: 1, wantTotals: want},
		{name: "child's record first", forkedAt: 3 * ms, childAt: 2*ms + ms/2, k: 1, wantTotals: want},
		{name: "the child's record after the parent's end", forkedAt: 3 * ms, childAt: 20 * ms, k: 1, endParent: true, wantTotals: want},
		// Not numbered (no FORKED either): the parent as of the child's
		// record, 0x2000 included.
		{name: "not numbered", forkedAt: 3 * ms, childAt: 20 * ms, k: 0,
			wantTotals: Totals{Allocations: 3, Frees: 1, BytesAllocated: 600, LiveObjects: 2, LiveBytes: 500, PeakBytes: 500, PeakObjects: 2, UnknownFrees: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStream(t)
			parentSide(s, tc.forkedAt, tc.k)
			e := New(Options{ReorderWindow: 5 * time.Millisecond})
			for _, r := range s.recs {
				require.NoError(t, e.Apply(r))
			}
			if tc.endParent {
				e.Flush()
				require.NotNil(t, e.EndProcess(parent, ExitStatus{}))
			}
			s.recs = nil
			childSide(s, tc.childAt, tc.k)
			for _, r := range s.recs {
				require.NoError(t, e.Apply(r))
			}
			e.Flush()
			if !tc.endParent {
				e.EndProcess(parent, ExitStatus{})
			}
			cp := e.EndProcess(child, ExitStatus{})
			require.NotNil(t, cp)
			got := cp.Totals
			got.PeakTS = 0
			assert.Equal(t, tc.wantTotals, got)
			assert.Empty(t, e.forkCuts, "cuts left")
			assert.Empty(t, e.forkTaken, "taken forks left")
		})
	}
}

// TestForkCutsExpire: cuts no child claims (a fork that failed, a child
// killed at once) are dropped after forkCutTTL, and beyond maxForkCuts.
func TestForkCutsExpire(t *testing.T) {
	const parent = 400
	s := newStream(t)
	s.process(parent, parent, 1*ms, shm.ProcessStart, 1, "/bin/parent")
	for k := int32(1); k <= maxForkCuts+10; k++ {
		s.forked(parent, 2*ms+uint64(k), k)
	}
	e := run(t, time.Millisecond, s.recs)
	e.Flush()
	assert.Len(t, e.forkCuts, maxForkCuts)
	assert.Nil(t, e.forkCuts[forkID{parent, 10}], "the oldest are dropped")
	s.recs = nil
	s.forked(parent, 3*ms+forkCutTTL, maxForkCuts+11)
	for _, r := range s.recs {
		require.NoError(t, e.Apply(r))
	}
	e.Flush()
	assert.Len(t, e.forkCuts, 1, "cuts older than forkCutTTL are dropped")
}
