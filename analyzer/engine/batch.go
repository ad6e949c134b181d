package engine

import (
	"math/bits"
	"unsafe"
)

// Sorted batches: how release applies the events of several threads.
//
// When threads allocate at the same time, their events interleave one
// by one in time, and merging their runs through the heap takes a heap
// operation and a few unpredictable branches per event (measured: 21 ns
// an event with 4 threads, 43 with 64). Instead, release copies the
// events of every thread that falls in a span of keys into a batch,
// sorts the batch (merging the threads' runs pairwise without branching
// on their order, or by radix sort when there are many) and applies it
// in order, fetching the table group of the event slotAhead on, whatever
// its thread (merging through the heap, the engine could prefetch only
// within a thread's run, useless when other threads' events come
// between).
//
// Invariants applyBatch keeps:
//   - Each thread's share of the batch is a prefix of its run, in its
//     order, with keys ascending: gathering a thread stops at the first
//     key above the span, at a key lower than the one before (bad
//     input: timestamps going backwards), or when the batch is full.
//   - Every pending event with a key < applyTo is in the batch, and
//     every one with key == applyTo that must come before one of the
//     batch: the threads not gathered have heads >= applyTo, and a
//     gathered thread's rest is above the span, or applyTo is at most
//     its next key (the batch filled up). Equal keys of different
//     threads may be applied in either order. (Bad input aside: the
//     rest of a thread whose timestamps went backwards waits for the
//     next batch and is counted late.)
//   - The events applied are exactly those of the batch with keys <=
//     applyTo, in key order (ties in the order gathered), so each
//     thread's applied events are a prefix of its share; only they are
//     taken off its run (skip), the rest stay pending in place.

// batchCap is how many events a batch holds: 2048 (120 KB with its
// sorting arrays) measured faster than 512 and 1024 with 64 threads and
// as fast as 4096 and 8192.
const (
	batchCap     = 2048
	batchIdxBits = 11 // log2(batchCap): ord's index bits
	radixBits    = 11
	radixMask    = 1<<radixBits - 1
	// maxRadixPasses covers every bit of ord above the index.
	maxRadixPasses = (64 - batchIdxBits + radixBits - 1) / radixBits
	// mergeRuns is the most threads a batch is sorted for by merging
	// their runs pairwise; with more, by radix sort. Merging costs a
	// pass per doubling of the runs; the radix sort a counting pass and
	// two passes (three for a span over 2^22 key units). A full batch
	// of randomly interleaved threads (BenchmarkBatchSort), ns an event:
	// merged 2.8 (2 threads), 4.8 (4), 6.9 (8); radix sorted 4.9 (4),
	// 5.0 (8), 4.5 (64).
	mergeRuns = 4
	// insertionMax: batches up to this size are insertion sorted (the
	// radix sort's counts cost more than the sort).
	insertionMax = 32
	// A batch covers at first firstSpan key units (a quarter
	// millisecond); the span halves when a batch fills up and doubles
	// when it was under a quarter full, so that batches hold hundreds of
	// events whatever the rate.
	firstSpan = 1 << 20
	minSpan   = 1 << 4
	maxSpan   = 1 << 50
)

// sortedBatch is the engine's buffer for applying the events of several
// threads in key order.
type sortedBatch struct {
	ev   [batchCap]event
	th   [batchCap]*thread
	ord  [batchCap]uint64 // (key-base) << batchIdxBits | index into ev
	tmp  [batchCap]uint64
	cnt  [maxRadixPasses][1 << radixBits]uint32
	from []share
	span uint64 // key units a batch covers
	// limit is the batch's capacity, batchCap but in tests.
	limit int
}

// share is one thread's part of a batch: n events from its head, at
// ev[first:first+n].
type share struct {
	th       *thread
	first, n int
}

func newSortedBatch(limit int) *sortedBatch {
	if limit <= 0 || limit > batchCap {
		limit = batchCap
	}
	return &sortedBatch{span: firstSpan, limit: limit}
}

