package engine

import (
	"encoding/binary"
	"math/rand"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"memscope/shm"
)

// recordedStream is a ring's contents as the Reader delivers them: chunks
// of real encoded records, each owned by one thread, in the order the
// chunks filled up. The records of all chunks are kept back to back in
// one buffer, as in a mapped ring.
type recordedStream struct {
	buf     []byte
	chunks  []benchChunk
	records int
	calls   int // allocation and free calls: the events the engine applies
}

// benchChunk is one chunk: buf[off:end], n records written by pid/tid.
type benchChunk struct {
	off, end    uint32
	pid, tid, n uint32
}

// freeOrder says which of its live blocks a thread of benchStreamMix
// frees.
type freeOrder int

const (
	freeOldest freeOrder = iota // first in, first out: every free touches a cold entry
	freeNewest                  // last in, first out: short-lived objects, as most are
	freeRandom                  // any: objects of unrelated lifetimes, as in a cache or a heap of requests
)

// benchStreamMix simulates threads allocating concurrently: events are
// made in global time order (a random thread each step ns), written into
// each thread's chunk of recsPerChunk records, and delivered chunk by
// chunk in the order chunks fill up — the arrival order a Reader
// produces. A thread only allocates until it has liveSet blocks; from
// then on every 8th event (of all threads) is a realloc of the thread's
// oldest block, the other even ones free one of its blocks (chosen by
// order), the odd ones allocate. The heap keeps growing by an eighth of
// the events (about 400 000 live blocks after 3 M events, whatever the
// number of threads). Stacks come from 200 ids.
//
// Each thread's heap is its own region (an arena), and an allocation
// takes the address the thread freed last, if any, as C allocators do
// (glibc's tcache and fastbins are per-thread LIFO lists). A stream of
// ever-new addresses, which no allocator that frees produces, would
// scatter the live set over the whole address range. With freeOldest and
// freeNewest every block takes 32 bytes of the arena and any freed
// address can be reused; with freeRandom blocks take their size rounded
// as glibc rounds chunks (request + 8, to 16, at least 32), and a freed
// address is reused only for the same chunk size (tcache bins).
// BenchmarkApplyCaptured replays the stream of a real program, to compare.
func benchStreamMix(tb testing.TB, threads, events, liveSet, recsPerChunk int, step uint64, order freeOrder) *recordedStream {
	const pid = 4242
	rng := rand.New(rand.NewSource(7))
	type thr struct {
		chunk []byte
		n     int
		calls int // allocation and free calls in chunk
		live  []uint64
		freed map[uint64][]uint64 // by chunk size
		next  uint64
	}
	ts := make([]thr, threads)
	for i := range ts {
		ts[i].next = uint64(i+1) << 36
		ts[i].freed = map[uint64][]uint64{}
	}
	out := &recordedStream{}
	flush := func(i int) {
		t := &ts[i]
		if t.n == 0 {
			return
		}
		off := len(out.buf)
		out.buf = append(out.buf, t.chunk...)
		out.chunks = append(out.chunks, benchChunk{off: uint32(off), end: uint32(len(out.buf)), pid: pid, tid: uint32(pid + i), n: uint32(t.n)})
		out.records += t.n
		out.calls += t.calls
		t.chunk, t.n, t.calls = t.chunk[:0], 0, 0
	}
	clock := uint64(1e9)
	// chunkSize is the arena space of a block of size bytes.
	chunkSize := func(size uint64) uint64 {
		if order != freeRandom {
			return 32
		}
		return max((size+8+15)&^15, 32)
	}
	sizes := map[uint64]uint64{} // live address -> chunk size
	// newAddr hands out the thread's last freed address of the chunk
	// size first, as glibc's tcache and fastbins do, else a new one
	// above the others.
	newAddr := func(t *thr, size uint64) uint64 {
		cs := chunkSize(size)
		var p uint64
		if f := t.freed[cs]; len(f) > 0 {
			p = f[len(f)-1]
			t.freed[cs] = f[:len(f)-1]
		} else {
			p = t.next
			t.next += cs
		}
		sizes[p] = cs
		return p
	}
	release := func(t *thr, p uint64) {
		t.freed[sizes[p]] = append(t.freed[sizes[p]], p)
		delete(sizes, p)
	}
	for e := 0; e < events; e++ {
		clock += step
		i := rng.Intn(threads)
		t := &ts[i]
		stack := uint64(rng.Intn(200) + 1)
		switch {
		case len(t.live) >= liveSet && e%8 == 0:
			old := t.live[0]
			nw := newAddr(t, 48)
			release(t, old)
			t.chunk = shm.AppendRealloc(t.chunk, clock, shm.Realloc{OldPtr: old, NewPtr: nw, Size: 48, StackID: stack, TSBefore: clock - 20, Kind: shm.KindRealloc})
			t.calls++ // and one below
			t.live = append(t.live[1:], nw)
		case len(t.live) >= liveSet && e%2 == 0:
			k := 0 // freeOldest
			switch order {
			case freeNewest:
				k = len(t.live) - 1
			case freeRandom:
				k = rng.Intn(len(t.live))
			}
			p := t.live[k]
			t.chunk = shm.AppendFree(t.chunk, clock, shm.Free{Ptr: p})
			release(t, p)
			if k == 0 {
				t.live = t.live[1:]
			} else {
				t.live[k] = t.live[len(t.live)-1]
				t.live = t.live[:len(t.live)-1]
			}
		default:
			size := uint64(16 + rng.Intn(256))
			p := newAddr(t, size)
			t.chunk = shm.AppendAlloc(t.chunk, clock, shm.Alloc{Ptr: p, Size: size, StackID: stack, Kind: shm.KindMalloc})
			t.live = append(t.live, p)
		}
		t.n++
		t.calls++
		if t.n == recsPerChunk {
			flush(i)
		}
	}
	for i := range ts {
		flush(i)
	}
	return out
}

