package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"

	"memscope/analyzer/reach"
	"memscope/shm"
)

// The engine's state as bytes: what a journal checkpoint holds
// (analyzer/journal), so that an analyzer resuming a ring after a crash
// starts from the state the dead one had at its last checkpoint instead
// of replaying every record from the start.
//
// Everything that the records applied so far decided is written:
// processes (their live blocks, sites, totals, timeline, modules, thread
// names, leak-check state, frees waiting for the watermark, unmatched
// frees, the stacks they hold), the events waiting in the reorder window
// with each thread's temporary-allocation state, the PROCESS records
// waiting there, the stacks, the pending exit checks, the forks waiting
// for their other side (fork.go), and the engine's clocks (largest stamp
// seen, what was released, the watermark). What can be derived is
// rebuilt instead (the live tables' layout, the threads' heap, the
// counts of loaded modules, how many hold each stack). Options are not:
// the engine restoring a state is made with the same Options.
//
// Format: little-endian; stateMagic, then the sections in the order
// AppendState writes them. Counts are u64 and bounded by the bytes left
// (a count that claims more elements than could fit is refused before
// anything is allocated); strings and byte strings are a u32 length and
// the bytes. The checkpoint is written by the analyzer, but lies in a
// file the traced program's user can write: RestoreState validates
// every index it follows.

const stateMagic = "MSENGS04"

// AppendState appends the engine's state to b and returns the result.
func (e *Engine) AppendState(b []byte) []byte {
	s := stateEnc{b: b}
	e.encodeState(&s)
	return s.b
}

// stateSpill is how much of the state WriteState holds before writing
// it out: a large state (python's 2 M live blocks: 55 MB) is not built
// in memory first, whose fresh pages, growing copies and collections
// cost more than encoding it (1.07 s for that state, 500 ns a block).
const stateSpill = 1 << 20

// WriteState writes the engine's state (AppendState's bytes) to w.
func (e *Engine) WriteState(w io.Writer) error {
	// The spill buffer is kept for the next checkpoint: a steady program
	// is checkpointed every few hundred milliseconds, and a fresh
	// megabyte each time was most of the analyzer's garbage.
	if cap(e.stateBuf) < stateSpill+4096 {
		e.stateBuf = make([]byte, 0, stateSpill+4096)
	}
	s := stateEnc{b: e.stateBuf[:0], w: w}
	e.encodeState(&s)
	s.spill()
	if cap(s.b) <= 2*(stateSpill+4096) {
		e.stateBuf = s.b[:0]
	}
	return s.err
}

func (e *Engine) encodeState(s *stateEnc) {
	s.b = append(s.b, stateMagic...)
	s.u64(e.maxSeen)
	s.u64(e.released)
	s.u64(e.safe)
	s.u64(e.nextProcID)

	// The stacks: each table's own, every table once (an id in two
	// tables is written twice; the reader keeps one).
	tables := e.stackTables()
	nstacks := 0
	for _, t := range tables {
		nstacks += len(t.own)
	}
	s.u64(uint64(nstacks))
	for _, t := range tables {
		for id, pcs := range t.own {
			s.u64(id)
			s.u64(uint64(len(pcs)))
			for _, pc := range pcs {
				s.u64(pc)
			}
		}
	}

	s.u64(uint64(len(e.procRecs)))
	for id, pp := range e.procRecs {
		s.u64(id)
		s.u64(pp.key)
		s.u32(pp.rec.Pid)
		s.u32(pp.rec.Ppid)
		s.u32(uint32(pp.rec.Event))
		s.u32(uint32(pp.rec.Status))
		s.str(pp.rec.Exe)
		s.str(pp.rec.Arg0)
	}

	s.u64(uint64(len(e.exitChecks)))
	for _, c := range e.exitChecks {
		s.u32(c.Pid)
		s.u32(c.Tid)
		s.u64(c.TS)
		s.bool(c.Reports)
	}

	pids := make([]uint32, 0, len(e.procs))
	for pid := range e.procs {
		pids = append(pids, pid)
	}
	sort.Slice(pids, func(i, j int) bool { return pids[i] < pids[j] })
	s.u64(uint64(len(pids)))
	for _, pid := range pids {
		s.proc(e.procs[pid])
	}

	// The forks waiting for their other side (fork.go).
	cuts := sortedForks(e.forkCuts)
	s.u64(uint64(len(cuts)))
	for _, id := range cuts {
		s.u32(id.k)
		s.proc(e.forkCuts[id]) // its pid is id.ppid
	}
	taken := sortedForks(e.forkTaken)
	s.u64(uint64(len(taken)))
	for _, id := range taken {
		s.u32(id.ppid)
		s.u32(id.k)
	}
}

