package engine

// Events waiting in the reorder window. Each thread's records arrive in
// program order, hence (with one monotonic clock) in timestamp order, so a
// thread's pending events form one sorted run: a FIFO queue. The engine
// keeps the threads with pending events in a min-heap keyed by their head
// event. When one thread's run comes first for a stretch, it applies the
// stretch in place (up to the next thread's head); when several threads'
// events interleave, it applies them in sorted batches (batch.go).
//
// Every heap event goes through the window, the live table included.
// Updating the table on arrival instead (DESIGN.md §7 reads that way),
// with only (ts, site, ±size) deltas waiting for peak, timeline and the
// sites' peak values, was measured as a prototype on the synthetic
// 4-thread streams (BenchmarkApply; table groups prefetched 8 records
// ahead in the chunk, sites prefetched in the window): 71-75 ns a record
// against 61-65, and no faster with 1 or 64 threads. The table costs no
// less at decode time than in time order, where it is prefetched
// already, and the deltas need the same ordering as the events.
// Resolving sites at decode time alone: 64 threads 4 ns faster, 4
// threads no faster, and pending events would have to be re-resolved at
// every exec and fork.

// Event kinds, in the low bits of the key: at equal timestamps a free is
// applied before an allocation (a block freed and reused at the same
// nanosecond), process records last.
const (
	evFree  = 0
	evAlloc = 1
	evProc  = 2
	kindBit = 2
	maxTS   = 1<<(64-kindBit) - 1
)

// event is one pending heap or process event: 32 bytes.
type event struct {
	key   uint64 // ts << kindBit | kind
	ptr   uint64 // evProc: id of the pending PROCESS record
	size  uint64
	stack uint64
}

func eventKey(ts uint64, kind uint64) uint64 {
	if ts > maxTS {
		ts = maxTS
	}
	return ts<<kindBit | kind
}

func (ev *event) ts() uint64 { return ev.key >> kindBit }

// blockEvents is the size of the fixed blocks pending events are kept in:
// a run grows and shrinks a block at a time, blocks are recycled through
// the engine's pool, so the window costs no copying and no garbage.
const blockEvents = 1024

type eventBlock struct {
	ev   [blockEvents]event
	next *eventBlock
}

// blockPool recycles eventBlocks; it keeps at most maxPooledBlocks.
// inUse counts the blocks handed out and not given back: the memory of
// the events waiting (the engine shortens its window when it is large).
type blockPool struct {
	free  []*eventBlock
	inUse int
}

const maxPooledBlocks = 2048 // 64 MiB

func (p *blockPool) get() *eventBlock {
	p.inUse++
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free = p.free[:n-1]
		return b
	}
	return new(eventBlock)
}

func (p *blockPool) put(b *eventBlock) {
	p.inUse--
	b.next = nil
	if len(p.free) < maxPooledBlocks {
		p.free = append(p.free, b)
	}
}

// thread is one (pid, tid) stream: its pending events (a FIFO of blocks)
// and the per-thread state of the temporary-allocation rule.
type thread struct {
	pid, tid uint32
	proc     *proc

	headBlk, tailBlk *eventBlock
	headIdx, tailIdx int // next to pop in headBlk; next free in tailBlk
	pending          int

	lastAlloc, lastAllocTS uint64
	lastAllocOK            bool
}

func (th *thread) empty() bool { return th.pending == 0 }

func (th *thread) headKey() uint64 { return th.headBlk.ev[th.headIdx].key }

func (th *thread) lastKey() uint64 { return th.tailBlk.ev[th.tailIdx-1].key }

// events yields th's pending events in order, leaving them pending
// (for ev := range th.events).
func (th *thread) events(yield func(*event) bool) {
	b, i := th.headBlk, th.headIdx
	for n := 0; n < th.pending; n++ {
		if i == blockEvents {
			b, i = b.next, 0
		}
		if !yield(&b.ev[i]) {
			return
		}
		i++
	}
}

// hasProcEvent reports whether a process record is among th's pending
// events (a fork or exec, ordered with other processes' events).
func (th *thread) hasProcEvent() bool {
	for ev := range th.events {
		if ev.key&(1<<kindBit-1) == evProc {
			return true
		}
	}
	return false
}