// chunkRecords returns the bytes of the first n records of chunk c (all of
// them if it has no more) and how many records that is.
func (s *recordedStream) chunkRecords(tb testing.TB, c benchChunk, n int) ([]byte, int) {
	data := s.buf[c.off:c.end]
	if n >= int(c.n) {
		return data, int(c.n)
	}
	// Cut the chunk after n records (the last pass of a benchmark).
	off := 0
	for k := 0; k < n; k++ {
		r, err := shm.ParseRecordHeader(data[off:])
		if err != nil {
			tb.Fatal(err)
		}
		off += len(r.Data)
	}
	return data[:off], n
}

// applyCases are the streams of BenchmarkApply: threads allocating
// concurrently, freeing their oldest block (fifo), their newest (recent)
// or any (random).
var applyCases = []struct {
	name    string
	threads int
	order   freeOrder
}{
	{"threads=1/fifo", 1, freeOldest}, {"threads=4/fifo", 4, freeOldest}, {"threads=64/fifo", 64, freeOldest},
	{"threads=1/recent", 1, freeNewest}, {"threads=4/recent", 4, freeNewest}, {"threads=64/recent", 64, freeNewest},
	{"threads=1/random", 1, freeRandom}, {"threads=4/random", 4, freeRandom}, {"threads=64/random", 64, freeRandom},
}

// lastStream is the stream of the last case (b.Run calls a benchmark
// function several times; one ~130 MB stream is kept, not all).
var lastStream struct {
	name string
	s    *recordedStream
}

func applyStream(b *testing.B, name string, threads int, order freeOrder) *recordedStream {
	if lastStream.name != name {
		lastStream.s = nil // let the previous one go first
		lastStream.s = benchStreamMix(b, threads, 3<<20, 4096, 300, 100, order)
		lastStream.name = name
	}
	return lastStream.s
}

