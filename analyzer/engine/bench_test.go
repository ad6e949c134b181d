package engine

import (
	"math/rand"
	"runtime"
	"testing"
	"time"

	"memscope/shm"
)

// benchStream simulates threads allocating concurrently: events are made
// in global time order (a random thread each 50 ns), written into each
// thread's chunk of recsPerChunk records, and delivered chunk by chunk in
// the order chunks fill up — the arrival order a Reader produces. Each
// thread keeps a working set of liveSet blocks (malloc a new one, free
// the oldest), every 8th event is a realloc, stacks come from 200 ids.
// The records are kept in one buffer (recorded stream) so that the
// collector has nothing to scan, as with a mapped ring.
type recordedStream struct {
	buf  []byte
	offs []uint32
	tids []uint32
	pid  uint32
}

func (s *recordedStream) record(i int) shm.Record {
	r, _ := shm.ParseRecordHeader(s.buf[s.offs[i]:])
	r.Pid, r.Tid = s.pid, s.tids[i]
	return r
}

func benchStream(tb testing.TB, threads, events, liveSet, recsPerChunk int, step uint64) *recordedStream {
	return benchStreamMix(tb, threads, events, liveSet, recsPerChunk, step, false)
}

// benchStreamMix with recent set frees the newest block instead of the
// oldest (short-lived objects, as most are).
func benchStreamMix(tb testing.TB, threads, events, liveSet, recsPerChunk int, step uint64, recent bool) *recordedStream {
	const pid = 4242
	rng := rand.New(rand.NewSource(7))
	type thr struct {
		chunk []byte
		n     int
		live  []uint64
		next  uint64
	}
	ts := make([]thr, threads)
	for i := range ts {
		ts[i].next = uint64(i+1) << 36
	}
	out := &recordedStream{pid: pid}
	flush := func(i int) {
		t := &ts[i]
		b := t.chunk
		for len(b) > 0 {
			r, err := shm.ParseRecordHeader(b)
			if err != nil {
				tb.Fatal(err)
			}
			out.offs = append(out.offs, uint32(len(out.buf)))
			out.tids = append(out.tids, uint32(pid+i))
			out.buf = append(out.buf, r.Data...)
			b = b[len(r.Data):]
		}
		t.chunk, t.n = t.chunk[:0], 0
	}
	clock := uint64(1e9)
	for e := 0; e < events; e++ {
		clock += step
		i := rng.Intn(threads)
		t := &ts[i]
		stack := uint64(rng.Intn(200) + 1)
		switch {
		case len(t.live) >= liveSet && e%8 == 0:
			old := t.live[0]
			nw := t.next
			t.next += 32
			t.chunk = shm.AppendRealloc(t.chunk, clock, shm.Realloc{OldPtr: old, NewPtr: nw, Size: 48, StackID: stack, TSBefore: clock - 20, Kind: shm.KindRealloc})
			t.live = append(t.live[1:], nw)
		case len(t.live) >= liveSet && e%2 == 0 && recent:
			t.chunk = shm.AppendFree(t.chunk, clock, shm.Free{Ptr: t.live[len(t.live)-1]})
			t.live = t.live[:len(t.live)-1]
		case len(t.live) >= liveSet && e%2 == 0:
			t.chunk = shm.AppendFree(t.chunk, clock, shm.Free{Ptr: t.live[0]})
			t.live = t.live[1:]
		default:
			p := t.next
			t.next += 32
			t.chunk = shm.AppendAlloc(t.chunk, clock, shm.Alloc{Ptr: p, Size: uint64(16 + rng.Intn(256)), StackID: stack, Kind: shm.KindMalloc})
			t.live = append(t.live, p)
		}
		t.n++
		if t.n == recsPerChunk {
			flush(i)
		}
	}
	for i := range ts {
		flush(i)
	}
	return out
}

// BenchmarkApply measures decode + reorder window + state updates per
// record, 3 M records of threads allocating concurrently (stacks from 200
// ids, 1 in 8 records a realloc, which is two events). "fifo" frees the
// oldest block of the thread (every free touches a cold entry), "recent"
// the newest (short-lived objects). The input is read from one 100 MB
// buffer, as the Reader reads the ring.
func BenchmarkApply(b *testing.B) {
	for _, tc := range []struct {
		name    string
		threads int
		recent  bool
	}{
		{"threads=1/fifo", 1, false}, {"threads=4/fifo", 4, false}, {"threads=64/fifo", 64, false},
		{"threads=1/recent", 1, true}, {"threads=4/recent", 4, true}, {"threads=64/recent", 64, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			recs := benchStreamMix(b, tc.threads, 3<<20, 4096, 300, 100, tc.recent)
			stacks := make([]shm.Record, 0, 200)
			for id := uint64(1); id <= 200; id++ {
				r, _ := shm.ParseRecordHeader(shm.AppendStack(nil, 1, 0, shm.Stack{ID: id, PCs: []uint64{0x401000 + id, 0x402000}}))
				r.Pid, r.Tid = 4242, 4242
				stacks = append(stacks, r)
			}
			var e *Engine
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i % len(recs.offs)
				if k == 0 {
					b.StopTimer()
					e = New(Options{ReorderWindow: 100 * time.Millisecond})
					for _, s := range stacks {
						if err := e.Apply(s); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
				}
				if err := e.Apply(recs.record(k)); err != nil {
					b.Fatal(err)
				}
			}
			e.Flush()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mrecords/s")
		})
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkLiveBlockBytes reports the heap growth of the engine per live
// block, with n blocks live (requested sizes vary; 100 sites).
func BenchmarkLiveBlockBytes(b *testing.B) {
	for _, n := range []int{1_000_000, 1_500_000, 2_000_000} {
		b.Run(itoa(n), func(b *testing.B) {
			var bytesPer float64
			for i := 0; i < b.N; i++ {
				e := New(Options{ReorderWindow: -1})
				// Warm: the process and its thread exist before measuring.
				_ = e.Apply(recOf(b, 1, 1, shm.AppendAlloc(nil, 1, shm.Alloc{Ptr: 8, Size: 1, StackID: 1})))
				before := heapInUse()
				rec := recOf(b, 1, 1, shm.AppendAlloc(nil, 2, shm.Alloc{Kind: shm.KindMalloc}))
				for k := 0; k < n; k++ {
					// Rewrite ts, ptr, size, stack in place: one buffer, no garbage.
					d := rec.Data
					putU64(d[8:], uint64(10+k))
					putU64(d[16:], 0x7f0000000000+uint64(k)*48)
					putU64(d[24:], uint64(k%500))
					putU64(d[32:], uint64(k%100+1))
					rec.TS = uint64(10 + k)
					if err := e.Apply(rec); err != nil {
						b.Fatal(err)
					}
				}
				e.Flush()
				after := heapInUse()
				bytesPer = float64(after-before) / float64(n)
				runtime.KeepAlive(e)
			}
			b.ReportMetric(bytesPer, "B/liveblock")
		})
	}
}

func putU64(b []byte, v uint64) {
	for i := 0; i < 8; i++ {
		b[i] = byte(v >> (8 * i))
	}
}

func itoa(n int) string {
	s := ""
	for n > 0 {
		s = string(rune('0'+n%10)) + s
		n /= 10
	}
	return "live=" + s
}
