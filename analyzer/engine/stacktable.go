package engine

import "memscope/shm"

// Which stacks the engine keeps. Each process writes a STACK record for
// every stack it uses (include/memscope.h S2-S3: a fork child writes again
// the stacks it uses after the fork), and the engine keeps them per
// process: a process's stackTable holds the stacks it wrote and links to
// its parent's table at a fork, whose stacks the blocks it inherited use.
// A table goes when nothing links to it any more: its process ended (its
// report's snapshot keeps the PCs of its sites) and so did its children.
//
// Until this file, the engine kept one table of the session's stacks and
// counted the processes holding each id: a process's STACK record cost
// three map updates (the table, the process's ids, the count), its end one
// update per id it held, a fork a copy of the parent's ids. A compiler
// writes a STACK record for most of its allocations (a cc1 of the build
// row: 11 000 stacks for 18 000 allocations), and those updates, with
// one allocation per stack's PCs, were a tenth of the analyzer's time in
// a build.
//
// Invariants:
//   T1  a table's own map only grows, and the PCs of an id never change
//       (a chunk's words are written once): a snapshot shares them.
//   T2  a process or fork cut reaches through its table's chain (which
//       never loops: a link that would close one is not made) every
//       stack its live blocks and sites use: the ones it wrote (own), and,
//       through parent, those its parent had written when it forked
//       (STACK records are applied as they are read, so before the fork,
//       which is applied in time order after every older record was
//       read). A parent's table that had none of its own then is skipped
//       for its parent: what it gets later, no block of the child uses.
//   T3  ownedStacks is the sum of len(own) over the tables of the living
//       processes (a cut writes none), bounded by maxStacks.

// stackTable is the stacks one process wrote, by id, and its parent's.
type stackTable struct {
	own    map[uint64][]uint64
	parent *stackTable // its parent's at the fork; nil: none
	// chunk is where the next stack's PCs go (T1): one allocation for
	// many stacks, of stackChunkMin PCs at first, doubling up to
	// stackChunkMax, so that a short process does not take a large one.
	chunk []uint64
}

const (
	stackChunkMin   = 256
	stackChunkMax   = 8192
	stackChunkSpare = 64 // room under which a new chunk is taken (the default depth)
)

// get returns the PCs of stack id as p sees it (T2).
func (t *stackTable) get(id uint64) ([]uint64, bool) {
	for ; t != nil; t = t.parent {
		if pcs, ok := t.own[id]; ok {
			return pcs, true
		}
	}
	return nil, false
}

// reaches says whether u is t or one of its ancestors.
func (t *stackTable) reaches(u *stackTable) bool {
	for ; t != nil; t = t.parent {
		if t == u {
			return true
		}
	}
	return false
}

// stackTableOf returns p's table, made on first use.
func stackTableOf(p *proc) *stackTable {
	if p.stacks == nil {
		p.stacks = &stackTable{}
	}
	return p.stacks
}

// addStack applies a STACK record of process p. A stack p already sees
// (a fork child writes again those it uses, S3) is not stored again.
func (e *Engine) addStack(p *proc, rec shm.Record) error {
	t := stackTableOf(p)
	if cap(t.chunk)-len(t.chunk) < stackChunkSpare {
		n := min(max(2*cap(t.chunk), stackChunkMin), stackChunkMax)
		t.chunk = make([]uint64, 0, n)
	}
	s, chunk, err := rec.StackInto(t.chunk)
	if err != nil {
		return recErr(rec, err)
	}
	if _, ok := t.get(s.ID); ok {
		return nil // its PCs are past the chunk's length: overwritten next
	}
	if e.ownedStacks >= e.maxStacks {
		return recErr(rec, errTooManyStacks(e.maxStacks))
	}
	if cap(chunk) == cap(t.chunk) {
		t.chunk = chunk
	} // else a stack deeper than the chunk's room got an array of its own
	if t.own == nil {
		t.own = map[uint64][]uint64{}
	}
	t.own[s.ID] = s.PCs
	e.ownedStacks++
	return nil
}

// inheritStacks links p's table to src's (a fork: p is the child, or the
// cut of one, src the parent or the cut it takes), so that p sees the
// stacks of the blocks it inherits (T2).
func (e *Engine) inheritStacks(p, src *proc) {
	from := src.stacks
	for from != nil && len(from.own) == 0 {
		from = from.parent
	}
	if from == nil {
		return
	}
	t := stackTableOf(p)
	if t.parent == nil && !from.reaches(t) {
		t.parent = from
		return
	}
	// A second fork applied to one process, or one whose parent descends
	// from it (bad input: the link would close a loop, and a lookup would
	// never end): its own table takes the stacks it does not see yet.
	for u := from; u != nil; u = u.parent {
		if u == t {
			break // the rest of the chain is t's own
		}
		for id, pcs := range u.own {
			if _, ok := t.get(id); !ok {
				if t.own == nil {
					t.own = map[uint64][]uint64{}
				}
				t.own[id] = pcs
				e.ownedStacks++
			}
		}
	}
}

// dropStacks lets go of p's table: p ended (its snapshot holds its
// sites' PCs). Its children's tables may still link to it (T2); its own
// stacks no longer count towards maxStacks (T3).
func (e *Engine) dropStacks(p *proc) {
	if p.stacks != nil {
		e.ownedStacks -= len(p.stacks.own)
		p.stacks = nil
	}
}

// visibleStackIDs appends to ids each stack id p sees (T2), once: the
// state's encoding of what p holds.
func visibleStackIDs(ids []uint64, p *proc) []uint64 {
	if p.stacks == nil {
		return ids
	}
	var seen map[uint64]struct{} // only when a parent may repeat an id
	if p.stacks.parent != nil {
		seen = map[uint64]struct{}{}
	}
	for t := p.stacks; t != nil; t = t.parent {
		for id := range t.own {
			if seen != nil {
				if _, dup := seen[id]; dup {
					continue
				}
				seen[id] = struct{}{}
			}
			ids = append(ids, id)
		}
	}
	return ids
}

// stackTables returns every table a process or fork cut reaches, each
// once, in no particular order.
func (e *Engine) stackTables() []*stackTable {
	seen := map[*stackTable]bool{}
	var out []*stackTable
	add := func(p *proc) {
		for t := p.stacks; t != nil && !seen[t]; t = t.parent {
			seen[t] = true
			out = append(out, t)
		}
	}
	for _, p := range e.procs {
		add(p)
	}
	for _, cut := range e.forkCuts {
		add(cut)
	}
	return out
}