// BenchmarkApply measures decode + reorder window + state updates per
// record, 3 M records of threads allocating concurrently (stacks from 200
// ids, 1 in 8 records a realloc, which is two events), delivered chunk by
// chunk to Engine.ApplyChunk from one 100 MB buffer, as the session polls
// the ring (shm.Reader.PollChunks). Every record is applied and counted;
// the engine is renewed (untimed) after each pass over the stream. See
// applyPasses for the metrics.
func BenchmarkApply(b *testing.B) {
	for _, tc := range applyCases {
		b.Run(tc.name, func(b *testing.B) {
			recs := applyStream(b, tc.name, tc.threads, tc.order)
			stacks := make([]shm.Record, 0, 200)
			for id := uint64(1); id <= 200; id++ {
				r, _ := shm.ParseRecordHeader(shm.AppendStack(nil, 1, 0, shm.Stack{ID: id, PCs: []uint64{0x401000 + id, 0x402000}}))
				r.Pid, r.Tid = 4242, 4242
				stacks = append(stacks, r)
			}
			applyPasses(b, recs, func() *Engine {
				e := New(Options{ReorderWindow: 100 * time.Millisecond})
				for _, s := range stacks {
					if err := e.Apply(s); err != nil {
						b.Fatal(err)
					}
				}
				return e
			})
		})
	}
}

// applyPasses applies b.N records of recs, in passes over the stream,
// each with an engine from fresh (made untimed), and reports Mevents/s
// (allocation and free calls applied per second of wall time, the unit
// of the engine's goal), cpu-ns/record and Mcalls/cpu-s (the same per CPU
// time of the benchmarking thread: the machine may be shared, and wall
// time then overstates the cost).
func applyPasses(b *testing.B, recs *recordedStream, fresh func() *Engine) {
	var e *Engine
	applied := 0
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var cpu time.Duration
	c0 := threadCPU()
	b.ReportAllocs()
	b.ResetTimer()
	ci := len(recs.chunks)
	for applied < b.N {
		if ci == len(recs.chunks) {
			if e != nil {
				e.Flush() // every record counted is applied
			}
			b.StopTimer()
			cpu += threadCPU() - c0
			e = fresh()
			ci = 0
			b.StartTimer()
			c0 = threadCPU()
		}
		c := recs.chunks[ci]
		data, n := recs.chunkRecords(b, c, b.N-applied)
		took, k, err := e.ApplyChunk(c.pid, c.tid, data)
		if err != nil || took != len(data) || k != n {
			b.Fatalf("chunk %d: took %d of %d bytes, %d of %d records: %v", ci, took, len(data), k, n, err)
		}
		applied += k
		ci++
	}
	e.Flush()
	b.StopTimer()
	cpu += threadCPU() - c0
	// Events are allocation and free calls (a realloc that moves or
	// resizes is one of each), the unit of the engine's goal and of
	// heaptrack's analysis (make bench compares them).
	events := float64(b.N) * float64(recs.calls) / float64(recs.records)
	b.ReportMetric(events/b.Elapsed().Seconds()/1e6, "Mevents/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/record")
	b.ReportMetric(events/cpu.Seconds()/1e6, "Mcalls/cpu-s")
}

// threadCPU is the CPU time of the calling OS thread.
func threadCPU() time.Duration {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
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
		b.Run("live="+strconv.Itoa(n), func(b *testing.B) {
			var bytesPer float64
			for i := 0; i < b.N; i++ {
				e := New(Options{ReorderWindow: -1})
				// Warm: the process and its thread exist before measuring.
				_ = e.Apply(recOf(b, 1, 1, shm.AppendAlloc(nil, 1, shm.Alloc{Ptr: 8, Size: 1, StackID: 1})))
				before := heapInUse()
				allocLive(b, e, n)
				after := heapInUse()
				bytesPer = float64(after-before) / float64(n)
				runtime.KeepAlive(e)
			}
			b.ReportMetric(bytesPer, "B/liveblock")
		})
	}
}

