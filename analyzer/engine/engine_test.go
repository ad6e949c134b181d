package engine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/shm"
)

// ---- synthetic records, encoded by shm.Append* ----

func recOf(t testing.TB, pid, tid uint32, b []byte) shm.Record {
	r, err := shm.ParseRecordHeader(b)
	require.NoError(t, err)
	r.Pid, r.Tid = pid, tid
	return r
}

const ms = uint64(time.Millisecond)

type stream struct {
	t    testing.TB
	recs []shm.Record
}

func (s *stream) add(pid, tid uint32, b []byte) *stream {
	s.recs = append(s.recs, recOf(s.t, pid, tid, b))
	return s
}

func (s *stream) malloc(pid, tid uint32, ts, ptr, size, stack uint64) *stream {
	return s.add(pid, tid, shm.AppendAlloc(nil, ts, shm.Alloc{Ptr: ptr, Size: size, StackID: stack, Kind: shm.KindMalloc}))
}

func (s *stream) free(pid, tid uint32, ts, ptr uint64) *stream {
	return s.add(pid, tid, shm.AppendFree(nil, ts, shm.Free{Ptr: ptr}))
}

func (s *stream) realloc(pid, tid uint32, tsBefore, ts, old, nw, size, stack uint64) *stream {
	return s.add(pid, tid, shm.AppendRealloc(nil, ts, shm.Realloc{OldPtr: old, NewPtr: nw, Size: size, StackID: stack, TSBefore: tsBefore, Kind: shm.KindRealloc}))
}

func (s *stream) process(pid, tid uint32, ts uint64, ev shm.ProcessEvent, ppid uint32, exe string) *stream {
	return s.add(pid, tid, shm.AppendProcess(nil, ts, shm.Process{Pid: pid, Ppid: ppid, Event: ev, Exe: exe, Arg0: exe}))
}

func (s *stream) lost(pid, tid uint32, ts, n uint64) *stream {
	return s.add(pid, tid, shm.AppendLost(nil, ts, shm.Lost{Count: n}))
}

func newStream(t testing.TB) *stream { return &stream{t: t} }

func run(t *testing.T, window time.Duration, recs []shm.Record) *Engine {
	e := New(Options{ReorderWindow: window})
	for _, r := range recs {
		require.NoError(t, e.Apply(r))
	}
	return e
}

type siteWant struct {
	stack                               uint64
	tid                                 uint32
	allocs, allocBytes                  uint64
	liveObjects, liveBytes              uint64
	peakObjects, peakBytes, temporaries uint64
}

func sitesOf(p *Process) []siteWant {
	var out []siteWant
	for _, s := range p.Sites {
		out = append(out, siteWant{s.StackID, s.Tid, s.Allocs, s.AllocBytes, s.LiveObjects, s.LiveBytes, s.PeakObjects, s.PeakBytes, s.Temporaries})
	}
	return out
}

