package engine

import (
	"math/rand"
	"memscope/analyzer/reach"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"memscope/shm"
)

// TestEngineMatchesModel checks the engine against a plain reference: all
// events sorted by time and applied one by one to maps. Random streams
// of 2 to 14 threads in two processes, with frees of other threads'
// blocks, addresses reused across threads, reallocs (in place and
// moving), failed allocations and unknown frees, are delivered as a
// Reader delivers them: each thread's records in chunks, the chunks in
// the order they fill up, with Advance calls in between.
//
//   - In time: every event arrives within the reorder window. The engine
//     must agree with the model on everything: totals, peak, every
//     site's counts and values at the peak, the timeline.
//   - Late: some chunks are held back past the window. The stream also
//     carries the watermark a reader would compute (the least timestamp
//     of what is held back), with which frees wait (deferred.go): every
//     free still meets its block, so the end state is the model's:
//     totals and every site's counts. Only the curve may differ (peak,
//     timeline), as late events are applied when they arrive.
func TestEngineMatchesModel(t *testing.T) {
	var lateEvents uint64
	for _, late := range []bool{false, true} {
		for seed := int64(1); seed <= 150; seed++ {
			s := randomStream(t, seed, late)
			window := 50 * time.Microsecond
			if late {
				window = time.Duration(2000 + seed%5*1000)
			}
			interval := time.Duration(500 + seed%3*700)
			// Stamps here are exact and nanoseconds apart: in time, the
			// reuse rule (reuse.go) must change nothing; with late frees
			// among them, all within its skew, it is off (its own test).
			skew := time.Duration(0)
			if late {
				skew = -1
			}
			e := New(Options{ReorderWindow: window, TimelineInterval: interval, ReuseSkew: skew})
			// Batches of every size: full ones, and the default.
			e.batchLimit = []int{0, 1, 2, 7, 64}[seed%5]
			for i, r := range s.recs {
				if s.advance[i] != 0 {
					e.Advance(s.advance[i])
					continue
				}
				if s.settle[i] != 0 {
					e.Settle(s.settle[i])
					continue
				}
				require.NoError(t, e.Apply(r))
			}
			for _, pid := range []uint32{100, 200} {
				want := s.model(pid, uint64(interval))
				got := e.EndProcess(pid, ExitStatus{})
				if want == nil {
					require.Nil(t, got, "late=%v seed %d pid %d", late, seed, pid)
					continue
				}
				require.NotNil(t, got, "late=%v seed %d pid %d", late, seed, pid)
				for i := range want.Sites {
					// No leak check ran: every live block's verdict is unknown.
					s := &want.Sites[i]
					s.ByKind[reach.Unknown] = KindCount{Objects: s.LiveObjects, Bytes: s.LiveBytes}
				}
				if !late {
					require.Zero(t, got.Totals.LateEvents, "seed %d pid %d: the window was too short for the test", seed, pid)
					require.Equal(t, want.Totals, got.Totals, "seed %d pid %d", seed, pid)
					require.Equal(t, want.Sites, got.Sites, "seed %d pid %d", seed, pid)
					require.Equal(t, want.Timeline, got.Timeline, "seed %d pid %d", seed, pid)
					continue
				}
				// Late: everything but the curve.
				lateEvents += got.Totals.LateEvents
				wt, gt := want.Totals, got.Totals
				wt.PeakBytes, wt.PeakObjects, wt.PeakTS, wt.LateEvents = 0, 0, 0, 0
				gt.PeakBytes, gt.PeakObjects, gt.PeakTS, gt.LateEvents = 0, 0, 0, 0
				require.Equal(t, wt, gt, "late seed %d pid %d", seed, pid)
				require.Equal(t, len(want.Sites), len(got.Sites), "late seed %d pid %d", seed, pid)
				for i := range want.Sites {
					w, g := want.Sites[i], got.Sites[i]
					w.PeakObjects, w.PeakBytes, g.PeakObjects, g.PeakBytes = 0, 0, 0, 0
					require.Equal(t, w, g, "late seed %d pid %d", seed, pid)
				}
			}
		}
	}
	require.Greater(t, lateEvents, uint64(10000), "the late streams hardly had late events")
}