func (s *stateEnc) proc(p *proc) {
	s.u32(p.pid)
	s.u32(p.ppid)
	s.str(p.exe)
	s.str(p.argv0)
	s.u64(uint64(p.execs))
	s.u64(p.startTS)
	s.u64(p.maxApplied)
	s.bool(p.started)
	s.bool(p.heapEvents)
	s.u32(uint32(p.libExit))
	s.bool(p.libExitKnown)

	tids := make([]uint32, 0, len(p.threadNames))
	for tid := range p.threadNames {
		tids = append(tids, tid)
	}
	sort.Slice(tids, func(i, j int) bool { return tids[i] < tids[j] })
	s.u64(uint64(len(tids)))
	for _, tid := range tids {
		s.u32(tid)
		s.str(p.threadNames[tid])
	}

	s.u64(uint64(len(p.modules)))
	for _, m := range p.modules {
		s.str(m.Path)
		s.str(string(m.BuildID))
		s.u64(m.Bias)
		s.u64(uint64(len(m.Segments)))
		for _, g := range m.Segments {
			s.u64(g.Vaddr)
			s.u64(g.Memsz)
			s.u64(g.Offset)
			s.u32(g.Flags)
		}
		s.u64(m.LoadTS)
		s.u64(m.UnloadTS)
	}

	s.u64(uint64(len(p.sites)))
	for i, st := range p.sites {
		for _, v := range [...]uint64{st.Allocs, st.AllocBytes, st.LiveObjects, st.LiveBytes, st.PeakObjects, st.PeakBytes, st.Temporaries, st.snapEpoch} {
			s.u64(v)
		}
		k := p.siteKeys[i]
		s.u64(k.StackID)
		s.u32(k.Tid)
		s.u64(k.FirstTS)
	}
	s.u64(uint64(p.siteIndex.n))
	for _, sl := range p.siteIndex.slots {
		if sl.idx != 0 {
			s.u64(sl.stack)
			s.u32(sl.tid)
			s.u32(sl.idx - 1)
		}
	}

	// The stacks it sees (stacktable.go T2).
	s.ids = visibleStackIDs(s.ids[:0], p)
	s.u64(uint64(len(s.ids)))
	for _, id := range s.ids {
		s.u64(id)
	}

	s.u64(uint64(p.live.count))
	p.live.each(func(b liveBlock) {
		s.u64(b.addr)
		s.u64(b.ts)
		s.u64(b.size)
		s.u32(b.site)
	})

	for _, v := range totalsFields(&p.t) {
		s.u64(*v)
	}
	s.u64(p.peakEpoch)

	s.u64(uint64(len(p.pending)))
	for addr, frees := range p.pending {
		s.u64(addr)
		s.u64(uint64(len(frees)))
		for _, f := range frees {
			s.u64(f.ts)
			s.u64(uint64(f.tid))
		}
	}
	s.u64(uint64(p.pendingCount))

	s.u64(uint64(len(p.deferred)))
	for _, d := range p.deferred {
		s.u64(d.ptr)
		s.u64(d.ts)
		s.u64(d.lastTS)
		s.bool(d.temp)
	}
	s.bool(p.deferredSorted)
	s.bool(p.inDeferring)

	s.u64(uint64(len(p.timeline)))
	for _, t := range p.timeline {
		s.u64(t.TS)
		s.u64(t.HeapBytes)
		s.u64(t.LiveObjects)
	}
	s.u64(p.interval)
	s.u64(p.baseInterval)
	s.u64(p.nextSample)

	r := &p.reach
	s.u64(uint64(len(r.deadStacks)))
	for k, sp := range r.deadStacks {
		s.u64(k)
		s.u64(sp)
	}
	s.u64(uint64(len(r.liveStacks)))
	for tid, sp := range r.liveStacks {
		s.u32(tid)
		s.u64(sp)
	}
	s.u64(uint64(len(r.addrs)))
	for i, a := range r.addrs {
		s.u64(a)
		s.b = append(s.b, byte(r.kinds[i]))
	}
	s.u64(uint64(len(r.siteKinds)))
	for _, sk := range r.siteKinds {
		for _, kc := range sk {
			s.u64(kc.Objects)
			s.u64(kc.Bytes)
		}
	}
	s.bool(r.state.Checked)
	s.str(r.state.Reason)

	// The threads in p.threads's order, which EndProcess follows.
	s.u64(uint64(len(p.threads)))
	for _, th := range p.threads {
		s.u32(th.tid)
		s.u64(th.lastAlloc)
		s.u64(th.lastAllocTS)
		s.bool(th.lastAllocOK)
		s.u64(uint64(th.pending))
		for ev := range th.events {
			s.u64(ev.key)
			s.u64(ev.ptr)
			s.u64(ev.size)
			s.u64(ev.stack)
		}
	}
}