func TestCountingRules(t *testing.T) {
	const pid, tid = 100, 100
	const window = 100 * time.Millisecond
	tests := []struct {
		name   string
		stream func(s *stream)
		want   Totals
		sites  []siteWant
	}{
		{
			name: "malloc and free",
			stream: func(s *stream) {
				s.malloc(pid, tid, 1*ms, 0x1000, 100, 1).malloc(pid, tid, 2*ms, 0x2000, 50, 2).free(pid, tid, 3*ms, 0x1000)
			},
			want: Totals{Allocations: 2, Frees: 1, BytesAllocated: 150, LiveObjects: 1, LiveBytes: 50, PeakBytes: 150, PeakObjects: 2, PeakTS: 2 * ms},
			sites: []siteWant{
				{stack: 1, tid: tid, allocs: 1, allocBytes: 100, peakObjects: 1, peakBytes: 100},
				{stack: 2, tid: tid, allocs: 1, allocBytes: 50, liveObjects: 1, liveBytes: 50, peakObjects: 1, peakBytes: 50},
			},
		},
		{
			name: "calloc counts its requested size",
			stream: func(s *stream) {
				s.add(pid, tid, shm.AppendAlloc(nil, 1*ms, shm.Alloc{Ptr: 0x1000, Size: 4 * 25, StackID: 1, Kind: shm.KindCalloc}))
			},
			want:  Totals{Allocations: 1, BytesAllocated: 100, LiveObjects: 1, LiveBytes: 100, PeakBytes: 100, PeakObjects: 1, PeakTS: 1 * ms},
			sites: []siteWant{{stack: 1, tid: tid, allocs: 1, allocBytes: 100, liveObjects: 1, liveBytes: 100, peakObjects: 1, peakBytes: 100}},
		},
		{
			name: "realloc that moves: one allocation plus one free",
			stream: func(s *stream) {
				s.malloc(pid, tid, 1*ms, 0x1000, 10, 1).malloc(pid, tid, 2*ms, 0x5000, 1, 3).realloc(pid, tid, 3*ms, 4*ms, 0x1000, 0x2000, 30, 2)
			},
			// heap: 10, 11, (release) 1, 31
			want: Totals{Allocations: 3, Frees: 1, BytesAllocated: 41, LiveObjects: 2, LiveBytes: 31, PeakBytes: 31, PeakObjects: 2, PeakTS: 4 * ms},
			sites: []siteWant{
				{stack: 1, tid: tid, allocs: 1, allocBytes: 10},
				{stack: 2, tid: tid, allocs: 1, allocBytes: 30, liveObjects: 1, liveBytes: 30, peakObjects: 1, peakBytes: 30},
				{stack: 3, tid: tid, allocs: 1, allocBytes: 1, liveObjects: 1, liveBytes: 1, peakObjects: 1, peakBytes: 1},
			},
		},
		{
			name: "realloc in place: one allocation plus one free",
			stream: func(s *stream) {
				s.malloc(pid, tid, 1*ms, 0x1000, 10, 1).realloc(pid, tid, 2*ms, 3*ms, 0x1000, 0x1000, 20, 2)
			},
			// The release of 0x1000 follows its allocation directly: temporary (heaptrack's rule).
			want: Totals{Allocations: 2, Frees: 1, BytesAllocated: 30, LiveObjects: 1, LiveBytes: 20, PeakBytes: 20, PeakObjects: 1, PeakTS: 3 * ms, TemporaryAllocations: 1},
			sites: []siteWant{
				{stack: 1, tid: tid, allocs: 1, allocBytes: 10, peakObjects: 0, peakBytes: 0, temporaries: 1},
				{stack: 2, tid: tid, allocs: 1, allocBytes: 20, liveObjects: 1, liveBytes: 20, peakObjects: 1, peakBytes: 20},
			},
		},
		{
			name: "realloc(NULL, n) is a malloc",
			stream: func(s *stream) {
				s.realloc(pid, tid, 1*ms, 1*ms, 0, 0x1000, 64, 1)
			},
			want:  Totals{Allocations: 1, BytesAllocated: 64, LiveObjects: 1, LiveBytes: 64, PeakBytes: 64, PeakObjects: 1, PeakTS: 1 * ms},
			sites: []siteWant{{stack: 1, tid: tid, allocs: 1, allocBytes: 64, liveObjects: 1, liveBytes: 64, peakObjects: 1, peakBytes: 64}},
		},
		{
			name: "realloc(p, 0) that frees p is one free",
			stream: func(s *stream) {
				s.malloc(pid, tid, 1*ms, 0x1000, 10, 1).malloc(pid, tid, 2*ms, 0x2000, 5, 1).realloc(pid, tid, 3*ms, 3*ms, 0x1000, 0, 0, 2)
			},
			want:  Totals{Allocations: 2, Frees: 1, BytesAllocated: 15, LiveObjects: 1, LiveBytes: 5, PeakBytes: 15, PeakObjects: 2, PeakTS: 2 * ms},
			sites: []siteWant{{stack: 1, tid: tid, allocs: 2, allocBytes: 15, liveObjects: 1, liveBytes: 5, peakObjects: 2, peakBytes: 15}},
		},
		{
			name: "unknown frees are counted and ignored",
			stream: func(s *stream) {
				s.free(pid, tid, 1*ms, 0x9000).malloc(pid, tid, 2*ms, 0x1000, 8, 1).free(pid, tid, 3*ms, 0x9000).free(pid, tid, 4*ms, 0x1000).free(pid, tid, 5*ms, 0x1000)
			},
			want:  Totals{Allocations: 1, Frees: 1, BytesAllocated: 8, PeakBytes: 8, PeakObjects: 1, PeakTS: 2 * ms, UnknownFrees: 3},
			sites: []siteWant{{stack: 1, tid: tid, allocs: 1, allocBytes: 8, peakObjects: 1, peakBytes: 8}},
		},
		{
			name: "temporary: freed by the next event of the same thread only",
			stream: func(s *stream) {
				s.malloc(pid, tid, 1*ms, 0x1000, 1, 1).free(pid, tid, 2*ms, 0x1000). // temporary
													malloc(pid, tid, 3*ms, 0x1000, 1, 1).malloc(pid, tid, 4*ms, 0x2000, 1, 2).free(pid, tid, 5*ms, 0x1000). // not: 0x2000 between
													malloc(pid, tid, 6*ms, 0x3000, 1, 1).free(pid, tid+1, 7*ms, 0x3000).                                    // not: other thread
													malloc(pid, tid, 8*ms, 0x4000, 1, 1).free(pid, tid, 9*ms, 0x9999).free(pid, tid, 10*ms, 0x4000)         // not: a free between
			},
			want: Totals{Allocations: 5, Frees: 4, BytesAllocated: 5, LiveObjects: 1, LiveBytes: 1, PeakBytes: 2, PeakObjects: 2, PeakTS: 4 * ms, TemporaryAllocations: 1, UnknownFrees: 1},
			sites: []siteWant{
				{stack: 1, tid: tid, allocs: 4, allocBytes: 4, peakObjects: 1, peakBytes: 1, temporaries: 1},
				{stack: 2, tid: tid, allocs: 1, allocBytes: 1, liveObjects: 1, liveBytes: 1, peakObjects: 1, peakBytes: 1},
			},
		},
		{
			name: "malloc returning NULL is not an allocation",
			stream: func(s *stream) {
				s.malloc(pid, tid, 1*ms, 0, 1<<40, 1)
			},
			want: Totals{},
		},
		{
			name: "lost events are counted as dropped",
			stream: func(s *stream) {
				s.lost(pid, tid, 1*ms, 7).malloc(pid, tid, 2*ms, 0x1000, 3, 1).lost(pid, tid, 3*ms, 5)
			},
			want:  Totals{Allocations: 1, BytesAllocated: 3, LiveObjects: 1, LiveBytes: 3, PeakBytes: 3, PeakObjects: 1, PeakTS: 2 * ms, DroppedEvents: 12},
			sites: []siteWant{{stack: 1, tid: tid, allocs: 1, allocBytes: 3, liveObjects: 1, liveBytes: 3, peakObjects: 1, peakBytes: 3}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStream(t)
			tc.stream(s)
			e := run(t, window, s.recs)
			p := e.EndProcess(pid, ExitStatus{Known: true})
			require.NotNil(t, p)
			assert.Equal(t, tc.want, p.Totals)
			assert.Equal(t, tc.sites, sitesOf(p))
			assert.Equal(t, p.Totals.Allocations-p.Totals.Frees, p.Totals.LiveObjects)
			assert.Equal(t, 0, e.Pending())
		})
	}
}

