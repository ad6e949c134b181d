package engine

import "maps"

// Which stacks the engine keeps. Each process writes a STACK record for
// every stack it uses (include/memscope.h S2-S3: a fork child writes again
// the stacks it uses), and the engine keeps one copy per stack id. Kept
// for ever, the stacks of every process a session had ever seen stayed in
// memory and in every checkpoint: a make -j2 of 40 files (120 processes)
// added 43 MB to the analyzer at each build of a session, and its
// checkpoints grew with them.
//
// So each process holds the ids of the stacks it wrote (and, for a fork
// child, those of its parent at the fork, which its inherited blocks
// use), and the engine counts the processes and fork cuts holding each
// id; an id nobody holds any more is forgotten with its stack. A process
// lets go of its ids when it ends, after its reports' snapshot, which
// keeps its own references to the stacks' PCs; an exec keeps them until
// then (the new image's STACK records, applied as they are read, may
// already be among them when the exec is applied in time order). A
// record that only names an id (ALLOC, REALLOC) holds nothing: its
// process wrote the STACK first (S2), in the same thread or, for another
// thread of the process, before its own allocation using the id could
// be applied.
//
// Invariants:
//   R1  stackRefs[id] is the number of procs in procs and cuts in
//       forkCuts whose stackIDs contain id; an id with no holder has no
//       entry.
//   R2  stacks holds every id of stackRefs that a STACK record gave; an
//       id leaves stacks only when its count goes to zero.

// holdStack records that p holds stack id.
func (e *Engine) holdStack(p *proc, id uint64) {
	if _, ok := p.stackIDs[id]; ok {
		return
	}
	if p.stackIDs == nil {
		p.stackIDs = map[uint64]struct{}{}
	}
	p.stackIDs[id] = struct{}{}
	e.stackRefs[id]++
}

// shareStacks makes p hold every stack src holds (a fork: p's inherited
// blocks use src's stacks). A child that holds nothing yet (a fork, as it
// is applied) takes a copy of the set, which the runtime makes without
// inserting the ids one by one: a shell forks hundreds of times, each
// child inheriting about a thousand ids.
func (e *Engine) shareStacks(p, src *proc) {
	if len(p.stackIDs) == 0 && len(src.stackIDs) > 0 {
		p.stackIDs = maps.Clone(src.stackIDs)
		for id := range src.stackIDs {
			e.stackRefs[id]++
		}
		return
	}
	for id := range src.stackIDs {
		e.holdStack(p, id)
	}
}

// moveStacks gives p the stacks src holds; src, a fork cut, is dropped
// after (R1: its holds become p's). The larger of the two sets is kept
// and the smaller merged into it: an id in both was held twice and is
// now held once, by p, so its count drops by one and stays above zero
// (R2); an id in one only keeps its count. A fork child that wrote a few
// stacks before its cut was applied no longer walks the thousand ids of
// its parent's twice (hold each, then drop the cut's).
func (e *Engine) moveStacks(p, src *proc) {
	small, large := p.stackIDs, src.stackIDs
	if len(small) > len(large) {
		small, large = large, small
	}
	for id := range small {
		if _, ok := large[id]; ok {
			e.stackRefs[id]--
		} else {
			large[id] = struct{}{}
		}
	}
	p.stackIDs, src.stackIDs = large, nil
}

// dropStacks lets go of every stack p holds: p ended, or is a cut
// nobody will take. A stack no one holds any more is forgotten (R2).
func (e *Engine) dropStacks(p *proc) {
	for id := range p.stackIDs {
		if n := e.stackRefs[id] - 1; n > 0 {
			e.stackRefs[id] = n
		} else {
			delete(e.stackRefs, id)
			delete(e.stacks, id)
		}
	}
	p.stackIDs = nil
}

// countStackRefs rebuilds stackRefs from the holders (a restored state)
// and forgets the stacks no one holds (R2).
func (e *Engine) countStackRefs() {
	e.stackRefs = map[uint64]int32{}
	for _, p := range e.procs {
		for id := range p.stackIDs {
			e.stackRefs[id]++
		}
	}
	for _, cut := range e.forkCuts {
		for id := range cut.stackIDs {
			e.stackRefs[id]++
		}
	}
	for id := range e.stacks {
		if e.stackRefs[id] == 0 {
			delete(e.stacks, id)
		}
	}
}
