package engine

import (
	"cmp"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"memscope/analyzer/reach"
	"memscope/shm"
)

// The engine's part in the leak check at exit (DESIGN.md §6.1): it says
// which processes wait for a check (TakeExitChecks), hands out their live
// blocks and the stacks of their ended threads, and keeps the verdicts,
// which Process then reports per site and kind.

// LiveBlocks are a process's live blocks by address, as the leak check
// takes them: a million of them are 20 MB, kept as two flat arrays.
type LiveBlocks struct {
	Extents []reach.Extent // address and requested size, by address
	Sites   []uint32       // Sites[i]: the site of Extents[i] (SiteStack)
}

// KindCount is what a site holds of one kind at exit.
type KindCount struct {
	Objects, Bytes uint64
}

// Reachability says whether the leak check ran on a process.
type Reachability struct {
	Checked bool
	// Reason says why it did not run (Checked false), for the reports.
	Reason string
}

// Why is Reason, or a generic one when none was recorded.
func (r Reachability) Why() string {
	if r.Reason == "" {
		return "the leak check did not run"
	}
	return r.Reason
}

// maxDeadStacks bounds the ended threads' stack addresses kept per
// process (one per 64 KiB of address space).
const maxDeadStacks = 1 << 16

// procReach is a proc's leak check state.
type procReach struct {
	deadStacks map[uint64]uint64 // sp>>16 -> sp of ended threads
	liveStacks map[uint32]uint64 // tid -> a stack address of a running thread
	// Verdicts, by address (sorted), once the check ran, and what each
	// site held of each kind then.
	addrs     []uint64
	kinds     []reach.Kind
	siteKinds [][reach.NumKinds]KindCount
	state     Reachability
}

// thread notes a THREAD record: where the thread's stack is, and
// whether the thread has ended.
func (r *procReach) thread(t shm.Thread) {
	if t.StackSP == 0 {
		return
	}
	if t.Exiting {
		delete(r.liveStacks, t.Tid)
		r.threadEnded(t.StackSP)
		return
	}
	if r.liveStacks == nil {
		r.liveStacks = map[uint32]uint64{}
	}
	if len(r.liveStacks) < maxDeadStacks {
		r.liveStacks[t.Tid] = t.StackSP
	}
}

func (r *procReach) threadEnded(sp uint64) {
	if r.deadStacks == nil {
		r.deadStacks = map[uint64]uint64{}
	}
	if len(r.deadStacks) < maxDeadStacks {
		r.deadStacks[sp>>16] = sp
	}
}

// forkedFrom adds a fork child's inherited stacks: the child has only
// the thread that forked, so every stack of the parent, of a running
// thread or not, is a dead stack in the child (the forking thread's own
// stack holds its stack pointer, which makes it a root again). What the
// child already said of its own threads (THREAD records are applied as
// they arrive, the fork record in time order) stays.
func (r *procReach) forkedFrom(parent *procReach) {
	for _, sp := range parent.deadStacks {
		r.threadEnded(sp)
	}
	for _, sp := range parent.liveStacks {
		r.threadEnded(sp)
	}
}

// kindOf returns the verdict on the block at addr: Unknown if the check
// did not run or the block was allocated after it.
func (r *procReach) kindOf(addr uint64) reach.Kind {
	i := sort.Search(len(r.addrs), func(i int) bool { return r.addrs[i] >= addr })
	if i < len(r.addrs) && r.addrs[i] == addr {
		return r.kinds[i]
	}
	return reach.Unknown
}

// ExitCheck is a process waiting at exit for its leak check, since TS
// (CLOCK_MONOTONIC ns, when it wrote its PROCESS exit record).
type ExitCheck struct {
	Pid uint32
	Tid uint32 // the thread that wrote the exit record, and waits
	TS  uint64
	// Reports: the process also waits until its reports are written
	// (bare mode's first process, FlagExitReports).
	Reports bool
}

// TakeExitChecks returns the processes that announced, since the last
// call, that they wait at exit for a leak check (PROCESS exit with
// FlagExitCheck), in arrival order.
func (e *Engine) TakeExitChecks() []ExitCheck {
	out := e.exitChecks
	e.exitChecks = nil
	return out
}

// ExitChecked drops the exit checks pid asked for that TakeExitChecks
// has not returned yet: a verdict replayed from a journal answered them.
func (e *Engine) ExitChecked(pid uint32) {
	kept := e.exitChecks[:0]
	for _, x := range e.exitChecks {
		if x.Pid != pid {
			kept = append(kept, x)
		}
	}
	e.exitChecks = kept
}