// TestOutOfOrder covers the arrival orders of issue 4, with the reorder
// window and without it (every event then arrives "late").
func TestOutOfOrder(t *testing.T) {
	const pid, a, b = 200, 200, 201
	type want struct {
		t     Totals
		sites []siteWant
	}
	tests := []struct {
		name     string
		stream   func(s *stream)
		inWindow want // window 100 ms
		noWindow want // applied on arrival
	}{
		{
			// Thread B's free of p arrives before thread A's malloc of p,
			// which has the earlier timestamp.
			name: "free arrives before its malloc",
			stream: func(s *stream) {
				s.free(pid, b, 20*ms, 0x1000).malloc(pid, a, 10*ms, 0x1000, 64, 1)
			},
			inWindow: want{
				t:     Totals{Allocations: 1, Frees: 1, BytesAllocated: 64, PeakBytes: 64, PeakObjects: 1, PeakTS: 10 * ms},
				sites: []siteWant{{stack: 1, tid: a, allocs: 1, allocBytes: 64, peakObjects: 1, peakBytes: 64}},
			},
			noWindow: want{
				// The late malloc pairs with the pending free: never live.
				t:     Totals{Allocations: 1, Frees: 1, BytesAllocated: 64, LateEvents: 1},
				sites: []siteWant{{stack: 1, tid: a, allocs: 1, allocBytes: 64}},
			},
		},
		{
			// A: malloc p@10 free p@20; B: malloc p@30 (reuse). B's chunk arrives first.
			name: "address reuse across threads",
			stream: func(s *stream) {
				s.malloc(pid, b, 30*ms, 0x1000, 20, 2).malloc(pid, a, 10*ms, 0x1000, 10, 1).free(pid, a, 20*ms, 0x1000)
			},
			inWindow: want{
				t: Totals{Allocations: 2, Frees: 1, BytesAllocated: 30, LiveObjects: 1, LiveBytes: 20, PeakBytes: 20, PeakObjects: 1, PeakTS: 30 * ms, TemporaryAllocations: 1},
				sites: []siteWant{
					{stack: 1, tid: a, allocs: 1, allocBytes: 10, temporaries: 1},
					{stack: 2, tid: b, allocs: 1, allocBytes: 20, liveObjects: 1, liveBytes: 20, peakObjects: 1, peakBytes: 20},
				},
			},
			noWindow: want{
				// Two generations of p live at once; the free@20 closes the one from 10.
				t: Totals{Allocations: 2, Frees: 1, BytesAllocated: 30, LiveObjects: 1, LiveBytes: 20, PeakBytes: 30, PeakObjects: 2, PeakTS: 10 * ms, TemporaryAllocations: 1, LateEvents: 2},
				sites: []siteWant{
					{stack: 1, tid: a, allocs: 1, allocBytes: 10, peakObjects: 1, peakBytes: 10, temporaries: 1},
					{stack: 2, tid: b, allocs: 1, allocBytes: 20, liveObjects: 1, liveBytes: 20, peakObjects: 1, peakBytes: 20},
				},
			},
		},
		{
			// Three generations of p from three threads, frees arriving last.
			name: "generations",
			stream: func(s *stream) {
				s.malloc(pid, 203, 50*ms, 0x1000, 3, 3).
					malloc(pid, 202, 30*ms, 0x1000, 2, 2).free(pid, 202, 40*ms, 0x1000).
					malloc(pid, a, 10*ms, 0x1000, 1, 1).free(pid, a, 20*ms, 0x1000)
			},
			inWindow: want{
				t: Totals{Allocations: 3, Frees: 2, BytesAllocated: 6, LiveObjects: 1, LiveBytes: 3, PeakBytes: 3, PeakObjects: 1, PeakTS: 50 * ms, TemporaryAllocations: 2},
				sites: []siteWant{
					{stack: 1, tid: a, allocs: 1, allocBytes: 1, temporaries: 1},
					{stack: 2, tid: 202, allocs: 1, allocBytes: 2, temporaries: 1},
					{stack: 3, tid: 203, allocs: 1, allocBytes: 3, liveObjects: 1, liveBytes: 3, peakObjects: 1, peakBytes: 3},
				},
			},
			noWindow: want{
				// heap on arrival: 3, 5, 3 (free@40 closes gen@30), 4, 3 (free@20 closes gen@10)
				t: Totals{Allocations: 3, Frees: 2, BytesAllocated: 6, LiveObjects: 1, LiveBytes: 3, PeakBytes: 5, PeakObjects: 2, PeakTS: 30 * ms, TemporaryAllocations: 2, LateEvents: 4},
				sites: []siteWant{
					{stack: 1, tid: a, allocs: 1, allocBytes: 1, temporaries: 1},
					{stack: 2, tid: 202, allocs: 1, allocBytes: 2, peakObjects: 1, peakBytes: 2, temporaries: 1},
					{stack: 3, tid: 203, allocs: 1, allocBytes: 3, liveObjects: 1, liveBytes: 3, peakObjects: 1, peakBytes: 3},
				},
			},
		},
		{
			// In time order the two blocks overlap (peak 200 at 20 ms);
			// in arrival order they do not.
			name: "peak in timestamp order",
			stream: func(s *stream) {
				s.malloc(pid, a, 10*ms, 0x1000, 100, 1).free(pid, a, 30*ms, 0x1000).
					malloc(pid, b, 20*ms, 0x2000, 100, 2).free(pid, b, 40*ms, 0x2000)
			},
			inWindow: want{
				t: Totals{Allocations: 2, Frees: 2, BytesAllocated: 200, PeakBytes: 200, PeakObjects: 2, PeakTS: 20 * ms, TemporaryAllocations: 2},
				sites: []siteWant{
					{stack: 1, tid: a, allocs: 1, allocBytes: 100, peakObjects: 1, peakBytes: 100, temporaries: 1},
					{stack: 2, tid: b, allocs: 1, allocBytes: 100, peakObjects: 1, peakBytes: 100, temporaries: 1},
				},
			},
			noWindow: want{
				t: Totals{Allocations: 2, Frees: 2, BytesAllocated: 200, PeakBytes: 100, PeakObjects: 1, PeakTS: 10 * ms, TemporaryAllocations: 2, LateEvents: 1},
				sites: []siteWant{
					{stack: 1, tid: a, allocs: 1, allocBytes: 100, peakObjects: 1, peakBytes: 100, temporaries: 1},
					{stack: 2, tid: b, allocs: 1, allocBytes: 100, temporaries: 1},
				},
			},
		},
		{
			// A temporary pair (an allocation and its free, next in
			// order) is applied in one step without the live table
			// (proc.tempPair) only when nothing but the pair is at stake.
			// Here B runs first and A's pair arrives late: counted late,
			// as two events would be.
			name: "a temporary pair that arrives late",
			stream: func(s *stream) {
				s.malloc(pid, b, 30*ms, 0x2000, 20, 2).free(pid, b, 31*ms, 0x2000).malloc(pid, b, 32*ms, 0x3000, 5, 3).
					malloc(pid, a, 10*ms, 0x1000, 10, 1).free(pid, a, 20*ms, 0x1000)
			},
			inWindow: want{
				t: Totals{Allocations: 3, Frees: 2, BytesAllocated: 35, LiveObjects: 1, LiveBytes: 5, PeakBytes: 20, PeakObjects: 1, PeakTS: 30 * ms, TemporaryAllocations: 2},
				sites: []siteWant{
					{stack: 1, tid: a, allocs: 1, allocBytes: 10, temporaries: 1},
					{stack: 2, tid: b, allocs: 1, allocBytes: 20, peakObjects: 1, peakBytes: 20, temporaries: 1},
					{stack: 3, tid: b, allocs: 1, allocBytes: 5, liveObjects: 1, liveBytes: 5},
				},
			},
			noWindow: want{
				t: Totals{Allocations: 3, Frees: 2, BytesAllocated: 35, LiveObjects: 1, LiveBytes: 5, PeakBytes: 20, PeakObjects: 1, PeakTS: 30 * ms, TemporaryAllocations: 2, LateEvents: 2},
				sites: []siteWant{
					{stack: 1, tid: a, allocs: 1, allocBytes: 10, temporaries: 1},
					{stack: 2, tid: b, allocs: 1, allocBytes: 20, peakObjects: 1, peakBytes: 20, temporaries: 1},
					{stack: 3, tid: b, allocs: 1, allocBytes: 5, liveObjects: 1, liveBytes: 5},
				},
			},
		},
		{
			// B frees p (unknown) 50 us before A allocates it (a block
			// handed over, stamped out of order: reuse.go): A's
			// allocation pairs with that free, so A's own free of p is
			// the unknown one and A's pair was not temporary. (B's
			// temporary block first sets a peak that A's does not pass.)
			name: "a temporary pair after a hand-over",
			stream: func(s *stream) {
				s.malloc(pid, b, 21*ms, 0x2000, 100, 2).free(pid, b, 21100*ms/1000, 0x2000).free(pid, b, 21950*ms/1000, 0x1000).
					malloc(pid, a, 22*ms, 0x1000, 10, 1).free(pid, a, 23*ms, 0x1000)
			},
			inWindow: want{
				t: Totals{Allocations: 2, Frees: 2, BytesAllocated: 110, PeakBytes: 100, PeakObjects: 1, PeakTS: 21 * ms, TemporaryAllocations: 1, UnknownFrees: 1},
				sites: []siteWant{
					{stack: 1, tid: a, allocs: 1, allocBytes: 10},
					{stack: 2, tid: b, allocs: 1, allocBytes: 100, peakObjects: 1, peakBytes: 100, temporaries: 1},
				},
			},
			noWindow: want{
				t: Totals{Allocations: 2, Frees: 2, BytesAllocated: 110, PeakBytes: 100, PeakObjects: 1, PeakTS: 21 * ms, TemporaryAllocations: 1, UnknownFrees: 1},
				sites: []siteWant{
					{stack: 1, tid: a, allocs: 1, allocBytes: 10},
					{stack: 2, tid: b, allocs: 1, allocBytes: 100, peakObjects: 1, peakBytes: 100, temporaries: 1},
				},
			},
		},
		{
			// The second pair is a new peak: the peak is its block's.
			name: "a temporary pair that is a new peak",
			stream: func(s *stream) {
				s.malloc(pid, a, 1*ms, 0x1000, 10, 1).free(pid, a, 2*ms, 0x1000).
					malloc(pid, a, 3*ms, 0x2000, 50, 2).free(pid, a, 4*ms, 0x2000).
					malloc(pid, a, 5*ms, 0x3000, 20, 1).free(pid, a, 6*ms, 0x3000)
			},
			inWindow: want{
				t: Totals{Allocations: 3, Frees: 3, BytesAllocated: 80, PeakBytes: 50, PeakObjects: 1, PeakTS: 3 * ms, TemporaryAllocations: 3},
				sites: []siteWant{
					{stack: 1, tid: a, allocs: 2, allocBytes: 30, temporaries: 2},
					{stack: 2, tid: a, allocs: 1, allocBytes: 50, peakObjects: 1, peakBytes: 50, temporaries: 1},
				},
			},
			noWindow: want{
				t: Totals{Allocations: 3, Frees: 3, BytesAllocated: 80, PeakBytes: 50, PeakObjects: 1, PeakTS: 3 * ms, TemporaryAllocations: 3},
				sites: []siteWant{
					{stack: 1, tid: a, allocs: 2, allocBytes: 30, temporaries: 2},
					{stack: 2, tid: a, allocs: 1, allocBytes: 50, peakObjects: 1, peakBytes: 50, temporaries: 1},
				},
			},
		},
	}
	for _, tc := range tests {
		for _, mode := range []struct {
			name   string
			window time.Duration
			want   *want
		}{{"window", 100 * time.Millisecond, &tc.inWindow}, {"no window", -1, &tc.noWindow}} {
			t.Run(tc.name+"/"+mode.name, func(t *testing.T) {
				s := newStream(t)
				tc.stream(s)
				e := run(t, mode.window, s.recs)
				p := e.EndProcess(pid, ExitStatus{Known: true})
				require.NotNil(t, p)
				assert.Equal(t, mode.want.t, p.Totals)
				assert.Equal(t, mode.want.sites, sitesOf(p))
				assert.Equal(t, p.Totals.Allocations-p.Totals.Frees, p.Totals.LiveObjects)
			})
		}
	}
}

