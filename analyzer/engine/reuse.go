package engine

// Reuse: an address freed by one thread and allocated again by another.
//
// The library stamps a FREE record before the real free and an ALLOC
// record after the real malloc, both with a plain rdtsc
// (preload/ring.h). The counter is read when the instruction executes,
// and a plain rdtsc may execute before the instructions ahead of it have
// completed: the ALLOC of a block that another thread has just freed can
// carry a stamp from before that free's, if the reads with which malloc
// found the freed block were still waiting when the counter was read.
// Waiting for them ("lfence; rdtsc") cost a fifth of the time of a
// program that allocates in a loop, so the library does not; the engine
// instead knows that such a misorder is short (instructions wait in a
// CPU for nanoseconds, microseconds at worst: far below defaultReuseSkew) and
// happens between two threads.
//
// Applied in time order, the reusing allocation then comes first: the
// address has two live generations for a moment (the live table keeps
// both), and the old rule for a free (close the newest generation
// allocated at or before it) would close the new block and leave the
// old one live for ever: a leak that is not there. So a free by thread T
// skips the newest generation when another thread allocated it less than
// the skew before the free and an older generation is live: that
// allocation is the reuse of the block the free frees. In the program,
// one address has at most one live block at a time, so two live
// generations mean that a free is still to come (this misorder), is
// late (a thread stalled past the reorder window, counted), or was lost
// (counted); only a free that is late or lost and a new block freed by
// another thread within the skew of its allocation could be misled,
// and those reports already say they are not exact.
//
// The heap curve sees the new block before the old one's free, for less
// than the skew: the same bytes as an order the program could have run
// (the allocation first, at another address).
//
// Frees that waited for the watermark (deferred.go) are late by
// definition and keep the old rule (their freer is the zero value).

// defaultReuseSkew bounds how far a reusing allocation's stamp can
// precede the stamp of the free it follows (Options.ReuseSkew): as far
// as the reader's watermark allows a plain rdtsc to read early
// (shm.watermarkSlack).
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
