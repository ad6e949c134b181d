package engine

import (
	"cmp"
	"slices"
	"sort"
)

// Where a fork child's heap comes from (include/memscope.h F1-F2).
//
// A child's heap is its parent's at the fork. The child's PROCESS fork
// record cannot say when that was by its timestamp: the parent goes on as
// soon as fork() returns, usually before the child has run at all (a
// shell allocates its job table while the subshell starts), so parent
// events stamped before the child's record may have happened after the
// fork. Copying the parent as of the child's record gave the child blocks
// it never had, reported as its leaks (every bash subshell "leaked").
//
// So the library numbers each fork: the parent's forking thread writes
// PROCESS forked {k} right after fork() returned, before anything else it
// records, and the child's PROCESS fork carries the same k. Applied in
// time order, either comes first:
//
//   - the parent's FORKED first: the parent's state now is its state at
//     the fork (its forking thread's later events follow this record), so
//     it is copied aside, a forkCut, which the child's FORK takes;
//   - the child's FORK first: the forking thread's events since the fork
//     are not applied yet (they follow FORKED, stamped later still), so
//     the child copies the parent as it is, and the FORKED record, when
//     it comes, finds the fork taken (forkTaken) and copies nothing.
//
// The parent's other threads are ordered by timestamp, as before. A fork
// without a number (k = 0) copies the parent as of the child's record.

// forkID names a fork: the parent's pid and the fork's number in it.
type forkID struct {
	ppid, k uint32
}

func (a forkID) compare(b forkID) int {
	return cmp.Compare(uint64(a.ppid)<<32|uint64(a.k), uint64(b.ppid)<<32|uint64(b.k))
}

// sortedForks lists the forks of m in order (the state format's).
func sortedForks[V any](m map[forkID]V) []forkID {
	ids := make([]forkID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, forkID.compare)
	return ids
}

// Bounds on what waits for the other side of a fork. A child writes its
// FORK record first thing after fork() returns in it, so a cut waits about
// as long as the child takes to be scheduled; cuts nobody claims (a fork
// that failed, a child killed at once) are dropped after forkCutTTL, or the
// oldest first beyond maxForkCuts.
const (
	forkCutTTL  = 10_000_000_000 // ns of record time
	maxForkCuts = 256
)

// forked applies the parent's FORKED record of fork k at ts.
func (e *Engine) forked(parent *proc, k uint32, ts uint64) {
	id := forkID{parent.pid, k}
	if e.forkTaken[id] {
		delete(e.forkTaken, id)
		return
	}
	e.expireForkCuts(ts)
	cut := newProc(parent.pid, e.interval)
	e.copyProc(cut, parent, ts, false)
	if e.forkCuts == nil {
		e.forkCuts = map[forkID]*proc{}
	}
	e.forkCuts[id] = cut // a fork number seen twice (bad input): the last
}

// fork applies the child's FORK record of fork k (0: not numbered) of
// ppid at ts: p, the child, becomes a copy of the parent at the fork.
func (e *Engine) fork(p *proc, ppid, k uint32, ts uint64) {
	if cut := e.forkCuts[forkID{ppid, k}]; cut != nil && k != 0 {
		delete(e.forkCuts, forkID{ppid, k})
		e.copyProc(p, cut, cut.startTS, true)
	} else if parent := e.procs[ppid]; parent != nil && parent != p {
		if k != 0 {
			if e.forkTaken == nil {
				e.forkTaken = map[forkID]bool{}
			}
			e.forkTaken[forkID{ppid, k}] = true
		}
		e.copyProc(p, parent, ts, false)
	} else {
		p.startTS = ts
		return
	}
	if len(p.deferred) > 0 {
		e.deferringAdd(p) // the parent's frees from before the fork
	}
}

// copyProc makes p the child of a fork of src at ts (proc.copyFrom; take:
// src is a cut, dropped after), seeing the stacks src sees, which its
// inherited blocks use (stacktable.go T2).
func (e *Engine) copyProc(p, src *proc, ts uint64, take bool) {
	p.copyFrom(src, ts, take)
	e.inheritStacks(p, src)
}

// forgetForks drops what waits for forks of pid's image that ended (its
// exit or exec): a FORKED record of that image can no longer come. Cuts
// stay for children still to announce themselves.
func (e *Engine) forgetForks(pid uint32) {
	for id := range e.forkTaken {
		if id.ppid == pid {
			delete(e.forkTaken, id)
		}
	}
}

// expireForkCuts drops the cuts older than forkCutTTL at ts, and the
// oldest beyond maxForkCuts - 1.
func (e *Engine) expireForkCuts(ts uint64) {
	if len(e.forkCuts) == 0 {
		return
	}
	ids := make([]forkID, 0, len(e.forkCuts))
	for id, cut := range e.forkCuts {
		if cut.startTS+forkCutTTL < ts {
			delete(e.forkCuts, id)
			continue
		}
		ids = append(ids, id)
	}
	if len(ids) < maxForkCuts {
		return
	}
	sort.Slice(ids, func(i, j int) bool { return e.forkCuts[ids[i]].startTS < e.forkCuts[ids[j]].startTS })
	for _, id := range ids[:len(ids)-maxForkCuts+1] {
		delete(e.forkCuts, id)
	}
}