func TestLateEvents(t *testing.T) {
	// Window 100 ms. Thread A runs to 1 s; thread B's event at 500 ms
	// arrives after that: late, counted, still applied (and paired).
	const pid = 300
	s := newStream(t)
	s.malloc(pid, 300, 400*ms, 0x1000, 10, 1)
	for i := uint64(0); i < 10; i++ {
		s.malloc(pid, 300, (500+50*i)*ms, 0x10000+16*i, 1, 2)
	}
	s.free(pid, 301, 500*ms, 0x1000) // late: applied at arrival, closes the block of 400 ms
	s.free(pid, 301, 510*ms, 0x8888) // late and unknown
	e := run(t, 100*time.Millisecond, s.recs)
	p := e.EndProcess(pid, ExitStatus{})
	assert.Equal(t, uint64(2), p.Totals.LateEvents)
	assert.Equal(t, uint64(11), p.Totals.Allocations)
	assert.Equal(t, uint64(1), p.Totals.Frees)
	assert.Equal(t, uint64(1), p.Totals.UnknownFrees)
	assert.Equal(t, uint64(10), p.Totals.LiveObjects)
	assert.Equal(t, uint64(10), p.Totals.LiveBytes)
	// The late free was applied on arrival, when the events up to 850 ms
	// (the window behind 950 ms) had made the heap 10+8 bytes.
	assert.Equal(t, uint64(18), p.Totals.PeakBytes)
}

