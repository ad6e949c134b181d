package e2e

import (
	"sort"

	"memscope/shm"
)

// This file applies the counting rules of DESIGN.md §6 to a run's raw
// records, per process, so that tests can compare them with the numbers
// in testdata/*.expect.json (which are derived from the programs' source
// and cross-checked with valgrind, never produced by this code):
//   - every successful allocating call is one allocation of its size;
//   - a REALLOC with a non-null old block frees it, one with a non-null
//     new block allocates it (realloc(NULL, n) is a malloc, realloc(p, 0)
//     a free);
//   - a free of an unknown address is counted apart, not as a free;
//   - a fork child starts with a copy of its parent's state at the fork;
//   - an exec'd image starts afresh (the old image's blocks are gone).

type block struct {
	size  uint64
	stack uint64
}

type totals struct {
	Allocations    uint64
	Frees          uint64
	BytesAllocated uint64
	UnknownFrees   uint64
}

type procState struct {
	Pid    uint32
	Image  string // exe of the last PROCESS start/fork/exec record
	Event  shm.ProcessEvent
	Totals totals
	Live   map[uint64]block
}

func (s *procState) clone(pid uint32) *procState {
	c := &procState{Pid: pid, Image: s.Image, Totals: s.Totals, Live: make(map[uint64]block, len(s.Live))}
	for k, v := range s.Live {
		c.Live[k] = v
	}
	return c
}

func (s *procState) alloc(ptr, size, stack uint64) {
	s.Totals.Allocations++
	s.Totals.BytesAllocated += size
	s.Live[ptr] = block{size, stack}
}

func (s *procState) free(ptr uint64) {
	if _, ok := s.Live[ptr]; !ok {
		s.Totals.UnknownFrees++
		return
	}
	s.Totals.Frees++
	delete(s.Live, ptr)
}

// leakGroup is the live blocks of one stack.
type leakGroup struct {
	Stack   uint64
	Bytes   uint64
	Objects uint64
}

func (s *procState) leaks() []leakGroup {
	by := map[uint64]*leakGroup{}
	for _, b := range s.Live {
		g := by[b.stack]
		if g == nil {
			g = &leakGroup{Stack: b.stack}
			by[b.stack] = g
		}
		g.Bytes += b.size
		g.Objects++
	}
	out := make([]leakGroup, 0, len(by))
	for _, g := range by {
		out = append(out, *g)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Bytes != out[j].Bytes {
			return out[i].Bytes > out[j].Bytes
		}
		return out[i].Objects > out[j].Objects
	})
	return out
}

// account replays the events of every process: each thread's in its
// order, the threads merged by timestamp. Events of a fork child are
// applied after its parent's events up to the fork, so that the copy is
// taken at the right moment.
//
// Two threads' stamps can be misordered by a little (the counters of two
// CPUs are not exactly in step: analyzer/engine/reuse.go): when the
// earliest event cannot have come first in the program (an allocation of
// an address still live, a free of one that is not), another thread's
// event stamped less than reorderSlack after it that can, comes first.
func account(events []event) map[uint32]*procState {
	type stream struct {
		evs  []event
		next int
	}
	var streams []*stream // in order of first appearance
	byThread := map[[2]uint32]*stream{}
	for _, ev := range events {
		k := [2]uint32{ev.Pid, ev.Tid}
		st := byThread[k]
		if st == nil {
			st = &stream{}
			byThread[k] = st
			streams = append(streams, st)
		}
		st.evs = append(st.evs, ev)
	}
	r := &replay{states: map[uint32]*procState{}, cuts: map[forkID]*procState{}, taken: map[forkID]bool{}}
	live := func(pid uint32, ptr uint64) bool {
		s := r.states[pid]
		if s == nil {
			return false
		}
		_, ok := s.Live[ptr]
		return ok
	}
	canComeFirst := func(ev event) bool {
		switch ev.Type {
		case shm.RecAlloc:
			return ev.Alloc.Ptr == 0 || !live(ev.Pid, ev.Alloc.Ptr)
		case shm.RecFree:
			return live(ev.Pid, ev.Free.Ptr)
		case shm.RecRealloc:
			old, nw := ev.Realloc.OldPtr, ev.Realloc.NewPtr
			return (old == 0 || live(ev.Pid, old)) && (nw == 0 || nw == old || !live(ev.Pid, nw))
		}
		return true
	}
	for {
		var first *stream
		for _, st := range streams {
			if st.next < len(st.evs) && (first == nil || evTime(st.evs[st.next]) < evTime(first.evs[first.next])) {
				first = st
			}
		}
		if first == nil {
			break
		}
		pick := first
		if head := first.evs[first.next]; !canComeFirst(head) {
			var alt *stream
			for _, st := range streams {
				if st == first || st.next == len(st.evs) {
					continue
				}
				ev := st.evs[st.next]
				if ev.Pid == head.Pid && evTime(ev)-evTime(head) < reorderSlack && canComeFirst(ev) &&
					(alt == nil || evTime(ev) < evTime(alt.evs[alt.next])) {
					alt = st
				}
			}
			if alt != nil {
				pick = alt
			}
		}
		ev := pick.evs[pick.next]
		pick.next++
		r.apply(ev)
	}
	return r.states
}

