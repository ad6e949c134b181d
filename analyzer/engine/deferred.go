package engine

import "sort"

// Frees wait for the watermark.
//
// Pairing a free with its block needs every allocation stamped before
// the free to have been applied: the free closes the newest generation
// of its address allocated at or before it (liveTable.remove). The
// reader's watermark (Settle) says when that holds: no record still to
// come is stamped below it. The reorder window, though, applies events
// a second after they were stamped even if the watermark has not passed
// them (a thread stalled in the middle of a record, for longer than
// that), and an allocation that arrives after that would miss the free
// that closed it, or a free would close an older generation.
//
// So a free is applied only below the watermark. One the window pushes
// out earlier waits in its process's deferred list (24 bytes) and is
// applied, in time order, once the watermark passes it; an allocation
// that arrives late is applied at once, as a generation of its own
// timestamp. Every free then meets the block it freed, whatever waited:
// pairing, the leak set and the totals stay exact. What the wait costs
// is the curve: while frees wait, the blocks they free still count, so
// the peak and the timeline can be higher than the program's (the
// summary says how many events were applied out of time order).
//
// Without a watermark (Settle never called: a consumer of records that
// are all there), nothing waits.

// deferredFree is a free waiting for the watermark, with what the
// temporary-allocation rule needs from its thread's state at the time.
type deferredFree struct {
	ptr, ts uint64
	lastTS  uint64 // its thread's previous allocation's timestamp
	temp    bool   // that allocation was of ptr
}

// maxDeferred bounds a process's waiting frees (128 MiB): past it the
// oldest half is applied, exact only if the watermark would have passed
// them.
const maxDeferred = 1 << 22

// deferFree makes a free of th's wait for the watermark.
func (e *Engine) deferFree(th *thread, ts, ptr uint64) {
	p := th.proc
	p.heapEvents = true
	p.t.LateEvents++
	p.deferred = append(p.deferred, deferredFree{ptr: ptr, ts: ts, lastTS: th.lastAllocTS, temp: th.lastAllocOK && th.lastAlloc == ptr})
	th.lastAllocOK = false
	p.deferredSorted = len(p.deferred) == 1 || p.deferredSorted && p.deferred[len(p.deferred)-2].ts <= ts
	e.deferringAdd(p)
	if len(p.deferred) >= maxDeferred {
		p.applyDeferred(p.deferred[len(p.deferred)/2].ts)
	}
}

// deferringAdd lists p among the processes with waiting frees.
func (e *Engine) deferringAdd(p *proc) {
	if !p.inDeferring {
		p.inDeferring = true
		e.deferring = append(e.deferring, p)
	}
}

// applyDeferred applies, in time order, the waiting frees of every
// process stamped before ts.
func (e *Engine) applyDeferred(ts uint64) {
	kept := e.deferring[:0]
	for _, p := range e.deferring {
		p.applyDeferred(ts)
		if len(p.deferred) > 0 {
			kept = append(kept, p)
		} else {
			p.inDeferring = false
		}
	}
	clear(e.deferring[len(kept):])
	e.deferring = kept
}

// applyDeferred applies p's waiting frees stamped before ts.
func (p *proc) applyDeferred(ts uint64) {
	if !p.deferredSorted {
		sort.SliceStable(p.deferred, func(i, j int) bool { return p.deferred[i].ts < p.deferred[j].ts })
		p.deferredSorted = true
	}
	n := 0
	for ; n < len(p.deferred) && p.deferred[n].ts < ts; n++ {
		d := &p.deferred[n]
		p.closeBlock(d.ts, d.ptr, d.temp, d.lastTS, 0, 0) // late: the old rule (reuse.go)
	}
	p.deferred = append(p.deferred[:0], p.deferred[n:]...)
}
