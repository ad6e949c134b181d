package engine

import (
	"sort"

	"memscope/analyzer/reach"
)

// The engine's part in the leak check at exit (DESIGN.md §6.1): it says
// which processes wait for a check (TakeExitChecks), hands out their live
// blocks and the stacks of their ended threads, and keeps the verdicts,
// which Process then reports per site and kind.

// LiveBlock is a block allocated now, for the leak check.
type LiveBlock struct {
	Addr, Size uint64
	StackID    uint64
	FirstTS    uint64 // its site's first allocation (to symbolize the stack)
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
	// Verdicts, by address (sorted), once the check ran.
	addrs []uint64
	kinds []reach.Kind
	state Reachability
}

func (r *procReach) threadEnded(sp uint64) {
	if r.deadStacks == nil {
		r.deadStacks = map[uint64]uint64{}
	}
	if len(r.deadStacks) < maxDeadStacks {
		r.deadStacks[sp>>16] = sp
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

// TakeExitChecks returns the processes that announced, since the last
// call, that they wait at exit for a leak check (PROCESS exit with
// FlagExitCheck), in arrival order.
func (e *Engine) TakeExitChecks() []uint32 {
	out := e.exitChecks
	e.exitChecks = nil
	return out
}

// FlushProcess applies every pending event of pid (and, to keep time
// order, every older event of other processes).
func (e *Engine) FlushProcess(pid uint32) {
	p := e.procs[pid]
	if p == nil {
		return
	}
	var limit uint64
	for _, th := range p.threads {
		if !th.empty() && th.lastKey() > limit {
			limit = th.lastKey()
		}
	}
	if limit > 0 {
		e.release(limit)
	}
}

// LiveBlocks returns pid's live blocks (after FlushProcess, every block
// the ring said is allocated).
func (e *Engine) LiveBlocks(pid uint32) []LiveBlock {
	p := e.procs[pid]
	if p == nil {
		return nil
	}
	out := make([]LiveBlock, 0, p.t.LiveObjects)
	p.live.each(func(b liveBlock) {
		k := &p.siteKeys[b.site]
		out = append(out, LiveBlock{Addr: b.addr, Size: b.size, StackID: k.StackID, FirstTS: k.FirstTS})
	})
	return out
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
// kind of the block at blocks[i].Addr.
func (e *Engine) SetReachability(pid uint32, blocks []LiveBlock, kinds []reach.Kind) {
	p := e.procs[pid]
	if p == nil {
		return
	}
	idx := make([]int, len(blocks))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return blocks[idx[a]].Addr < blocks[idx[b]].Addr })
	r := &p.reach
	r.addrs, r.kinds = make([]uint64, len(idx)), make([]reach.Kind, len(idx))
	for k, i := range idx {
		r.addrs[k], r.kinds[k] = blocks[i].Addr, kinds[i]
	}
	r.state = Reachability{Checked: true}
}

// SetNotChecked records why pid's leak check did not run.
func (e *Engine) SetNotChecked(pid uint32, reason string) {
	if p := e.procs[pid]; p != nil {
		p.reach.addrs, p.reach.kinds = nil, nil
		p.reach.state = Reachability{Reason: reason}
	}
}

// siteKinds adds up the live blocks of p per site and kind.
func (p *proc) siteKinds() [][reach.NumKinds]KindCount {
	out := make([][reach.NumKinds]KindCount, len(p.sites))
	p.live.each(func(b liveBlock) {
		c := &out[b.site][p.reach.kindOf(b.addr)]
		c.Objects++
		c.Bytes += b.size
	})
	return out
}