// totalsFields lists t's fields in the order of the state format.
func totalsFields(t *Totals) [13]*uint64 {
	return [...]*uint64{&t.Allocations, &t.Frees, &t.BytesAllocated, &t.LiveObjects, &t.LiveBytes,
		&t.PeakBytes, &t.PeakObjects, &t.PeakTS, &t.TemporaryAllocations, &t.DroppedEvents,
		&t.UnrecordedCalls, &t.UnknownFrees, &t.LateEvents}
}

// RestoreState sets the state of an engine that has applied nothing yet
// to the one AppendState wrote. On an error, which says what is wrong
// and where, the engine is unchanged.
func (e *Engine) RestoreState(b []byte) error {
	if len(e.procs) != 0 || len(e.threads) != 0 {
		return errors.New("engine state: the engine has applied records already")
	}
	d := stateDec{b: b}
	if len(b) < len(stateMagic) || string(b[:len(stateMagic)]) != stateMagic {
		return errors.New("engine state: not an engine state (bad magic)")
	}
	d.off = len(stateMagic)
	n := New(Options{})
	n.maxSeen = d.u64()
	n.released = d.u64()
	n.safe = d.u64()
	n.nextProcID = d.u64()

	d.stacks = map[uint64][]uint64{}
	for i, c := 0, d.count(16); i < c; i++ {
		id := d.u64()
		pcs := make([]uint64, d.count(8))
		for j := range pcs {
			pcs[j] = d.u64()
		}
		if len(d.stacks) >= e.maxStacks {
			d.fail("more than %d stacks", e.maxStacks)
		}
		d.stacks[id] = pcs
	}

	for i, c := 0, d.count(40); i < c; i++ {
		id := d.u64()
		pp := pendingProc{key: d.u64()}
		pp.rec.Pid = d.u32()
		pp.rec.Ppid = d.u32()
		pp.rec.Event = shm.ProcessEvent(d.u32())
		pp.rec.Status = int32(d.u32())
		pp.rec.Exe = d.str()
		pp.rec.Arg0 = d.str()
		n.procRecs[id] = pp
	}

	for i, c := 0, d.count(17); i < c; i++ {
		n.exitChecks = append(n.exitChecks, ExitCheck{Pid: d.u32(), Tid: d.u32(), TS: d.u64(), Reports: d.bool()})
	}

	for i, c := 0, d.count(8); i < c && d.err == nil; i++ {
		d.proc(n, e.interval)
	}
	for i, c := 0, d.count(8); i < c && d.err == nil; i++ {
		k := d.u32()
		scratch := New(Options{})
		d.proc(scratch, e.interval)
		for pid, cut := range scratch.procs {
			switch {
			case len(cut.threads) > 0 || cut.inDeferring:
				d.fail("the cut of fork %d of pid %d has threads", k, pid)
			case n.forkCuts[forkID{pid, k}] != nil:
				d.fail("fork %d of pid %d cut twice", k, pid)
			default:
				if n.forkCuts == nil {
					n.forkCuts = map[forkID]*proc{}
				}
				n.forkCuts[forkID{pid, k}] = cut
			}
		}
	}
	for i, c := 0, d.count(8); i < c && d.err == nil; i++ {
		if n.forkTaken == nil {
			n.forkTaken = map[forkID]bool{}
		}
		n.forkTaken[forkID{d.u32(), d.u32()}] = true
	}
	if d.err == nil && d.off != len(b) {
		d.fail("%d bytes after the end", len(b)-d.off)
	}
	if d.err != nil {
		return d.err
	}
	// What AppendState did not write: the derived state.
	for _, p := range n.procs {
		p.countLoaded()
		for _, frees := range p.pending {
			for _, f := range frees {
				if f.tid != 0 {
					p.lastPending = max(p.lastPending, f.ts)
				}
			}
		}
		if p.inDeferring {
			n.deferring = append(n.deferring, p)
		}
		for _, th := range p.threads {
			if th.pending > 0 {
				n.heap.add(th)
			}
		}
	}
	e.maxSeen, e.released, e.safe, e.nextProcID = n.maxSeen, n.released, n.safe, n.nextProcID
	e.procRecs, e.exitChecks = n.procRecs, n.exitChecks
	e.forkCuts, e.forkTaken = n.forkCuts, n.forkTaken
	e.procs, e.threads, e.heap, e.deferring = n.procs, n.threads, n.heap, n.deferring
	e.ownedStacks = 0
	for _, p := range e.procs {
		if p.stacks != nil {
			e.ownedStacks += len(p.stacks.own)
		}
	}
	e.pool.inUse += n.pool.inUse
	e.pool.free = append(e.pool.free, n.pool.free...)
	e.last = nil
	return nil
}