// modelStream is a random stream: the records in delivery order
// (advance[i] != 0: "Advance to advance[i]" instead of recs[i]) and
// every event in time order for the model.
type modelStream struct {
	recs    []shm.Record
	advance []uint64
	settle  []uint64 // settle[i] != 0: "Settle(settle[i])" instead of recs[i]
	events  []modelEvent
}

// modelEvent is one event of the model: a heap event, or a PROCESS
// record (start), which only counts for the timeline.
type modelEvent struct {
	pid, tid  uint32
	ts        uint64
	kind      uint64 // evFree, evAlloc, evProc
	ptr, size uint64
	stack     uint64
}

func randomStream(t *testing.T, seed int64, late bool) *modelStream {
	rng := rand.New(rand.NewSource(seed))
	s := &modelStream{}
	type thr struct {
		pid, tid uint32
		chunk    []shm.Record
		limit    int
		held     [][]shm.Record
	}
	// Up to 14 threads, so that batches of more than mergeRuns threads
	// are radix sorted.
	nthreads := 2 + rng.Intn(5)
	if seed%3 == 0 {
		nthreads = 7 + rng.Intn(8)
	}
	threads := make([]*thr, nthreads)
	for i := range threads {
		pid := uint32(100)
		if i >= 4 {
			pid = 200
		}
		threads[i] = &thr{pid: pid, tid: uint32(1000 + i), limit: 1 + rng.Intn(40)}
	}
	var clock uint64
	// The reader's watermark: no record still to come is stamped
	// before the least stamp of what is held back or not yet flushed.
	watermark := func() uint64 {
		w := clock + 1
		for _, th := range threads {
			for _, c := range append(th.held, th.chunk) {
				for _, r := range c {
					w = min(w, firstStamp(t, r))
				}
			}
		}
		return w
	}
	deliver := func(c []shm.Record) {
		s.recs = append(s.recs, c...)
		s.advance = append(s.advance, make([]uint64, len(c))...)
		s.settle = append(s.settle, make([]uint64, len(c))...)
		if late {
			s.recs = append(s.recs, shm.Record{})
			s.advance = append(s.advance, 0)
			s.settle = append(s.settle, watermark())
		}
	}
	// A thread's chunks arrive in its order; in the late streams one is
	// now and then held back, and the thread's later chunks wait behind
	// it.
	flush := func(th *thr) {
		if len(th.chunk) == 0 {
			return
		}
		c := th.chunk
		th.chunk = nil
		if len(th.held) > 0 || (late && rng.Intn(10) == 0) {
			th.held = append(th.held, c)
			return
		}
		deliver(c)
	}
	release := func(th *thr) {
		for _, c := range th.held {
			deliver(c)
		}
		th.held = nil
	}
	add := func(th *thr, ev modelEvent, b []byte) {
		s.events = append(s.events, ev)
		th.chunk = append(th.chunk, recOf(t, th.pid, th.tid, b))
		if len(th.chunk) >= th.limit {
			flush(th)
		}
	}

	// The heap of each process as the program sees it: live blocks, and
	// freed addresses it may hand out again (to any of its threads).
	live := map[uint32][]uint64{}
	freed := map[uint32][]uint64{}
	next := uint64(0x10000)
	newAddr := func(pid uint32) uint64 {
		if f := freed[pid]; len(f) > 0 && rng.Intn(4) != 0 {
			i := rng.Intn(len(f))
			p := f[i]
			freed[pid] = append(f[:i], f[i+1:]...)
			return p
		}
		next += 16 * uint64(1+rng.Intn(4))
		return next
	}
	takeLive := func(pid uint32) (uint64, bool) {
		l := live[pid]
		if len(l) == 0 {
			return 0, false
		}
		i := rng.Intn(len(l))
		p := l[i]
		live[pid] = append(l[:i], l[i+1:]...)
		return p, true
	}

	clock = 1000
	for i, pid := range []uint32{100, 200} {
		if pid == 200 && nthreads <= 4 {
			break
		}
		// The first record of a process, before its other threads
		// exist: never late.
		th := threads[4*i]
		clock++
		s.events = append(s.events, modelEvent{pid: pid, tid: th.tid, ts: clock, kind: evProc})
		deliver([]shm.Record{recOf(t, pid, th.tid, shm.AppendProcess(nil, clock, shm.Process{Pid: pid, Event: shm.ProcessStart, Exe: "/x"}))})
	}
	events := 200 + rng.Intn(3000)
	for e := 0; e < events; e++ {
		clock += 1 + uint64(rng.Intn(40))
		th := threads[rng.Intn(nthreads)]
		pid := th.pid
		stack := uint64(1 + rng.Intn(6))
		switch r := rng.Intn(100); {
		case r < 45:
			p, size := newAddr(pid), uint64(1+rng.Intn(500))
			add(th, modelEvent{pid: pid, tid: th.tid, ts: clock, kind: evAlloc, ptr: p, size: size, stack: stack},
				shm.AppendAlloc(nil, clock, shm.Alloc{Ptr: p, Size: size, StackID: stack}))
			live[pid] = append(live[pid], p)
		case r < 85:
			if p, ok := takeLive(pid); ok {
				add(th, modelEvent{pid: pid, tid: th.tid, ts: clock, kind: evFree, ptr: p},
					shm.AppendFree(nil, clock, shm.Free{Ptr: p}))
				freed[pid] = append(freed[pid], p)
			}
		case r < 93:
			if old, ok := takeLive(pid); ok {
				freed[pid] = append(freed[pid], old)
				nw, size := newAddr(pid), uint64(1+rng.Intn(900))
				clock += 2
				s.events = append(s.events, modelEvent{pid: pid, tid: th.tid, ts: clock - 1, kind: evFree, ptr: old})
				add(th, modelEvent{pid: pid, tid: th.tid, ts: clock, kind: evAlloc, ptr: nw, size: size, stack: stack},
					shm.AppendRealloc(nil, clock, shm.Realloc{OldPtr: old, NewPtr: nw, Size: size, StackID: stack, TSBefore: clock - 1, Kind: shm.KindRealloc}))
				live[pid] = append(live[pid], nw)
			}
		case r < 96: // a failed allocation
			add(th, modelEvent{pid: pid, tid: th.tid, ts: clock, kind: evAlloc, ptr: 0, size: 7, stack: stack},
				shm.AppendAlloc(nil, clock, shm.Alloc{Ptr: 0, Size: 7, StackID: stack}))
		case r < 98: // a free of an address never allocated
			next += 16
			add(th, modelEvent{pid: pid, tid: th.tid, ts: clock, kind: evFree, ptr: next},
				shm.AppendFree(nil, clock, shm.Free{Ptr: next}))
		default:
			s.recs = append(s.recs, shm.Record{})
			s.advance = append(s.advance, clock-uint64(rng.Intn(int(min(clock, 3000)))))
			s.settle = append(s.settle, 0)
		}
		if late && rng.Intn(100) == 0 {
			release(threads[rng.Intn(nthreads)])
		}
	}
	for _, th := range threads {
		flush(th)
		release(th)
	}
	return s
}