func (th *thread) pop(pool *blockPool) event {
	ev := th.headBlk.ev[th.headIdx]
	th.skip(1, pool)
	return ev
}

// skip takes th's first n pending events off its run (they were applied).
func (th *thread) skip(n int, pool *blockPool) {
	if n == 0 {
		return
	}
	th.pending -= n
	if th.pending == 0 {
		th.reset(pool)
		return
	}
	th.headIdx += n
	for th.headIdx >= blockEvents {
		b := th.headBlk
		th.headBlk, th.headIdx = b.next, th.headIdx-blockEvents
		pool.put(b)
	}
}

// reset empties th's run once its last event is taken, keeping the tail
// block for the next run.
func (th *thread) reset(pool *blockPool) {
	th.headIdx, th.tailIdx = 0, 0
	if th.headBlk != th.tailBlk {
		for b := th.headBlk; b != th.tailBlk; {
			next := b.next
			pool.put(b)
			b = next
		}
		th.headBlk = th.tailBlk
	}
}

// newTail links a new block at the tail of th's run (the first block, or
// after a full one) and returns it.
func (th *thread) newTail(pool *blockPool) *eventBlock {
	b := pool.get()
	if th.tailBlk == nil {
		th.headBlk = b
	} else {
		th.tailBlk.next = b
	}
	th.tailBlk, th.tailIdx = b, 0
	return b
}

// runAppender appends events at the tail of a thread's run (th, from
// Engine.appendTo) without making them pending: Engine.publish does that
// for all of them at once, so that decoding a chunk costs a store per
// event, not a call.
type runAppender struct {
	th    *thread
	pool  *blockPool
	b     *eventBlock // th's tail block
	i     int         // next free slot in b
	n     int         // events appended
	first *event      // the first of them (b.ev[i-1] is the last)
}

func (a *runAppender) push(ev event) {
	if a.i == blockEvents {
		a.nextBlock()
	}
	a.b.ev[a.i] = ev
	a.i++
	a.n++
}

// nextBlock links a new block at the tail of the run (out of line: push
// must stay small enough to inline).
//
//go:noinline
func (a *runAppender) nextBlock() { a.b, a.i = a.th.newTail(a.pool), 0 }

// release gives th's blocks back to the pool (the thread is forgotten).
func (th *thread) release(pool *blockPool) {
	for b := th.headBlk; b != nil; {
		next := b.next
		pool.put(b)
		b = next
	}
	th.headBlk, th.tailBlk, th.headIdx, th.tailIdx, th.pending = nil, nil, 0, 0, 0
}

// threadHeap is a min-heap of threads with pending events, by head key.
// Entries carry the key so that comparisons touch only the heap array.
type threadHeap []heapEntry

type heapEntry struct {
	key uint64 // the thread's head key
	th  *thread
}

func (h threadHeap) swap(i, j int) { h[i], h[j] = h[j], h[i] }

func (h *threadHeap) add(th *thread) {
	*h = append(*h, heapEntry{th.headKey(), th})
	h.up(len(*h) - 1)
}

// index is th's position in the heap, or -1 (linear: for EndProcess only).
func (h threadHeap) index(th *thread) int {
	for i := range h {
		if h[i].th == th {
			return i
		}
	}
	return -1
}

func (h *threadHeap) removeRoot() { h.remove(0) }

// remove takes the thread at position i out of the heap.
func (h *threadHeap) remove(i int) {
	old := *h
	n := len(old) - 1
	if i != n {
		old.swap(i, n)
	}
	old[n] = heapEntry{}
	*h = old[:n]
	if i < n {
		h.down(i)
		h.up(i)
	}
}

func (h threadHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if h[i].key >= h[p].key {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h threadHeap) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h[r].key < h[l].key {
			m = r
		}
		if h[m].key >= h[i].key {
			return
		}
		h.swap(i, m)
		i = m
	}
}

// secondKey is the smallest head key below the root, or ^0.
func (h threadHeap) secondKey() uint64 {
	k := ^uint64(0)
	if len(h) > 1 {
		k = h[1].key
	}
	if len(h) > 2 && h[2].key < k {
		k = h[2].key
	}
	return k
}