// applyBatch applies, in key order, the pending events with keys <= limit
// in the span from the smallest head key on, or as many of them as fit
// in a batch. It reports whether it applied any: it applies none when
// only one thread has events in the span (release applies them in place,
// without copying). Otherwise it applies at least the event at base: the
// first thread gathered is the heap's root, and applyTo >= base.
func (e *Engine) applyBatch(limit uint64) bool {
	b := e.batch
	if b == nil {
		b = newSortedBatch(e.batchLimit)
		e.batch = b
	}
	base := e.heap[0].key
	hi := limit
	spanLimited := false
	if end := base + b.span; end > base && end < hi {
		hi, spanLimited = end, true
	}
	if e.heap.secondKey() > hi {
		// One thread in the span: apply its run in place.
		return false
	}
	// Gather the threads whose heads are in [base, hi], in heap order.
	n := 0
	b.from = b.from[:0]
	full := false
	applyTo := hi
	for len(e.heap) > 0 && e.heap[0].key <= hi && !full {
		th := e.heap[0].th
		e.heap.removeRoot()
		first := n
		blk, i, left := th.headBlk, th.headIdx, th.pending
		prev := uint64(0)
	gather:
		for {
			end := blockEvents
			if blk == th.tailBlk {
				end = th.tailIdx
			}
			for ; i < end; i++ {
				// The run was written a window ago: fetch ahead.
				if i&1 == 0 && i+queueAhead < end {
					prefetch(unsafe.Pointer(&blk.ev[i+queueAhead]))
				}
				ev := &blk.ev[i]
				if ev.key > hi || ev.key < prev {
					break gather
				}
				if n == b.limit {
					// Full: what is left of th waits, so only
					// events up to its next key may be applied.
					full = true
					applyTo = min(applyTo, ev.key)
					break gather
				}
				prev = ev.key
				b.ev[n] = *ev
				b.th[n] = th
				n++
				left--
			}
			if left == 0 {
				break
			}
			blk, i = blk.next, 0
		}
		b.from = append(b.from, share{th, first, n - first})
	}
	if full {
		if len(e.heap) > 0 {
			applyTo = min(applyTo, e.heap[0].key)
		}
		b.span = max(b.span/2, minSpan)
	} else if spanLimited && n < b.limit/4 {
		b.span = min(b.span*2, maxSpan)
	}
	b.sort(n, base)

	// Apply.
	applied := 0
	for ; applied < n; applied++ {
		o := b.ord[applied]
		if o>>batchIdxBits > applyTo-base {
			break
		}
		if j := applied + slotAhead; j < n {
			k := b.ord[j] & (batchCap - 1)
			b.th[k].proc.live.prefetch(b.ev[k].ptr)
		}
		k := o & (batchCap - 1)
		if applied+1 < n {
			// An allocation and the free of its block next in time order,
			// by the same thread: one step (applyTempPair).
			o2 := b.ord[applied+1]
			k2 := o2 & (batchCap - 1)
			if o2>>batchIdxBits <= applyTo-base && b.th[k2] == b.th[k] && e.applyTempPair(b.th[k], &b.ev[k], &b.ev[k2]) {
				applied++
				continue
			}
		}
		e.applyEvent(b.th[k], &b.ev[k])
	}
	// Take the applied events off their threads' runs.
	for _, s := range b.from {
		m := s.n
		if applied < n {
			for m > 0 && b.ev[s.first+m-1].key > applyTo {
				m--
			}
		}
		s.th.skip(m, &e.pool)
		if !s.th.empty() {
			e.heap.add(s.th)
		}
	}
	return applied > 0
}

// sort fills ord[:n] with the batch's events in key order, ties in the
// order gathered. Each share is sorted already: one is left as it is, a
// few are merged, many radix sorted.
func (b *sortedBatch) sort(n int, base uint64) {
	var width uint64
	for i := 0; i < n; i++ {
		d := b.ev[i].key - base
		b.ord[i] = d<<batchIdxBits | uint64(i)
		width |= d
	}
	switch {
	case len(b.from) <= 1:
	case n <= insertionMax:
		insertionSort(b.ord[:n])
	case len(b.from) <= mergeRuns:
		b.mergeShares(n)
	default:
		b.radixSort(n, bits.Len64(width))
	}
}

// insertionSort sorts a.
func insertionSort(a []uint64) {
	for i := 1; i < len(a); i++ {
		v, j := a[i], i
		for ; j > 0 && a[j-1] > v; j-- {
			a[j] = a[j-1]
		}
		a[j] = v
	}
}