func TestForkCopiesTheLiveTable(t *testing.T) {
	const parent, child = 400, 401
	s := newStream(t)
	s.process(parent, parent, 1*ms, shm.ProcessStart, 1, "/bin/parent").
		malloc(parent, parent, 10*ms, 0x1000, 100, 1).
		malloc(parent, parent, 20*ms, 0x2000, 200, 2). // after the fork: not the child's
		free(parent, parent, 30*ms, 0x2000).
		// The child's chunk arrives after the parent's.
		process(child, child, 15*ms, shm.ProcessFork, parent, "/bin/parent").
		free(child, child, 16*ms, 0x1000). // the inherited block
		malloc(child, child, 17*ms, 0x3000, 300, 3).
		free(child, child, 18*ms, 0x2000) // unknown in the child
	e := run(t, 100*time.Millisecond, s.recs)

	pp := e.EndProcess(parent, ExitStatus{Known: true, Code: 0})
	require.NotNil(t, pp)
	assert.Equal(t, Totals{Allocations: 2, Frees: 1, BytesAllocated: 300, LiveObjects: 1, LiveBytes: 100, PeakBytes: 300, PeakObjects: 2, PeakTS: 20 * ms, TemporaryAllocations: 1}, pp.Totals)

	cp := e.EndProcess(child, ExitStatus{Known: true, Code: 3})
	require.NotNil(t, cp)
	assert.Equal(t, uint32(parent), cp.Ppid)
	assert.Equal(t, "/bin/parent", cp.Exe)
	assert.Equal(t, uint64(15*ms), cp.StartTS)
	// Counts continue from the parent's at the fork, as valgrind's do.
	assert.Equal(t, Totals{Allocations: 2, Frees: 1, BytesAllocated: 400, LiveObjects: 1, LiveBytes: 300, PeakBytes: 300, PeakObjects: 1, PeakTS: 17 * ms, UnknownFrees: 1}, cp.Totals)
	assert.Equal(t, []siteWant{
		{stack: 1, tid: parent, allocs: 1, allocBytes: 100},
		{stack: 3, tid: child, allocs: 1, allocBytes: 300, liveObjects: 1, liveBytes: 300, peakObjects: 1, peakBytes: 300},
	}, sitesOf(cp))
	assert.Equal(t, ExitStatus{Known: true, Code: 3}, cp.Exit)
}

func TestExecDiscardsTheOldImage(t *testing.T) {
	const pid = 500
	for _, ev := range []shm.ProcessEvent{shm.ProcessExec, shm.ProcessStart} {
		t.Run(ev.String(), func(t *testing.T) {
			s := newStream(t)
			s.process(pid, pid, 1*ms, shm.ProcessStart, 1, "/bin/sh").
				malloc(pid, pid, 2*ms, 0x1000, 100, 1). // the shell's block: not a leak
				process(pid, pid, 3*ms, ev, 1, "/usr/bin/app").
				malloc(pid, pid, 4*ms, 0x1000, 7, 2).
				free(pid, pid, 5*ms, 0x7777) // unknown to the new image
			e := run(t, 100*time.Millisecond, s.recs)
			p := e.EndProcess(pid, ExitStatus{Known: true})
			assert.Equal(t, "/usr/bin/app", p.Exe)
			assert.Equal(t, 1, p.Execs)
			assert.Equal(t, uint64(3*ms), p.StartTS)
			assert.Equal(t, Totals{Allocations: 1, BytesAllocated: 7, LiveObjects: 1, LiveBytes: 7, PeakBytes: 7, PeakObjects: 1, PeakTS: 4 * ms, UnknownFrees: 1}, p.Totals)
			assert.Equal(t, []siteWant{{stack: 2, tid: pid, allocs: 1, allocBytes: 7, liveObjects: 1, liveBytes: 7, peakObjects: 1, peakBytes: 7}}, sitesOf(p))
		})
	}
}