// FlushProcess applies every pending event of pid. Call it once pid's
// records are all read (it is stopped): its frees are applied without
// waiting for the watermark, as no allocation of its is still to come.
//
// Other processes' events are applied only up to the watermark, when
// pid's events past it are one thread's heap events: those are applied
// alone, in their order. Releasing everything up to pid's last event
// instead (as FlushProcess did, and still does otherwise: several
// threads, or a process record to keep in time order with the others')
// applied the other processes' events past the watermark too, and made
// their frees wait for it, applied out of time order and counted late:
// a fork child's exit check gave its parent hundreds of late events,
// depending on timing (TestResumeAfterAnalyzerCrash failed one run in
// four).
func (e *Engine) FlushProcess(pid uint32) {
	p := e.procs[pid]
	if p == nil {
		return
	}
	e.flushing = p
	defer func() { e.flushing = nil }()
	var limit uint64
	var only *thread // pid's one thread with pending events, if one
	threads := 0
	for _, th := range p.threads {
		if !th.empty() {
			threads++
			only = th
			limit = max(limit, th.lastKey())
		}
	}
	if limit > 0 {
		var below uint64 // the last key below the watermark
		if e.safe > 0 {
			below = eventKey(e.safe-1, 1<<kindBit-1)
		}
		if threads == 1 && below < limit && !only.hasProcEvent() {
			e.release(below)
			if !only.empty() {
				if i := e.heap.index(only); i >= 0 {
					e.heap.remove(i)
				}
				if !e.applyRun(only, limit) {
					e.heap.add(only)
				}
			}
		} else {
			e.release(limit)
		}
	}
	if len(p.deferred) > 0 {
		p.applyDeferred(^uint64(0))
	}
}

// LiveObjects is how many blocks pid holds now (records applied so far).
func (e *Engine) LiveObjects(pid uint32) uint64 {
	if p := e.procs[pid]; p != nil {
		return p.t.LiveObjects
	}
	return 0
}

// LiveBlocks returns pid's live blocks by address (after FlushProcess,
// every block the ring said is allocated).
func (e *Engine) LiveBlocks(pid uint32) LiveBlocks {
	p := e.procs[pid]
	if p == nil {
		return LiveBlocks{}
	}
	lb := LiveBlocks{Extents: make([]reach.Extent, 0, p.t.LiveObjects), Sites: make([]uint32, 0, p.t.LiveObjects)}
	p.live.each(func(b liveBlock) {
		lb.Extents = append(lb.Extents, reach.Extent{Addr: b.addr, Size: b.size})
		lb.Sites = append(lb.Sites, b.site)
	})
	lb.sortByAddr()
	return lb
}

// SiteStack returns the stack of one of pid's sites, and the time of its
// first allocation (what symbolizing the stack needs).
func (e *Engine) SiteStack(pid, site uint32) (stackID, firstTS uint64) {
	if p := e.procs[pid]; p != nil && int(site) < len(p.siteKeys) {
		k := &p.siteKeys[site]
		return k.StackID, k.FirstTS
	}
	return 0, 0
}

// AllocatedByLoader reports whether the allocations of one of pid's sites
// come from the dynamic linker (the caller of malloc is in ld.so): DTVs,
// dynamic TLS blocks, the loader's own tables.
func (e *Engine) AllocatedByLoader(pid, site uint32) bool {
	p := e.procs[pid]
	if p == nil || int(site) >= len(p.siteKeys) {
		return false
	}
	k := &p.siteKeys[site]
	pcs, _ := p.stacks.get(k.StackID)
	if len(pcs) == 0 {
		return false
	}
	m := (&Process{Modules: p.modules}).ModuleAt(pcs[0], k.FirstTS)
	return m != nil && isLoader(m.Path)
}

// isLoader says whether path is the dynamic linker (ld-linux-x86-64.so.2,
// ld-linux-aarch64.so.1, ld.so, ld-musl-*.so.1).
func isLoader(path string) bool {
	base := filepath.Base(path)
	return strings.HasPrefix(base, "ld-linux") || strings.HasPrefix(base, "ld-musl") || base == "ld.so"
}

