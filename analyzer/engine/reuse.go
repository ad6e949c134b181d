package engine

// Reuse and hand-over: one address's records from two threads, stamped
// out of order.
//
// The library stamps a FREE record before the real free and an ALLOC
// record after the real malloc, with the time-stamp counter of the CPU
// the thread runs on (preload/ring.h). Across threads those stamps can
// be misordered by tens of nanoseconds: rdtsc may read the counter
// before the instructions ahead of it have completed, and the counters
// of two CPUs are not exactly in step (measured on the project's VM:
// frees stamped up to ~150 ticks before the allocation of the block
// they free, in testdata/handoff.c). Tens of nanoseconds is about what
// it takes to pass a pointer from one thread to another, so two cases
// happen, and in time order they break the pairing:
//
//   - Reuse: thread A frees a block, thread B's malloc returns the same
//     address and B's record is stamped before A's. Applied in time
//     order, the allocation comes first: the address has two live
//     generations for a moment (the live table keeps both), and the old
//     rule for a free (close the newest generation allocated at or
//     before it) would close the new block and leave the old one live
//     for ever: a leak that is not there.
//   - Hand-over: thread A allocates a block and hands it to thread B,
//     which frees it, and B's record is stamped before A's. The free
//     comes first, finds no block (an unknown free, kept in
//     proc.pending), and the allocation then stays live for ever.
//
// The rules, both bounded by the reuse skew (Options.ReuseSkew):
//
//   - A free by thread T skips the newest generation when another thread
//     allocated it less than the skew before the free and an older
//     generation is live: that allocation is the reuse of the block the
//     free frees (skipReuses).
//   - An allocation by T pairs with a free of its address by another
//     thread that found no block and was stamped less than the skew
//     before it: the block was born and freed (proc.pairPending).
//
// In the program, one address has at most one live block at a time, so
// two live generations mean that a free is still to come (the first
// case), is late (a thread stalled past the reorder window, counted), or
// was lost (counted); and a free that finds no block is of a block
// allocated before tracking began, is early (the second case), or
// follows a lost allocation. The rules can only be misled by a late or
// lost record, or by the free of an untracked block followed within the
// skew by another thread's allocation of the same address: the first
// two make the report say it is not exact, the third is rare (untracked
// blocks come from before the library started).
//
// The heap curve sees the new block before the old one's free, or the
// free before the allocation, for less than the skew: the same bytes as
// an order the program could have run.
//
// Frees that waited for the watermark (deferred.go) are late by
// definition and keep the old rule (their freer is unknown).

// defaultReuseSkew bounds how far two threads' stamps can be misordered
// (Options.ReuseSkew): as far as the reader's watermark allows a stamp
// to be early (shm.watermarkSlack).
const defaultReuseSkew = 100_000 // ns

// freer is the thread a free is applied for, for the reuse rule.
type freer struct {
	tid   uint32    // 0: unknown (the rule does not apply)
	sites []siteKey // the process's sites: whose thread allocated a block
	skew  uint64    // Options.ReuseSkew
}

// reusedBefore reports whether b, live when the free at ts by f is
// applied, can be another thread's reuse of the block that free frees.
func (f freer) reusedBefore(b liveBlock, ts uint64) bool {
	return int(b.site) < len(f.sites) && f.sites[b.site].Tid != f.tid && ts-b.ts < f.skew
}

// skipReuses moves a free's choice among an address's generations past
// the reuses it precedes. The generations, oldest first, are extra
// (ascending) with main placed after the extras of its time; best is the
// choice of the old rule (an index into extra, len(extra) for main),
// whose generation is at or before ts, as are all older ones.
func (f freer) skipReuses(main liveBlock, extra []liveBlock, best int, ts uint64) int {
	mainAt := 0 // main's place in the order: after every extra at or before its time
	for mainAt < len(extra) && extra[mainAt].ts <= main.ts {
		mainAt++
	}
	at := func(i int) liveBlock { // the i-th generation in that order
		switch {
		case i < mainAt:
			return extra[i]
		case i == mainAt:
			return main
		}
		return extra[i-1]
	}
	i := best // best's place in the order
	if best == len(extra) {
		i = mainAt
	} else if best >= mainAt {
		i = best + 1
	}
	for i > 0 && f.reusedBefore(at(i), ts) {
		i--
	}
	switch {
	case i == mainAt:
		return len(extra)
	case i < mainAt:
		return i
	}
	return i - 1
}