func TestPeakPerSite(t *testing.T) {
	const pid, tid = 600, 600
	s := newStream(t)
	s.malloc(pid, tid, 1*ms, 0x1000, 100, 1). // 100
							malloc(pid, tid, 2*ms, 0x2000, 50, 2).  // 150
							malloc(pid, tid, 3*ms, 0x3000, 60, 2).  // 210 peak
							free(pid, tid, 4*ms, 0x1000).           // 110
							malloc(pid, tid, 5*ms, 0x4000, 90, 3).  // 200
							free(pid, tid, 6*ms, 0x2000).           // 150
							malloc(pid, tid, 7*ms, 0x5000, 40, 1).  // 190
							malloc(pid, tid, 8*ms, 0x6000, 25, 2).  // 215 new peak
							free(pid, tid, 9*ms, 0x3000).           // 155
							malloc(pid, tid, 10*ms, 0x7000, 20, 3). // 175
							free(pid, tid, 11*ms, 0x6000)           // 150
	e := run(t, 100*time.Millisecond, s.recs)
	p := e.EndProcess(pid, ExitStatus{})
	assert.Equal(t, uint64(215), p.Totals.PeakBytes)
	assert.Equal(t, uint64(4), p.Totals.PeakObjects)
	assert.Equal(t, uint64(8*ms), p.Totals.PeakTS)
	// At 8 ms: site 1 holds 0x5000 (40); site 2 holds 0x3000, 0x6000 (85); site 3 holds 0x4000 (90).
	assert.Equal(t, []siteWant{
		{stack: 1, tid: tid, allocs: 2, allocBytes: 140, liveObjects: 1, liveBytes: 40, peakObjects: 1, peakBytes: 40},
		{stack: 2, tid: tid, allocs: 3, allocBytes: 135, peakObjects: 2, peakBytes: 85, temporaries: 0},
		{stack: 3, tid: tid, allocs: 2, allocBytes: 110, liveObjects: 2, liveBytes: 110, peakObjects: 1, peakBytes: 90},
	}, sitesOf(p))
}

func TestTimeline(t *testing.T) {
	const pid, tid = 700, 700
	s := newStream(t)
	s.malloc(pid, tid, 5*ms, 0x1000, 10, 1).
		malloc(pid, tid, 12*ms, 0x2000, 20, 1).
		free(pid, tid, 55*ms, 0x1000)
	e := New(Options{ReorderWindow: 100 * time.Millisecond, TimelineInterval: 10 * time.Millisecond})
	for _, r := range s.recs {
		require.NoError(t, e.Apply(r))
	}
	p := e.EndProcess(pid, ExitStatus{})
	assert.Equal(t, []Sample{
		{TS: 0, HeapBytes: 0, LiveObjects: 0},        // before the malloc at 5 ms
		{TS: 10 * ms, HeapBytes: 10, LiveObjects: 1}, // before the malloc at 12
		{TS: 20 * ms, HeapBytes: 30, LiveObjects: 2}, // flat from 20 ...
		{TS: 50 * ms, HeapBytes: 30, LiveObjects: 2}, // ... to 50
		{TS: 55 * ms, HeapBytes: 20, LiveObjects: 1}, // final
	}, p.Timeline)
}

func TestModulesAndThreads(t *testing.T) {
	const pid = 800
	seg := []shm.Segment{{Vaddr: 0x1000, Memsz: 0x2000, Offset: 0x1000, Flags: 5}}
	s := newStream(t)
	s.add(pid, pid, shm.AppendModule(nil, 1*ms, shm.Module{Bias: 0x7000_0000, Event: shm.ModuleLoad, BuildID: []byte{0xab}, Segments: seg, Path: "/lib/a.so"})).
		add(pid, pid, shm.AppendModule(nil, 5*ms, shm.Module{Bias: 0x7000_0000, Event: shm.ModuleUnload, Segments: seg, Path: "/lib/a.so"})).
		add(pid, pid, shm.AppendModule(nil, 6*ms, shm.Module{Bias: 0x7000_0000, Event: shm.ModuleLoad, Segments: seg, Path: "/lib/b.so"})).
		add(pid, pid, shm.AppendThread(nil, 1*ms, shm.Thread{Tid: 801, Name: "worker"}))
	e := run(t, 100*time.Millisecond, s.recs)
	p := e.EndProcess(pid, ExitStatus{})
	require.Len(t, p.Modules, 2)
	assert.Equal(t, uint64(5*ms), p.Modules[0].UnloadTS)
	assert.Equal(t, "/lib/a.so", p.ModuleAt(0x7000_1800, 3*ms).Path)
	assert.Equal(t, "/lib/b.so", p.ModuleAt(0x7000_1800, 7*ms).Path)
	assert.Equal(t, "/lib/a.so", p.ModuleAt(0x7000_1800, 0).Path) // before any load: nearest
	assert.Nil(t, p.ModuleAt(0x7000_3000, 3*ms))                  // past the segment
	assert.Equal(t, map[uint32]string{801: "worker"}, p.Threads)
}

func TestDecodeErrorsNamePidAndType(t *testing.T) {
	e := New(Options{})
	good := shm.AppendAlloc(nil, 1, shm.Alloc{Ptr: 1})
	short := recOf(t, 42, 43, good)
	short.Data = short.Data[:24]
	err := e.Apply(short)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "pid 42")
	assert.Contains(t, err.Error(), "ALLOC")

	bad := recOf(t, 42, 43, shm.AppendProcess(nil, 1, shm.Process{Event: 9}))
	err = e.Apply(bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unknown process event 9")

	rr := recOf(t, 42, 43, shm.AppendRealloc(nil, 1, shm.Realloc{OldPtr: 1, NewPtr: 2, TSBefore: 5}))
	require.Error(t, e.Apply(rr))
	assert.Equal(t, 0, e.Pending())
}