// firstStamp is the earliest timestamp of a record (a realloc's free
// comes before it).
func firstStamp(t *testing.T, r shm.Record) uint64 {
	if r.Type == shm.RecRealloc {
		re, err := r.Realloc()
		require.NoError(t, err)
		return re.TSBefore
	}
	return r.TS
}

// model applies pid's events in time order to plain maps and returns
// what the engine should report (Totals, Sites, Timeline), or nil if pid
// has no events.
func (s *modelStream) model(pid uint32, interval uint64) *Process {
	var evs []modelEvent
	for _, ev := range s.events {
		if ev.pid == pid {
			evs = append(evs, ev)
		}
	}
	if len(evs) == 0 {
		return nil
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].ts<<kindBit|evs[i].kind < evs[j].ts<<kindBit|evs[j].kind })

	type siteKey struct {
		stack uint64
		tid   uint32
	}
	type block struct {
		ts, size uint64
		site     siteKey
	}
	type lastAlloc struct {
		ptr, ts uint64
		ok      bool
	}
	sites := map[siteKey]*Site{}
	gens := map[uint64][]block{} // live generations of an address, oldest first
	last := map[uint32]*lastAlloc{}
	var t Totals
	var timeline []Sample
	var nextSample uint64
	for _, ev := range evs {
		if ev.ts >= nextSample {
			b := ev.ts - ev.ts%interval
			if nextSample != 0 && nextSample < b {
				timeline = append(timeline, Sample{TS: nextSample, HeapBytes: t.LiveBytes, LiveObjects: t.LiveObjects})
			}
			timeline = append(timeline, Sample{TS: b, HeapBytes: t.LiveBytes, LiveObjects: t.LiveObjects})
			nextSample = b + interval
		}
		la := last[ev.tid]
		if la == nil {
			la = &lastAlloc{}
			last[ev.tid] = la
		}
		switch ev.kind {
		case evAlloc:
			if ev.ptr == 0 {
				continue
			}
			k := siteKey{ev.stack, ev.tid}
			st := sites[k]
			if st == nil {
				st = &Site{StackID: ev.stack, Tid: ev.tid, FirstTS: ev.ts}
				sites[k] = st
			}
			st.Allocs++
			st.AllocBytes += ev.size
			st.LiveObjects++
			st.LiveBytes += ev.size
			t.Allocations++
			t.BytesAllocated += ev.size
			t.LiveObjects++
			t.LiveBytes += ev.size
			gens[ev.ptr] = append(gens[ev.ptr], block{ev.ts, ev.size, k})
			*la = lastAlloc{ev.ptr, ev.ts, true}
			if t.LiveBytes > t.PeakBytes {
				t.PeakBytes, t.PeakObjects, t.PeakTS = t.LiveBytes, t.LiveObjects, ev.ts
				for _, st := range sites {
					st.PeakObjects, st.PeakBytes = st.LiveObjects, st.LiveBytes
				}
			}
		case evFree:
			temp := la.ok && la.ptr == ev.ptr
			lastTS := la.ts
			la.ok = false
			g := gens[ev.ptr]
			if len(g) == 0 {
				t.UnknownFrees++
				continue
			}
			b := g[len(g)-1] // the newest (allocated before: time order)
			gens[ev.ptr] = g[:len(g)-1]
			st := sites[b.site]
			st.LiveObjects--
			st.LiveBytes -= b.size
			t.Frees++
			t.LiveObjects--
			t.LiveBytes -= b.size
			if temp && b.ts == lastTS {
				st.Temporaries++
				t.TemporaryAllocations++
			}
		}
	}
	last2 := evs[len(evs)-1].ts
	timeline = append(timeline, Sample{TS: last2, HeapBytes: t.LiveBytes, LiveObjects: t.LiveObjects})
	p := &Process{Totals: t, Timeline: timeline}
	for _, st := range sites {
		p.Sites = append(p.Sites, *st)
	}
	sort.Slice(p.Sites, func(i, j int) bool {
		a, b := &p.Sites[i], &p.Sites[j]
		if a.StackID != b.StackID {
			return a.StackID < b.StackID
		}
		return a.Tid < b.Tid
	})
	return p
}