// sortByAddr sorts the blocks by address: a least-significant-digit
// radix sort, a byte a pass, that skips the bytes all addresses share
// (heap addresses differ in 3 or 4 of 8). A comparison sort of a million
// blocks took 350 ms here.
func (lb *LiveBlocks) sortByAddr() {
	ext, sites := lb.Extents, lb.Sites
	if len(ext) < 64 {
		idx := make([]int, len(ext))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(ext[a].Addr, ext[b].Addr) })
		e2, s2 := make([]reach.Extent, len(ext)), make([]uint32, len(ext))
		for k, i := range idx {
			e2[k], s2[k] = ext[i], sites[i]
		}
		lb.Extents, lb.Sites = e2, s2
		return
	}
	var or, and uint64 = 0, ^uint64(0)
	for i := range ext {
		or |= ext[i].Addr
		and &= ext[i].Addr
	}
	differ := or ^ and
	srcE, srcS := ext, sites
	dstE, dstS := make([]reach.Extent, len(ext)), make([]uint32, len(ext))
	for shift := uint(0); shift < 64; shift += 8 {
		if differ>>shift&0xff == 0 {
			continue
		}
		var count [257]int
		for i := range srcE {
			count[srcE[i].Addr>>shift&0xff+1]++
		}
		for k := 1; k < 257; k++ {
			count[k] += count[k-1]
		}
		for i := range srcE {
			d := srcE[i].Addr >> shift & 0xff
			dstE[count[d]], dstS[count[d]] = srcE[i], srcS[i]
			count[d]++
		}
		srcE, dstE = dstE, srcE
		srcS, dstS = dstS, srcS
	}
	lb.Extents, lb.Sites = srcE, srcS
}

// DeadStackSPs returns a stack address of each ended thread of pid.
func (e *Engine) DeadStackSPs(pid uint32) []uint64 {
	p := e.procs[pid]
	if p == nil {
		return nil
	}
	out := make([]uint64, 0, len(p.reach.deadStacks))
	for _, sp := range p.reach.deadStacks {
		out = append(out, sp)
	}
	return out
}

// SetReachability keeps the verdicts of pid's leak check: kinds[i] is the
// kind of the block blocks.Extents[i], as LiveBlocks returned them.
func (e *Engine) SetReachability(pid uint32, blocks LiveBlocks, kinds []reach.Kind) {
	p := e.procs[pid]
	if p == nil || len(blocks.Extents) != len(kinds) {
		return
	}
	r := &p.reach
	r.addrs, r.kinds = make([]uint64, len(kinds)), kinds
	r.siteKinds = make([][reach.NumKinds]KindCount, len(p.sites))
	for i, b := range blocks.Extents {
		r.addrs[i] = b.Addr
		if site := blocks.Sites[i]; int(site) < len(r.siteKinds) {
			c := &r.siteKinds[site][kinds[i]]
			c.Objects++
			c.Bytes += b.Size
		}
	}
	r.state = Reachability{Checked: true}
}

// SetNotChecked records why pid's leak check did not run.
func (e *Engine) SetNotChecked(pid uint32, reason string) {
	if p := e.procs[pid]; p != nil {
		p.reach.addrs, p.reach.kinds, p.reach.siteKinds = nil, nil, nil
		p.reach.state = Reachability{Reason: reason}
	}
}

// siteKinds adds up the live blocks of p per site and kind. When every
// site holds what it held at the check (the usual exit: nothing is
// allocated or freed after it), the check's sums are the answer;
// otherwise each live block is looked up.
func (p *proc) siteKinds() [][reach.NumKinds]KindCount {
	if !p.reach.state.Checked {
		// No verdicts: every live block is of unknown kind (no walk over
		// the live table: snapshots of a running process take this path).
		out := make([][reach.NumKinds]KindCount, len(p.sites))
		for i := range p.sites {
			out[i][reach.Unknown] = KindCount{Objects: p.sites[i].LiveObjects, Bytes: p.sites[i].LiveBytes}
		}
		return out
	}
	if r := &p.reach; len(r.siteKinds) <= len(p.sites) {
		same := true
		for i := range r.siteKinds {
			var objects, bytes uint64
			for _, c := range r.siteKinds[i] {
				objects += c.Objects
				bytes += c.Bytes
			}
			if objects != p.sites[i].LiveObjects || bytes != p.sites[i].LiveBytes {
				same = false
				break
			}
		}
		for i := len(r.siteKinds); same && i < len(p.sites); i++ {
			same = p.sites[i].LiveObjects == 0
		}
		if same {
			out := make([][reach.NumKinds]KindCount, len(p.sites))
			copy(out, r.siteKinds)
			return out
		}
	}
	out := make([][reach.NumKinds]KindCount, len(p.sites))
	p.live.each(func(b liveBlock) {
		c := &out[b.site][p.reach.kindOf(b.addr)]
		c.Objects++
		c.Bytes += b.size
	})
	return out
}