func TestEndProcessUnknownAndExitRecord(t *testing.T) {
	e := New(Options{})
	assert.Nil(t, e.EndProcess(1, ExitStatus{}))
	s := newStream(t)
	s.add(9, 9, shm.AppendProcess(nil, 5, shm.Process{Pid: 9, Event: shm.ProcessExit, Status: 4}))
	for _, r := range s.recs {
		require.NoError(t, e.Apply(r))
	}
	p := e.EndProcess(9, ExitStatus{})
	assert.Equal(t, ExitStatus{Known: true, Code: 4}, p.Exit)
	c, ok := ExitStatus{Known: true, Signal: 9}.ShellCode()
	assert.True(t, ok)
	assert.Equal(t, 137, c)
}

func TestWindowAfterFlush(t *testing.T) {
	// After a Flush, later records are still ordered by the window: the
	// overlap of the two blocks (peak 200) is seen although B arrives last.
	const pid = 900
	s := newStream(t)
	s.malloc(pid, 900, 1*ms, 0x100, 1, 1).free(pid, 900, 2*ms, 0x100)
	e := run(t, 100*time.Millisecond, s.recs)
	e.Flush()
	assert.Equal(t, 0, e.Pending())
	s = newStream(t)
	s.malloc(pid, 900, 10*ms, 0x1000, 100, 1).free(pid, 900, 30*ms, 0x1000).
		malloc(pid, 901, 20*ms, 0x2000, 100, 2).free(pid, 901, 40*ms, 0x2000)
	for _, r := range s.recs {
		require.NoError(t, e.Apply(r))
	}
	p := e.EndProcess(pid, ExitStatus{})
	assert.Equal(t, uint64(200), p.Totals.PeakBytes)
	assert.Equal(t, uint64(0), p.Totals.LateEvents)
}

func TestParentEndsBeforeChildForkRecordIsApplied(t *testing.T) {
	// The parent's last event is before the fork (it _exits right after
	// forking); the lead ends the parent before the child's fork record
	// left the window: the child still inherits the parent's blocks.
	const parent, child = 950, 951
	s := newStream(t)
	s.malloc(parent, parent, 10*ms, 0x1000, 64, 1).
		process(child, child, 20*ms, shm.ProcessFork, parent, "/bin/p")
	e := run(t, 100*time.Millisecond, s.recs)
	pp := e.EndProcess(parent, ExitStatus{Known: true})
	assert.Equal(t, uint64(1), pp.Totals.LiveObjects)
	cp := e.EndProcess(child, ExitStatus{Known: true})
	require.NotNil(t, cp)
	assert.Equal(t, uint64(1), cp.Totals.LiveObjects)
	assert.Equal(t, uint64(64), cp.Totals.LiveBytes)
}

// TestTimelineBounded: a process that runs for three times the timeline's
// capacity keeps fewer samples than maxTimeline, in time order, and the
// spike its timeline had sampled (a 1e6-byte block live across one
// boundary, early on) survives two coarsenings: the larger heap of each
// merged pair is kept. (A spike later, between two boundaries of the
// coarser grid, is not sampled at all, as between any two samples.)
func TestTimelineBounded(t *testing.T) {
	const pid, tid = 710, 710
	const n = 3 * maxTimeline
	const spikeAt = 100 // interval of the big block's malloc; freed in the next
	s := newStream(t)
	for i := uint64(0); i < n; i++ {
		s.malloc(pid, tid, i*10*ms+1*ms, 0x10000+i*16, 1, 1)
		if i == spikeAt {
			s.malloc(pid, tid, i*10*ms+2*ms, 0x1000_0000, 1e6, 2)
		}
		if i == spikeAt+1 {
			s.free(pid, tid, i*10*ms+2*ms, 0x1000_0000)
		}
	}
	e := New(Options{ReorderWindow: 100 * time.Millisecond, TimelineInterval: 10 * time.Millisecond})
	for _, r := range s.recs {
		require.NoError(t, e.Apply(r))
	}
	p := e.EndProcess(pid, ExitStatus{})
	require.Less(t, len(p.Timeline), maxTimeline+1) // + the final sample
	var top uint64
	for i, smp := range p.Timeline {
		if i > 0 {
			require.Greater(t, smp.TS, p.Timeline[i-1].TS, "sample %d", i)
		}
		top = max(top, smp.HeapBytes)
	}
	// At the boundary after the spike's malloc: spikeAt+1 small blocks and the big one.
	assert.Equal(t, uint64(1e6+spikeAt+1), top)
	assert.Equal(t, uint64(n), p.Timeline[len(p.Timeline)-1].HeapBytes)
}

func TestSettle(t *testing.T) {
	// Window 100 ms: without Settle nothing within 100 ms of the newest
	// event is applied. Settle(ts) applies every event stamped before ts,
	// in time order across threads, and none at or after it.
	const pid = 600
	s := newStream(t)
	s.malloc(pid, 600, 10*ms, 0x1000, 100, 1)
	s.malloc(pid, 601, 11*ms, 0x2000, 10, 2)
	s.free(pid, 600, 12*ms, 0x1000)
	s.malloc(pid, 601, 13*ms, 0x1000, 1, 2) // reuses 0x1000 after the free
	s.malloc(pid, 600, 20*ms, 0x3000, 1000, 1)
	e := run(t, 100*time.Millisecond, s.recs)
	for _, tc := range []struct {
		settle       uint64
		pending      int
		allocs, live uint64
		peak         uint64
	}{
		{0, 5, 0, 0, 0},             // nothing known
		{10 * ms, 5, 0, 0, 0},       // an event at the bound waits
		{10*ms + 1, 4, 1, 100, 100}, // the event just below it is applied
		{13*ms + 1, 1, 3, 11, 110},
		{5 * ms, 1, 3, 11, 110}, // a bound below what was applied changes nothing
		{21 * ms, 0, 4, 1011, 1011},
	} {
		e.Settle(tc.settle)
		p := e.Snapshot(pid)
		assert.Equal(t, tc.pending, e.Pending(), "pending after Settle(%d)", tc.settle)
		assert.Equal(t, tc.allocs, p.Totals.Allocations, "allocations after Settle(%d)", tc.settle)
		assert.Equal(t, tc.live, p.Totals.LiveBytes, "live bytes after Settle(%d)", tc.settle)
		assert.Equal(t, tc.peak, p.Totals.PeakBytes, "peak after Settle(%d)", tc.settle)
	}
	p := e.EndProcess(pid, ExitStatus{})
	assert.Zero(t, p.Totals.LateEvents)
	assert.Zero(t, p.Totals.UnknownFrees)
}