func (d *stateDec) proc(e *Engine, interval uint64) {
	pid := d.u32()
	if _, dup := e.procs[pid]; dup {
		d.fail("process %d twice", pid)
		return
	}
	p := newProc(pid, interval)
	p.ppid = d.u32()
	p.exe = d.str()
	p.argv0 = d.str()
	p.execs = int(d.u64() & math.MaxInt32)
	p.startTS = d.u64()
	p.maxApplied = d.u64()
	p.started = d.bool()
	p.heapEvents = d.bool()
	p.libExit = int32(d.u32())
	p.libExitKnown = d.bool()

	for i, c := 0, d.count(8); i < c; i++ {
		tid := d.u32()
		p.threadNames[tid] = d.str()
	}

	for i, c := 0, d.count(40); i < c && d.err == nil; i++ {
		m := Module{Path: d.str(), BuildID: []byte(d.str()), Bias: d.u64()}
		if len(m.BuildID) == 0 {
			m.BuildID = nil
		}
		for j, cs := 0, d.count(28); j < cs; j++ {
			m.Segments = append(m.Segments, shm.Segment{Vaddr: d.u64(), Memsz: d.u64(), Offset: d.u64(), Flags: d.u32()})
		}
		m.LoadTS = d.u64()
		m.UnloadTS = d.u64()
		p.modules = append(p.modules, m)
	}

	nsites := d.count(84)
	if nsites >= siteWide {
		d.fail("process %d: %d sites", pid, nsites)
		return
	}
	p.sites = make([]site, nsites)
	p.siteKeys = make([]siteKey, nsites)
	for i := range p.sites {
		st := &p.sites[i]
		for _, v := range [...]*uint64{&st.Allocs, &st.AllocBytes, &st.LiveObjects, &st.LiveBytes, &st.PeakObjects, &st.PeakBytes, &st.Temporaries, &st.snapEpoch} {
			*v = d.u64()
		}
		p.siteKeys[i] = siteKey{StackID: d.u64(), Tid: d.u32(), FirstTS: d.u64()}
	}
	for i, c := 0, d.count(16); i < c && d.err == nil; i++ {
		stack, tid, idx := d.u64(), d.u32(), d.u32()
		if int(idx) >= nsites {
			d.fail("process %d: site index %d of %d sites", pid, idx, nsites)
			return
		}
		if _, dup := p.siteIndex.get(stack, tid); dup {
			d.fail("process %d: stack %#x tid %d indexed twice", pid, stack, tid)
			return
		}
		p.siteIndex.put(stack, tid, idx)
	}
	// Each restored process sees its stacks in a table of its own; an id
	// the stacks section lacks is not seen (its sites have no frames),
	// but is still refused when listed twice.
	held := map[uint64]bool{}
	for i, c := 0, d.count(8); i < c && d.err == nil; i++ {
		id := d.u64()
		if held[id] {
			d.fail("process %d: stack %#x held twice", pid, id)
			return
		}
		held[id] = true
		if pcs, ok := d.stacks[id]; ok {
			t := stackTableOf(p)
			if t.own == nil {
				t.own = map[uint64][]uint64{}
			}
			t.own[id] = pcs
		}
	}

	nblocks := d.count(28)
	p.live.reserve(nblocks)
	for i := 0; i < nblocks && d.err == nil; i++ {
		b := liveBlock{addr: d.u64(), ts: d.u64(), size: d.u64(), site: d.u32()}
		if int(b.site) >= nsites {
			d.fail("process %d: live block %#x of site %d of %d", pid, b.addr, b.site, nsites)
			return
		}
		p.live.insert(b)
	}

	for _, v := range totalsFields(&p.t) {
		*v = d.u64()
	}
	p.peakEpoch = d.u64()

	for i, c := 0, d.count(16); i < c; i++ {
		addr := d.u64()
		frees := make([]pendingFree, d.count(16))
		for j := range frees {
			frees[j] = pendingFree{ts: d.u64(), tid: uint32(d.u64())}
		}
		if p.pending == nil {
			p.pending = map[uint64][]pendingFree{}
		}
		p.pending[addr] = frees
	}
	p.pendingCount = int(d.u64() & math.MaxInt32)

	for i, c := 0, d.count(25); i < c; i++ {
		p.deferred = append(p.deferred, deferredFree{ptr: d.u64(), ts: d.u64(), lastTS: d.u64(), temp: d.bool()})
	}
	p.deferredSorted = d.bool()
	p.inDeferring = d.bool()

	for i, c := 0, d.count(24); i < c; i++ {
		p.timeline = append(p.timeline, Sample{TS: d.u64(), HeapBytes: d.u64(), LiveObjects: d.u64()})
	}
	p.interval = d.u64()
	p.baseInterval = d.u64()
	p.nextSample = d.u64()
	if d.err == nil && (p.interval == 0 || p.baseInterval == 0) {
		d.fail("process %d: timeline interval 0", pid)
		return
	}

	r := &p.reach
	for i, c := 0, d.count(16); i < c; i++ {
		if r.deadStacks == nil {
			r.deadStacks = map[uint64]uint64{}
		}
		k := d.u64()
		r.deadStacks[k] = d.u64()
	}
	for i, c := 0, d.count(12); i < c; i++ {
		if r.liveStacks == nil {
			r.liveStacks = map[uint32]uint64{}
		}
		tid := d.u32()
		r.liveStacks[tid] = d.u64()
	}
	for i, c := 0, d.count(9); i < c && d.err == nil; i++ {
		r.addrs = append(r.addrs, d.u64())
		k := reach.Kind(d.byte())
		if k >= reach.NumKinds {
			d.fail("process %d: reachability kind %d", pid, k)
			return
		}
		r.kinds = append(r.kinds, k)
	}
	for i, c := 0, d.count(16*reach.NumKinds); i < c; i++ {
		var sk [reach.NumKinds]KindCount
		for j := range sk {
			sk[j] = KindCount{Objects: d.u64(), Bytes: d.u64()}
		}
		r.siteKinds = append(r.siteKinds, sk)
	}
	r.state = Reachability{Checked: d.bool(), Reason: d.str()}

	for i, c := 0, d.count(29); i < c && d.err == nil; i++ {
		tid := d.u32()
		k := uint64(pid)<<32 | uint64(tid)
		if e.threads[k] != nil {
			d.fail("process %d: thread %d twice", pid, tid)
			return
		}
		th := &thread{pid: pid, tid: tid, proc: p, lastAlloc: d.u64(), lastAllocTS: d.u64(), lastAllocOK: d.bool()}
		e.threads[k] = th
		p.threads = append(p.threads, th)
		run := e.appendTo(th)
		for j, c := 0, d.count(32); j < c; j++ {
			run.push(event{key: d.u64(), ptr: d.u64(), size: d.u64(), stack: d.u64()})
		}
		th.tailIdx = run.i
		th.pending = run.n
	}
	e.procs[pid] = p
}

