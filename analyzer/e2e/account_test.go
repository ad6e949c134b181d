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

// account replays the events of every process in timestamp order.
// Events of a fork child are applied after its parent's events up to the
// fork, so that the copy is taken at the right moment.
func account(events []event) map[uint32]*procState {
	sorted := append([]event(nil), events...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return evTime(sorted[i]) < evTime(sorted[j])
	})
	states := map[uint32]*procState{}
	// Forks by parent and number (include/memscope.h F1-F2): the
	// parent's state at its FORKED record, or that the child came first.
	type forkID struct{ ppid, k uint32 }
	cuts := map[forkID]*procState{}
	taken := map[forkID]bool{}
	get := func(pid uint32) *procState {
		s := states[pid]
		if s == nil {
			s = &procState{Pid: pid, Live: map[uint64]block{}}
			states[pid] = s
		}
		return s
	}
	for _, ev := range sorted {
		switch ev.Type {
		case shm.RecProcess:
			p := ev.Process
			switch p.Event {
			case shm.ProcessForked:
				id := forkID{p.Pid, uint32(p.Status)}
				if taken[id] {
					delete(taken, id)
				} else {
					cuts[id] = get(p.Pid).clone(p.Pid)
				}
			case shm.ProcessFork:
				id := forkID{p.Ppid, uint32(p.Status)}
				var c *procState
				if cut := cuts[id]; cut != nil && id.k != 0 {
					delete(cuts, id)
					c = cut.clone(p.Pid)
				} else {
					taken[id] = true
					c = get(p.Ppid).clone(p.Pid)
				}
				c.Event = p.Event
				c.Image = p.Exe
				states[p.Pid] = c
			case shm.ProcessExec, shm.ProcessStart:
				// A start for a pid already known is an exec.
				s := &procState{Pid: p.Pid, Live: map[uint64]block{}, Image: p.Exe, Event: p.Event}
				states[p.Pid] = s
			}
		case shm.RecAlloc:
			get(ev.Pid).alloc(ev.Alloc.Ptr, ev.Alloc.Size, ev.Alloc.StackID)
		case shm.RecFree:
			get(ev.Pid).free(ev.Free.Ptr)
		case shm.RecRealloc:
			s := get(ev.Pid)
			if ev.Realloc.OldPtr != 0 {
				s.free(ev.Realloc.OldPtr)
			}
			if ev.Realloc.NewPtr != 0 {
				s.alloc(ev.Realloc.NewPtr, ev.Realloc.Size, ev.Realloc.StackID)
			}
		}
	}
	return states
}

// evTime orders events causally: a REALLOC's free half happened at
// TSBefore, but its birth at TS, and only the birth can collide with a
// later free of the new pointer, so TS is used.
func evTime(ev event) uint64 { return ev.TS }