// mergeShares sorts ord[:n] by merging the shares' runs pairwise, a pass
// per doubling.
func (b *sortedBatch) mergeShares(n int) {
	// bounds[r] is where run r starts; bounds[runs] == n.
	var bounds [mergeRuns + 1]int
	runs := len(b.from)
	for r, s := range b.from {
		bounds[r] = s.first
	}
	bounds[runs] = n
	src, dst := b.ord[:n], b.tmp[:n]
	for runs > 1 {
		w := 0
		for r := 0; r < runs; r += 2 {
			lo, mid := bounds[r], bounds[r+1]
			if r+1 == runs {
				copy(dst[lo:mid], src[lo:mid])
			} else {
				hi := bounds[r+2]
				mergeInto(dst[lo:hi], src[lo:mid], src[mid:hi])
			}
			bounds[w] = lo
			w++
		}
		bounds[w] = n
		runs = w
		src, dst = dst, src
	}
	if &src[0] != &b.ord[0] {
		copy(b.ord[:n], src)
	}
}

// mergeInto merges the sorted a and b (no value in both, none ^0) into
// dst (len(a)+len(b) long). Which of the two is smaller is random when
// threads interleave, so it picks without a branch on it (bits.Sub64's
// borrow is the comparison). Each pick waits for the one before; to
// overlap two such chains it fills dst from both ends at once, the
// smallest values from the front and the largest from the back.
func mergeInto(dst, a, b []uint64) {
	if len(a) == 0 || len(b) == 0 {
		copy(dst, a)
		copy(dst[len(a):], b)
		return
	}
	la, lb := len(a), len(b)
	i, j := 0, 0            // front: next of a and b
	ia, jb := la-1, lb-1    // back: last left of a and b
	lo, hi := 0, len(dst)-1 // next to fill from the front, the back
	for lo <= hi {
		// Front: the smaller head, an exhausted run's being ^0.
		x, y := a[min(i, la-1)], b[min(j, lb-1)]
		if i >= la {
			x = ^uint64(0)
		}
		if j >= lb {
			y = ^uint64(0)
		}
		_, xLess := bits.Sub64(x, y, 0)
		dst[lo] = y ^ (x^y)&-xLess
		i += int(xLess)
		j += int(1 - xLess)
		lo++
		if lo > hi {
			break
		}
		// Back: the larger tail, one past each value so that an
		// exhausted run's is 0.
		xb, yb := a[max(ia, 0)]+1, b[max(jb, 0)]+1
		if ia < 0 {
			xb = 0
		}
		if jb < 0 {
			yb = 0
		}
		_, xbLess := bits.Sub64(xb, yb, 0)
		dst[hi] = xb ^ (xb^yb)&-xbLess - 1
		ia -= int(1 - xbLess)
		jb -= int(xbLess)
		hi--
	}
}

// radixSort sorts ord[:n], whose keys (above the index bits) are width
// bits wide, least significant digit first (stable). It counts the
// digits of every pass in one read of ord: counting pass by pass, the
// counter of a digit that repeats (the high digits of events close in
// time) waited on its own previous increment, and the sort took 8 ns an
// event at 64 threads instead of 4.5.
func (b *sortedBatch) radixSort(n, width int) {
	passes := (width + radixBits - 1) / radixBits
	if passes > maxRadixPasses {
		passes = maxRadixPasses
	}
	// Count every pass's digits in one read of ord.
	cnt := &b.cnt
	for p := 0; p < passes; p++ {
		cnt[p] = [1 << radixBits]uint32{}
	}
	for _, v := range b.ord[:n] {
		v >>= batchIdxBits
		for p := 0; p < passes; p++ {
			cnt[p][v&radixMask]++
			v >>= radixBits
		}
	}
	src, dst := b.ord[:n], b.tmp[:n]
	for p := 0; p < passes; p++ {
		c := &cnt[p]
		var sum uint32
		for d, k := range c {
			c[d] = sum
			sum += k
		}
		shift := batchIdxBits + p*radixBits
		for _, v := range src {
			d := v >> shift & radixMask
			dst[c[d]] = v
			c[d]++
		}
		src, dst = dst, src
	}
	if n > 0 && &src[0] != &b.ord[0] {
		copy(b.ord[:n], src)
	}
}