// loadCapture reads a file of records captured from a real program by
// memscope-bench (each record preceded by its pid and tid, little-endian
// uint32s) into a recordedStream: a chunk per run of records of one
// thread, at most 300 records (as in the benchmark streams).
func loadCapture(tb testing.TB, path string) *recordedStream {
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	out := &recordedStream{}
	var cur *benchChunk
	for off := 0; off < len(data); {
		if len(data)-off < 8 {
			tb.Fatalf("%s: %d bytes at offset %d: truncated", path, len(data)-off, off)
		}
		pid := binary.LittleEndian.Uint32(data[off:])
		tid := binary.LittleEndian.Uint32(data[off+4:])
		r, err := shm.ParseRecordHeader(data[off+8:])
		if err != nil {
			tb.Fatalf("%s: offset %d: %v", path, off+8, err)
		}
		if cur == nil || cur.pid != pid || cur.tid != tid || cur.n == 300 {
			n := uint32(len(out.buf))
			out.chunks = append(out.chunks, benchChunk{off: n, end: n, pid: pid, tid: tid})
			cur = &out.chunks[len(out.chunks)-1]
		}
		out.buf = append(out.buf, r.Data...)
		cur.end = uint32(len(out.buf))
		cur.n++
		out.records++
		out.calls += heapCalls(tb, r)
		off += 8 + len(r.Data)
	}
	return out
}

// heapCalls is how many allocations and frees rec stands for, counted as
// DESIGN.md §6's totals and heaptrack count them: a realloc moving or
// resizing a block is a free and an allocation, a free of NULL nothing.
func heapCalls(tb testing.TB, rec shm.Record) int {
	nonNull := func(p uint64) int {
		if p != 0 {
			return 1
		}
		return 0
	}
	var err error
	n := 0
	switch rec.Type {
	case shm.RecAlloc:
		var a shm.Alloc
		a, err = rec.Alloc()
		n = nonNull(a.Ptr)
	case shm.RecFree:
		var f shm.Free
		f, err = rec.Free()
		n = nonNull(f.Ptr)
	case shm.RecRealloc:
		var r shm.Realloc
		r, err = rec.Realloc()
		n = nonNull(r.OldPtr) + nonNull(r.NewPtr)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// BenchmarkApplyCaptured is BenchmarkApply on the records a real program
// wrote, with its addresses as glibc returned them: the file named by
// MEMSCOPE_CAPTURE, which `make bench` captures from testdata/bench/churn.c
// (4 threads freeing in random order; build/churn.records). Skipped
// without it.
func BenchmarkApplyCaptured(b *testing.B) {
	path := os.Getenv("MEMSCOPE_CAPTURE")
	if path == "" {
		b.Skip("MEMSCOPE_CAPTURE names no file of captured records (make bench makes one)")
	}
	applyPasses(b, loadCapture(b, path), func() *Engine { return New(Options{}) })
}

// BenchmarkCheckpoint reports what a journal checkpoint of the engine
// costs with n blocks live (100 sites): its bytes per live block, and
// the time to write (AppendState) and read it back (RestoreState) per
// live block.
func BenchmarkCheckpoint(b *testing.B) {
	for _, n := range []int{1_000_000} {
		b.Run("live="+strconv.Itoa(n), func(b *testing.B) {
			e := New(Options{ReorderWindow: -1})
			allocLive(b, e, n)
			var state []byte
			var write, read time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				state = e.AppendState(state[:0])
				t1 := time.Now()
				if err := New(Options{}).RestoreState(state); err != nil {
					b.Fatal(err)
				}
				write, read = write+t1.Sub(t0), read+time.Since(t1)
			}
			b.ReportMetric(float64(len(state))/float64(n), "B/liveblock-checkpoint")
			b.ReportMetric(float64(write.Nanoseconds())/float64(b.N)/float64(n), "write-ns/liveblock")
			b.ReportMetric(float64(read.Nanoseconds())/float64(b.N)/float64(n), "read-ns/liveblock")
		})
	}
}

// allocLive applies n allocations that stay live (setLiveAlloc's sizes
// and sites) to process 1 of e.
func allocLive(b testing.TB, e *Engine, n int) {
	rec := recOf(b, 1, 1, shm.AppendAlloc(nil, 2, shm.Alloc{Kind: shm.KindMalloc}))
	for k := 0; k < n; k++ {
		setLiveAlloc(&rec, k)
		if err := e.Apply(rec); err != nil {
			b.Fatal(err)
		}
	}
	e.Flush()
}