func TestWindowShrinksUnderPressure(t *testing.T) {
	// Window 1 s: with no watermark, thread 701's 500 ms of events wait.
	// Past windowBlocks event blocks in use, the window is 100 ms, so the
	// events waiting stay within a few blocks of the bound (the rest are
	// applied), and an event of a thread that stalled longer is late.
	const pid = 700
	for _, tc := range []struct {
		blocks      int
		maxPending  int
		late        uint64
		someApplied bool
	}{
		{1 << 20, 5000, 0, false}, // no pressure: everything waits
		{2, (2 + 2) * blockEvents, 1, true},
	} {
		e := New(Options{ReorderWindow: time.Second})
		e.windowBlocks = tc.blocks
		for i := uint64(0); i < 5000; i++ {
			ts := ms + i*ms/10 // 1 ms .. 500.9 ms
			require.NoError(t, e.Apply(recOf(t, pid, 701, shm.AppendAlloc(nil, ts, shm.Alloc{Ptr: 0x10000 + 16*i, Size: 1, StackID: 1, Kind: shm.KindMalloc}))))
		}
		assert.LessOrEqual(t, e.Pending(), tc.maxPending, "blocks %d: pending", tc.blocks)
		assert.Equal(t, tc.someApplied, e.Snapshot(pid).Totals.Allocations > 0, "blocks %d: applied", tc.blocks)
		require.NoError(t, e.Apply(recOf(t, pid, 702, shm.AppendAlloc(nil, ms/2, shm.Alloc{Ptr: 0x8000, Size: 1, StackID: 1, Kind: shm.KindMalloc}))))
		p := e.EndProcess(pid, ExitStatus{})
		assert.Equal(t, uint64(5001), p.Totals.Allocations)
		assert.Equal(t, tc.late, p.Totals.LateEvents, "blocks %d: late", tc.blocks)
	}
}

// TestFreesWaitForTheWatermark: frees the window pushes past the
// watermark wait for it (deferred.go): a late allocation still meets
// its free, the free meets its own block, and a fork child made while
// a free of its parent's waits does not keep the freed block.
func TestFreesWaitForTheWatermark(t *testing.T) {
	const parent, child = 610, 611
	s := newStream(t)
	s.malloc(parent, parent, 10*ms, 0x1000, 100, 1)
	s.free(parent, parent, 20*ms, 0x1000)
	s.recs = append(s.recs, recOf(t, child, child, shm.AppendProcess(nil, 30*ms, shm.Process{Pid: child, Ppid: parent, Event: shm.ProcessFork, Exe: "/x"})))
	s.malloc(parent, parent, 40*ms, 0x1000, 7, 2) // reuses 0x1000
	e := New(Options{ReorderWindow: time.Millisecond})
	e.Settle(5 * ms) // a watermark below all of them: a stalled writer
	for _, r := range s.recs {
		require.NoError(t, e.Apply(r))
	}
	e.Advance(100 * ms) // the window passes them all
	require.Zero(t, e.Pending())
	p := e.Snapshot(parent)
	assert.Equal(t, uint64(107), p.Totals.LiveBytes, "the free waits: its block still counts")

	// A late allocation of the parent's, stamped before the free, that
	// another thread made: the free is its, not the first block's.
	s = newStream(t)
	s.malloc(parent, parent+100, 15*ms, 0x5000, 3, 3)
	s.free(parent, parent, 16*ms, 0x5000)
	for _, r := range s.recs {
		require.NoError(t, e.Apply(r))
	}
	e.Settle(50 * ms) // every record arrived
	p = e.Snapshot(parent)
	assert.Equal(t, [3]uint64{3, 2, 7}, [3]uint64{p.Totals.Allocations, p.Totals.Frees, p.Totals.LiveBytes})
	assert.Zero(t, p.Totals.UnknownFrees)
	assert.Equal(t, uint64(3), p.Totals.LateEvents, "the two frees that waited and the late allocation")
	assert.Equal(t, uint64(0), e.Snapshot(child).Totals.LiveBytes, "the parent's free from before the fork, applied to the child too")

	c := e.EndProcess(child, ExitStatus{})
	require.NotNil(t, c)
	assert.Equal(t, uint64(0), c.Totals.LiveBytes, "the child does not keep the block its parent freed before the fork")
	p = e.EndProcess(parent, ExitStatus{})
	assert.Equal(t, uint64(7), p.Totals.LiveBytes)
}

// TestTemporaryPairAcrossSample: a temporary pair whose free comes after
// a timeline boundary is applied as two events, so the boundary's sample
// holds the block (proc.tempPair).
func TestTemporaryPairAcrossSample(t *testing.T) {
	const pid, tid = 400, 400
	s := newStream(t)
	s.malloc(pid, tid, 1*ms, 0x1000, 100, 1).free(pid, tid, 2*ms, 0x1000).
		malloc(pid, tid, 9*ms, 0x2000, 30, 2).free(pid, tid, 12*ms, 0x2000)
	e := run(t, 100*time.Millisecond, s.recs)
	p := e.EndProcess(pid, ExitStatus{Known: true})
	require.NotNil(t, p)
	assert.Contains(t, p.Timeline, Sample{TS: 10 * ms, HeapBytes: 30, LiveObjects: 1})
	assert.Equal(t, uint64(2), p.Totals.TemporaryAllocations)
}
