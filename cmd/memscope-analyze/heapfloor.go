package main

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// gcPercent is the analyzer's GOGC unless the environment sets one. Its
// heap is mostly flat, pointer-free tables (the live table, site stats),
// so a collection costs little, while Go's default of 100 lets the heap
// grow to twice the live data: on a program with 1.6 M live blocks that
// was 230 MB instead of 140 MB.
const gcPercent = 20

// gcFloor is a heap the collector counts on top of the live data (a
// ballast: allocated, never touched, so it costs address space, not
// memory). With GOGC 20 alone a small heap is collected every few hundred
// KB of garbage: in a build the analyzer spent 11% of its CPU in the
// collector while writing the reports of hundreds of processes. A make
// -j2 of 101 files: 204 collections without, 107 with it. A big heap
// keeps most of GOGC 20's saving (140 MB live: 28 -> 41 MB of garbage).
const gcFloor = 64 << 20

// heapFloor keeps the collector off until the heap nears gcFloor, then
// switches to GOGC gcPercent over a ballast of gcFloor.
//
// Allocated at start, the ballast itself set off a collection within
// the first milliseconds (the heap at once past the initial 4 MB goal),
// and that collection, with its mark workers, stop-the-worlds and
// sweeping, was a tenth of a short run's CPU: `run /bin/true` took 35-38
// ms with it, 34 with no collection at all (perf stat -r 30). Most runs
// of the analyzer allocate less than gcFloor in all: until then the
// collector is off (GOGC off, a memory limit of gcFloor), and the first
// collection the limit sets off (a finalizer on a sentinel sees it)
// installs the ballast and GOGC, after which the policy is the one the
// analyzer always had: a heap goal of (live + gcFloor) * 1.2.
type heapFloor struct {
	mu      sync.Mutex
	ballast []byte // nil until the first collection
	limit   int64  // the memory limit before ours (GOMEMLIMIT, or none)
}

// sentinel is what the finalizer of the first collection hangs on (big
// enough to stay out of the tiny allocator, whose blocks are freed only
// with all their neighbours).
type sentinel struct {
	_ [4]*byte
}

// startHeapFloor turns the collector off until the first collection that
// the memory limit sets off.
func startHeapFloor() *heapFloor {
	f := &heapFloor{limit: debug.SetMemoryLimit(-1)} // -1 reads it
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(min(f.limit, gcFloor))
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) { f.install() })
	return f
}

// install allocates the ballast and hands collection back to GOGC, and
// the memory limit back to what it was (a user's GOMEMLIMIT holds). It
// runs once, on the finalizer goroutine, after the first collection. The
// limit goes first: allocated under ours, the ballast made the runtime
// return memory to the kernel page by page to stay below it (38 ms of
// madvise calls in a one-second run).
func (f *heapFloor) install() {
	f.mu.Lock()
	defer f.mu.Unlock()
	debug.SetMemoryLimit(f.limit)
	debug.SetGCPercent(gcPercent)
	f.ballast = make([]byte, gcFloor)
}