// reorderSlack bounds how far two threads' stamps are misordered, in
// the ring's clock units: about a millisecond whether they are TSC
// ticks or nanoseconds, far more than the tens of nanoseconds seen.
const reorderSlack = 1 << 20

// forkID names a fork by its parent and number (include/memscope.h F1-F2).
type forkID struct{ ppid, k uint32 }

// replay is account's state: the processes, and for each fork the
// parent's state at its FORKED record, or that the child came first.
type replay struct {
	states map[uint32]*procState
	cuts   map[forkID]*procState
	taken  map[forkID]bool
}

func (r *replay) get(pid uint32) *procState {
	s := r.states[pid]
	if s == nil {
		s = &procState{Pid: pid, Live: map[uint64]block{}}
		r.states[pid] = s
	}
	return s
}

func (r *replay) apply(ev event) {
	switch ev.Type {
	case shm.RecProcess:
		p := ev.Process
		switch p.Event {
		case shm.ProcessForked:
			id := forkID{p.Pid, uint32(p.Status)}
			if r.taken[id] {
				delete(r.taken, id)
			} else {
				r.cuts[id] = r.get(p.Pid).clone(p.Pid)
			}
		case shm.ProcessFork:
			id := forkID{p.Ppid, uint32(p.Status)}
			var c *procState
			if cut := r.cuts[id]; cut != nil && id.k != 0 {
				delete(r.cuts, id)
				c = cut.clone(p.Pid)
			} else {
				r.taken[id] = true
				c = r.get(p.Ppid).clone(p.Pid)
			}
			c.Event = p.Event
			c.Image = p.Exe
			r.states[p.Pid] = c
		case shm.ProcessExec, shm.ProcessStart:
			// A start for a pid already known is an exec.
			s := &procState{Pid: p.Pid, Live: map[uint64]block{}, Image: p.Exe, Event: p.Event}
			r.states[p.Pid] = s
		}
	case shm.RecAlloc:
		r.get(ev.Pid).alloc(ev.Alloc.Ptr, ev.Alloc.Size, ev.Alloc.StackID)
	case shm.RecFree:
		r.get(ev.Pid).free(ev.Free.Ptr)
	case shm.RecRealloc:
		s := r.get(ev.Pid)
		if ev.Realloc.OldPtr != 0 {
			s.free(ev.Realloc.OldPtr)
		}
		if ev.Realloc.NewPtr != 0 {
			s.alloc(ev.Realloc.NewPtr, ev.Realloc.Size, ev.Realloc.StackID)
		}
	}
}

// evTime orders events causally: a REALLOC's free half happened at
// TSBefore, but its birth at TS, and only the birth can collide with a
// later free of the new pointer, so TS is used.
func evTime(ev event) uint64 { return ev.TS }
