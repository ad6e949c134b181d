package engine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMisorderedStamps: one address's records from two threads stamped
// out of order (reuse.go): an allocation that reuses an address stamped
// before the free that released it, a free stamped before the allocation
// of the block it frees. Which block each free closes, by who frees and
// how far apart the stamps are.
func TestMisorderedStamps(t *testing.T) {
	const pid, a, b, c = 400, 400, 401, 402
	const p = 0x1000
	const us = uint64(time.Microsecond)
	old := siteWant{stack: 1, tid: a, allocs: 1, allocBytes: 10, peakObjects: 1, peakBytes: 10}
	kept := siteWant{stack: 1, tid: a, allocs: 1, allocBytes: 10, liveObjects: 1, liveBytes: 10, peakObjects: 1, peakBytes: 10}
	tests := []struct {
		name   string
		stream func(s *stream)
		t      Totals
		sites  []siteWant
	}{
		{
			// The free closes A's block; B's stays live (the old rule
			// closed B's and left A's as a leak). The curve sees both for
			// half a microsecond.
			name: "reuse 0.5 us before the free",
			stream: func(s *stream) {
				s.malloc(pid, a, 10*ms, p, 10, 1).free(pid, a, 20*ms+us/2, p).malloc(pid, b, 20*ms, p, 20, 2)
			},
			t: Totals{Allocations: 2, Frees: 1, BytesAllocated: 30, LiveObjects: 1, LiveBytes: 20,
				PeakBytes: 30, PeakObjects: 2, PeakTS: 20 * ms, TemporaryAllocations: 1},
			sites: []siteWant{
				{stack: 1, tid: a, allocs: 1, allocBytes: 10, peakObjects: 1, peakBytes: 10, temporaries: 1},
				{stack: 2, tid: b, allocs: 1, allocBytes: 20, liveObjects: 1, liveBytes: 20, peakObjects: 1, peakBytes: 20},
			},
		},
		{
			// The same from a third thread: the free is still A's block's.
			name: "reuse before a third thread's free",
			stream: func(s *stream) {
				s.malloc(pid, a, 10*ms, p, 10, 1).free(pid, c, 20*ms+us/2, p).malloc(pid, b, 20*ms, p, 20, 2)
			},
			t: Totals{Allocations: 2, Frees: 1, BytesAllocated: 30, LiveObjects: 1, LiveBytes: 20,
				PeakBytes: 30, PeakObjects: 2, PeakTS: 20 * ms},
			sites: []siteWant{
				old,
				{stack: 2, tid: b, allocs: 1, allocBytes: 20, liveObjects: 1, liveBytes: 20, peakObjects: 1, peakBytes: 20},
			},
		},
		{
			// B frees its own block: the newest generation, as before (A's
			// free is lost or still to come).
			name: "the allocating thread frees",
			stream: func(s *stream) {
				s.malloc(pid, a, 10*ms, p, 10, 1).malloc(pid, b, 20*ms, p, 20, 2).free(pid, b, 20*ms+us/2, p)
			},
			t: Totals{Allocations: 2, Frees: 1, BytesAllocated: 30, LiveObjects: 1, LiveBytes: 10,
				PeakBytes: 30, PeakObjects: 2, PeakTS: 20 * ms, TemporaryAllocations: 1},
			sites: []siteWant{
				{stack: 1, tid: a, allocs: 1, allocBytes: 10, liveObjects: 1, liveBytes: 10, peakObjects: 1, peakBytes: 10},
				{stack: 2, tid: b, allocs: 1, allocBytes: 20, peakObjects: 1, peakBytes: 20, temporaries: 1},
			},
		},
		{
			// Further apart than reuseSkew: not a misordered stamp, the
			// newest generation, as before.
			name: "reuse 200 us before another thread's free",
			stream: func(s *stream) {
				s.malloc(pid, a, 10*ms, p, 10, 1).free(pid, a, 20*ms+200*us, p).malloc(pid, b, 20*ms, p, 20, 2)
			},
			t: Totals{Allocations: 2, Frees: 1, BytesAllocated: 30, LiveObjects: 1, LiveBytes: 10,
				PeakBytes: 30, PeakObjects: 2, PeakTS: 20 * ms},
			sites: []siteWant{
				{stack: 1, tid: a, allocs: 1, allocBytes: 10, liveObjects: 1, liveBytes: 10, peakObjects: 1, peakBytes: 10},
				{stack: 2, tid: b, allocs: 1, allocBytes: 20, peakObjects: 1, peakBytes: 20},
			},
		},
		{
			// Three generations: A's block, B's reuse stamped before A's
			// free, C's reuse stamped before B's free: each free closes
			// the block its thread's order says.
			name: "two reuses in a row",
			stream: func(s *stream) {
				s.malloc(pid, a, 10*ms, p, 10, 1).free(pid, a, 20*ms+2*us, p).
					malloc(pid, b, 20*ms, p, 20, 2).free(pid, b, 20*ms+3*us, p).
					malloc(pid, c, 20*ms+us, p, 40, 3)
			},
			t: Totals{Allocations: 3, Frees: 2, BytesAllocated: 70, LiveObjects: 1, LiveBytes: 40,
				PeakBytes: 70, PeakObjects: 3, PeakTS: 20*ms + us, TemporaryAllocations: 2},
			sites: []siteWant{
				{stack: 1, tid: a, allocs: 1, allocBytes: 10, peakObjects: 1, peakBytes: 10, temporaries: 1},
				{stack: 2, tid: b, allocs: 1, allocBytes: 20, peakObjects: 1, peakBytes: 20, temporaries: 1},
				{stack: 3, tid: c, allocs: 1, allocBytes: 40, liveObjects: 1, liveBytes: 40, peakObjects: 1, peakBytes: 40},
			},
		},
		{
			// Hand-over: A allocates p and hands it to B, whose free is
			// stamped before A's allocation. Born and freed: no leak.
			name: "free stamped 0.5 us before its block's allocation",
			stream: func(s *stream) {
				s.malloc(pid, a, 20*ms, p, 10, 1).free(pid, b, 20*ms-us/2, p)
			},
			t: Totals{Allocations: 1, Frees: 1, BytesAllocated: 10},
			sites: []siteWant{
				{stack: 1, tid: a, allocs: 1, allocBytes: 10},
			},
		},
		{
			// The same from the allocating thread itself: its own records
			// are in program order, so that free was of a block allocated
			// before tracking, and the new block stays live.
			name: "own free stamped before the allocation",
			stream: func(s *stream) {
				s.free(pid, a, 20*ms-us/2, p).malloc(pid, a, 20*ms, p, 10, 1)
			},
			t: Totals{Allocations: 1, BytesAllocated: 10, LiveObjects: 1, LiveBytes: 10,
				PeakBytes: 10, PeakObjects: 1, PeakTS: 20 * ms, UnknownFrees: 1},
			sites: []siteWant{kept},
		},
		{
			// Further apart than the skew: an unknown free, then a block.
			name: "another thread's free 200 us before the allocation",
			stream: func(s *stream) {
				s.malloc(pid, a, 20*ms, p, 10, 1).free(pid, b, 20*ms-200*us, p)
			},
			t: Totals{Allocations: 1, BytesAllocated: 10, LiveObjects: 1, LiveBytes: 10,
				PeakBytes: 10, PeakObjects: 1, PeakTS: 20 * ms, UnknownFrees: 1},
			sites: []siteWant{kept},
		},
		{
			// The hand-over's allocation is late: its thread, moved to
			// another CPU, stamped it before its previous event (q).
			name: "late allocation of a block handed over",
			stream: func(s *stream) {
				s.malloc(pid, a, 20*ms+2*us, 0x2000, 5, 5).malloc(pid, a, 20*ms, p, 10, 1).free(pid, b, 20*ms-us/2, p)
			},
			t: Totals{Allocations: 2, Frees: 1, BytesAllocated: 15, LiveObjects: 1, LiveBytes: 5,
				PeakBytes: 5, PeakObjects: 1, PeakTS: 20*ms + 2*us, LateEvents: 1},
			sites: []siteWant{ // in the order of their first allocation's stamp
				{stack: 1, tid: a, allocs: 1, allocBytes: 10},
				{stack: 5, tid: a, allocs: 1, allocBytes: 5, liveObjects: 1, liveBytes: 5, peakObjects: 1, peakBytes: 5},
			},
		},
		{
			// Both at once, as testdata/handoff.c makes them: A allocates
			// p, B frees it stamped before; A allocates p again, stamped
			// before B's free of the first... each free meets its block.
			name: "hand-over and reuse in a row",
			stream: func(s *stream) {
				s.malloc(pid, a, 20*ms, p, 10, 1).malloc(pid, a, 20*ms+2*us, p, 20, 2).
					free(pid, b, 20*ms-us, p).free(pid, b, 20*ms+3*us, p)
			},
			t: Totals{Allocations: 2, Frees: 2, BytesAllocated: 30,
				PeakBytes: 20, PeakObjects: 1, PeakTS: 20*ms + 2*us},
			sites: []siteWant{
				{stack: 1, tid: a, allocs: 1, allocBytes: 10},
				{stack: 2, tid: a, allocs: 1, allocBytes: 20, peakObjects: 1, peakBytes: 20},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStream(t)
			tc.stream(s)
			e := run(t, 100*time.Millisecond, s.recs)
			pr := e.EndProcess(pid, ExitStatus{Known: true})
			require.NotNil(t, pr)
			assert.Equal(t, tc.t, pr.Totals)
			assert.Equal(t, tc.sites, sitesOf(pr))
		})
	}
}