// stateEnc appends the state format's values to b; with w, it writes
// them out a stateSpill at a time, the first error sticking in err.
type stateEnc struct {
	b   []byte
	w   io.Writer
	err error
	ids []uint64 // a process's stack ids, reused from process to process
}

func (s *stateEnc) u64(v uint64) {
	if s.w != nil && len(s.b) >= stateSpill {
		s.spill()
	}
	s.b = binary.LittleEndian.AppendUint64(s.b, v)
}

func (s *stateEnc) u32(v uint32) { s.b = binary.LittleEndian.AppendUint32(s.b, v) }

// spill writes out what b holds.
func (s *stateEnc) spill() {
	if s.err == nil && len(s.b) > 0 {
		_, s.err = s.w.Write(s.b)
	}
	s.b = s.b[:0]
}

func (s *stateEnc) bool(v bool) {
	if v {
		s.b = append(s.b, 1)
	} else {
		s.b = append(s.b, 0)
	}
}

func (s *stateEnc) str(v string) {
	s.u32(uint32(len(v)))
	s.b = append(s.b, v...)
}

// stateDec reads the state format from b; the first problem sticks in
// err (later reads give zeros) with the offset where it was found.
type stateDec struct {
	b   []byte
	off int
	err error
	// stacks are those of the stacks section, by id, which the
	// processes' tables take theirs from.
	stacks map[uint64][]uint64
}

func (d *stateDec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("engine state: at byte %d: %s", d.off, fmt.Sprintf(format, args...))
	}
}

func (d *stateDec) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b)-d.off {
		d.fail("truncated: %d bytes wanted, %d left", n, len(d.b)-d.off)
		return nil
	}
	v := d.b[d.off : d.off+n]
	d.off += n
	return v
}

func (d *stateDec) u64() uint64 {
	if v := d.take(8); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (d *stateDec) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (d *stateDec) byte() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *stateDec) bool() bool {
	v := d.byte()
	if v > 1 {
		d.fail("boolean %d", v)
	}
	return v == 1
}

func (d *stateDec) str() string {
	n := d.u32()
	return string(d.take(int(n)))
}

// count reads a count of elements of at least minSize bytes each and
// refuses one that could not fit in what is left.
func (d *stateDec) count(minSize int) int {
	c := d.u64()
	if d.err != nil {
		return 0
	}
	if left := uint64(len(d.b) - d.off); c > left/uint64(minSize) {
		d.fail("a count of %d elements of %d bytes or more, with %d bytes left", c, minSize, left)
		return 0
	}
	return int(c)
}
