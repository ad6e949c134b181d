package engine

import (
	"cmp"
	"slices"

	"memscope/analyzer/reach"
	"memscope/shm"
)

// Process is the state of one traced process, as plain data for reports.
// EndProcess and Snapshot return one that the engine no longer touches.
type Process struct {
	Pid   uint32
	Ppid  uint32
	Exe   string // executable path as the library reported it
	Argv0 string
	// Execs counts the images this pid replaced by execve: the state
	// describes the last image only (the blocks of earlier images are
	// discarded, not leaks, and their counts are not part of Totals).
	Execs int

	StartTS uint64 // timestamp of the first event of the (last) image, or of the fork
	EndTS   uint64 // timestamp of the last event applied

	Threads map[uint32]string // thread names by tid
	Modules []Module          // in load order; unloaded ones keep their UnloadTS
	Sites   []Site            // sorted by (StackID, Tid)
	Stacks  map[uint64][]uint64
	Totals  Totals
	// Timeline holds the heap at fixed intervals (Options.TimelineInterval,
	// on multiples of it) and a final sample at EndTS.
	Timeline []Sample
	Exit     ExitStatus
	// ExitRecorded: the library wrote the process's exit (exit, _exit).
	ExitRecorded bool
	// Reach says whether the leak check ran at exit; each site's ByKind
	// splits its live blocks by verdict (all Unknown if it did not run).
	Reach Reachability
}

// Module is an object mapped into the process, from its MODULE records.
type Module struct {
	Path     string
	BuildID  []byte
	Bias     uint64 // runtime address - ELF virtual address
	Segments []shm.Segment
	LoadTS   uint64
	UnloadTS uint64 // 0 while loaded
}

// Contains says whether the runtime address pc is in one of m's segments.
func (m *Module) Contains(pc uint64) bool {
	a := pc - m.Bias
	for _, s := range m.Segments {
		if a >= s.Vaddr && a-s.Vaddr < s.Memsz {
			return true
		}
	}
	return false
}

// Site aggregates the allocations of one call stack in one thread.
type Site struct {
	StackID uint64 // 0: no stack recorded
	Tid     uint32
	FirstTS uint64 // first allocation: its PCs are resolved against the modules mapped then

	Allocs      uint64 // allocating calls (realloc included)
	AllocBytes  uint64 // requested bytes of those calls
	LiveObjects uint64 // still allocated at exit (or at the snapshot)
	LiveBytes   uint64
	PeakObjects uint64 // allocated at the moment of peak heap
	PeakBytes   uint64
	Temporaries uint64 // allocations freed by the next event of their thread
	// ByKind splits LiveObjects/LiveBytes by the leak check's verdict,
	// indexed by reach.Kind.
	ByKind [reach.NumKinds]KindCount
}

// Totals are the process-wide counts of DESIGN.md §6.
type Totals struct {
	Allocations    uint64 // successful allocating calls; realloc of a non-null block counts 1 + 1 free
	Frees          uint64 // frees that closed a known block; Allocations - Frees == LiveObjects
	BytesAllocated uint64 // sum of requested sizes
	LiveObjects    uint64 // at exit (or at the snapshot)
	LiveBytes      uint64
	PeakBytes      uint64 // maximum of live bytes over time
	PeakObjects    uint64 // live objects at that moment
	PeakTS         uint64 // when the peak was first reached
	// TemporaryAllocations counts, as heaptrack does, allocations whose
	// block is freed by the very next allocator event of the same thread
	// (a free, or the release half of a realloc), with nothing between.
	TemporaryAllocations uint64
	DroppedEvents        uint64 // from LOST records: the report is incomplete if > 0
	// UnrecordedCalls counts allocator calls a signal handler made while
	// its thread was inside memscope, passed through unrecorded (LOST
	// records with FlagUnrecorded): the report is incomplete if > 0.
	UnrecordedCalls uint64
	UnknownFrees    uint64 // frees of addresses never seen allocated (counted, otherwise ignored)
	LateEvents      uint64 // events applied out of time order: arrived after later ones, or frees that waited for the watermark
}

// Sample is one point of the timeline.
type Sample struct {
	TS          uint64
	HeapBytes   uint64
	LiveObjects uint64
}

// ExitStatus is how a process ended. The lead fills it from wait(2); when
// it is not Known, the status of the library's PROCESS exit record is used.
type ExitStatus struct {
	Known  bool
	Code   int // exit code when Signal == 0
	Signal int // terminating signal, 0 if the process exited
}

// ShellCode encodes the status as a shell does: the exit code, or
// 128+signal for a process killed by a signal. ok is false when unknown.
func (s ExitStatus) ShellCode() (code int, ok bool) {
	if !s.Known {
		return 0, false
	}
	if s.Signal != 0 {
		return 128 + s.Signal, true
	}
	return s.Code, true
}

// ModuleAt returns the module that held pc at time ts: the one mapped then,
// else (records of the loader can follow the first allocations of a
// constructor) the one containing pc whose lifetime is nearest to ts; nil
// if no module contains pc.
func (p *Process) ModuleAt(pc, ts uint64) *Module {
	var best *Module
	var bestDist uint64
	for i := range p.Modules {
		m := &p.Modules[i]
		if !m.Contains(pc) {
			continue
		}
		var d uint64
		switch {
		case ts < m.LoadTS:
			d = m.LoadTS - ts
		case m.UnloadTS != 0 && ts >= m.UnloadTS:
			d = ts - m.UnloadTS + 1
		default:
			return m
		}
		if best == nil || d < bestDist {
			best, bestDist = m, d
		}
	}
	return best
}

// ---- internal state ----

// site is what an allocation or a free updates of a Site: one cache line
// (the sites of many threads and stacks do not fit the caches, and the
// engine touches one per event). Its key, StackID, Tid and FirstTS, is in
// proc.siteKeys at the same index.
//
// snapEpoch is the epoch of the site's peak snapshot: before a site
// changes, if the process reached a new peak since the site's last
// change, the site's live values are its values at that peak
// (PeakObjects/PeakBytes).
type site struct {
	Allocs      uint64
	AllocBytes  uint64
	LiveObjects uint64
	LiveBytes   uint64
	PeakObjects uint64
	PeakBytes   uint64
	Temporaries uint64
	snapEpoch   uint64
}

// siteKey is the rest of a Site.
type siteKey struct {
	StackID uint64
	Tid     uint32
	FirstTS uint64
}

// proc is the mutable state of one process.
type proc struct {
	pid, ppid    uint32
	exe, argv0   string
	execs        int
	startTS      uint64
	maxApplied   uint64 // largest timestamp applied
	started      bool   // a PROCESS start/fork/exec was applied
	heapEvents   bool   // an alloc or free was applied
	libExit      int32
	libExitKnown bool

	threadNames map[uint32]string
	modules     []Module
	stacks      *stackTable // the stacks it wrote, and its parent's (stacktable.go)
	loaded      int         // modules not unloaded (loadedModules)
	threads     []*thread   // queues of this pid in the engine

	live      liveTable
	sites     []site
	siteKeys  []siteKey // sites[i]'s key is siteKeys[i]
	siteIndex siteTable

	t         Totals // LiveObjects/LiveBytes kept current
	peakEpoch uint64

	pending      map[uint64][]pendingFree // unmatched frees by address, for allocations to come
	pendingCount int
	lastPending  uint64 // the latest stamp of a pending free with a thread (the hand-over rule's)

	deferred       []deferredFree // frees waiting for the watermark (deferred.go)
	deferredSorted bool           // deferred is in time order
	inDeferring    bool           // listed in Engine.deferring

	timeline     []Sample
	interval     uint64 // of the timeline now: baseInterval, doubled at each coarsen
	baseInterval uint64
	nextSample   uint64

	reach procReach
}

// maxPending bounds the unmatched frees remembered for pairing with
// allocations to come; past it they are only counted.
const maxPending = 1 << 16

// pendingFree is a free that found no block: its stamp and thread (0:
// unknown, a free that waited for the watermark).
type pendingFree struct {
	ts  uint64
	tid uint32
}

func newProc(pid uint32, interval uint64) *proc {
	return &proc{pid: pid, interval: interval, baseInterval: interval, threadNames: map[uint32]string{}}
}

// resetImage discards the image's heap state (exec).
func (p *proc) resetImage(ts uint64) {
	p.live = liveTable{}
	p.sites, p.siteKeys = nil, nil
	p.siteIndex = siteTable{}
	p.t = Totals{DroppedEvents: p.t.DroppedEvents, UnrecordedCalls: p.t.UnrecordedCalls}
	p.peakEpoch = 0
	p.pending, p.pendingCount, p.lastPending = nil, 0, 0
	p.deferred = p.deferred[:0] // frees of the old image's blocks
	p.timeline = nil
	p.interval = p.baseInterval
	p.nextSample = 0
	p.heapEvents = false
	p.startTS = ts
	p.reach = procReach{}
	for i := range p.modules {
		m := &p.modules[i]
		if m.UnloadTS == 0 && m.LoadTS <= ts {
			m.UnloadTS = ts
		}
	}
	p.countLoaded()
}

// copyFrom makes p the child of a fork of parent at ts. take: parent is
// a fork's cut (fork.go), dropped after: p takes its tables instead of
// copying them.
func (p *proc) copyFrom(parent *proc, ts uint64, take bool) {
	if take {
		p.live, p.sites, p.siteKeys, p.siteIndex = parent.live, parent.sites, parent.siteKeys, parent.siteIndex
	} else {
		p.live = parent.live.clone()
		p.sites = append([]site(nil), parent.sites...)
		p.siteKeys = append([]siteKey(nil), parent.siteKeys...)
		p.siteIndex = parent.siteIndex.clone()
	}
	dropped, unrecorded := p.t.DroppedEvents, p.t.UnrecordedCalls
	p.t = parent.t
	p.t.DroppedEvents, p.t.UnrecordedCalls = dropped, unrecorded
	p.t.UnknownFrees, p.t.LateEvents = 0, 0
	// The child's peak starts at its heap at the fork; every site's
	// snapshot is taken lazily at that epoch.
	p.peakEpoch = parent.peakEpoch + 1
	p.t.PeakBytes, p.t.PeakObjects, p.t.PeakTS = p.t.LiveBytes, p.t.LiveObjects, ts
	p.pending, p.pendingCount, p.lastPending = nil, 0, 0
	// Frees the parent made before the fork that wait for the watermark
	// free the child's copies too.
	for _, d := range parent.deferred {
		if d.ts < ts {
			p.deferred = append(p.deferred, d)
		}
	}
	p.deferredSorted = false
	p.timeline = nil
	p.nextSample = 0
	p.startTS = ts
	p.reach.forkedFrom(&parent.reach)
	for tid, n := range parent.threadNames {
		if _, ok := p.threadNames[tid]; !ok {
			p.threadNames[tid] = n
		}
	}
	var mods []Module
	for _, m := range parent.modules {
		if m.LoadTS <= ts && (m.UnloadTS == 0 || m.UnloadTS > ts) {
			m.UnloadTS = 0
			mods = append(mods, m)
		}
	}
	p.modules = append(mods, p.modules...)
	p.countLoaded()
	if p.exe == "" {
		p.exe, p.argv0 = parent.exe, parent.argv0
	}
}

// touch brings s's peak snapshot up to date before s changes.
func (p *proc) touch(s *site) {
	if s.snapEpoch != p.peakEpoch {
		s.PeakObjects, s.PeakBytes = s.LiveObjects, s.LiveBytes
		s.snapEpoch = p.peakEpoch
	}
}

// tick records timeline samples for the boundaries up to ts.
func (p *proc) tick(ts uint64) {
	if p.startTS == 0 {
		p.startTS = ts
	}
	b := ts - ts%p.interval
	if p.nextSample != 0 && p.nextSample < b {
		// Flat since the previous boundary: one point at its start.
		p.timeline = append(p.timeline, Sample{TS: p.nextSample, HeapBytes: p.t.LiveBytes, LiveObjects: p.t.LiveObjects})
	}
	p.timeline = append(p.timeline, Sample{TS: b, HeapBytes: p.t.LiveBytes, LiveObjects: p.t.LiveObjects})
	p.nextSample = b + p.interval
	if len(p.timeline) >= maxTimeline {
		p.coarsen()
	}
}

// maxTimeline bounds a process's timeline, so that the analyzer's memory
// stops growing in a program that runs for days: past it, the timeline
// keeps one sample of each two (the larger heap of the pair: spikes stay
// visible) and its interval doubles. 16384 samples are 164 s at the
// default 10 ms interval, at most 768 KiB a process.
const maxTimeline = 1 << 14

func (p *proc) coarsen() {
	p.interval *= 2
	kept := p.timeline[:0]
	for i := 0; i < len(p.timeline); i += 2 {
		s := p.timeline[i]
		if i+1 < len(p.timeline) && p.timeline[i+1].HeapBytes > s.HeapBytes {
			s = p.timeline[i+1]
		}
		kept = append(kept, s)
	}
	p.timeline = kept
	// The next boundary of the coarser grid.
	p.nextSample = (p.nextSample + p.interval - 1) / p.interval * p.interval
}

// applied notes that an event at ts is applied and reports whether it is
// late (a later event of the process was applied before it).
//
// The common case, an event in order within the current timeline
// interval, is inlined; the others take appliedSlow.
func (p *proc) applied(ts uint64) (late bool) {
	if ts < p.maxApplied || ts >= p.nextSample {
		return p.appliedSlow(ts)
	}
	p.maxApplied = ts
	return false
}

func (p *proc) appliedSlow(ts uint64) (late bool) {
	late = ts < p.maxApplied
	if late {
		p.t.LateEvents++
	} else {
		p.maxApplied = ts
	}
	if ts >= p.nextSample {
		p.tick(ts)
	}
	return late
}

// siteFor returns the index of the site (stack, tid), created at ts if
// new. (alloc first looks in the home slot, inline.)
func (p *proc) siteFor(stack uint64, tid uint32, ts uint64) uint32 {
	if i, ok := p.siteIndex.get(stack, tid); ok {
		return i
	}
	i := uint32(len(p.sites))
	p.sites = append(p.sites, site{snapEpoch: p.peakEpoch})
	p.siteKeys = append(p.siteKeys, siteKey{StackID: stack, Tid: tid, FirstTS: ts})
	p.siteIndex.put(stack, tid, i)
	return i
}

// countAlloc counts an allocation of size bytes at stack by th, at ts,
// in its site (found or made, and snapshotted for the peak first) and in
// the process's totals, and returns the site.
func (p *proc) countAlloc(th *thread, ts, size, stack uint64) (uint32, *site) {
	si, ok := p.siteIndex.home(stack, th.tid)
	if !ok {
		si = p.siteFor(stack, th.tid, ts)
	}
	s := &p.sites[si]
	p.touch(s)
	s.Allocs++
	s.AllocBytes += size
	p.t.Allocations++
	p.t.BytesAllocated += size
	return si, s
}

func (p *proc) alloc(th *thread, ts, ptr, size, stack, reuseSkew uint64) {
	late := p.applied(ts)
	p.heapEvents = true
	if ptr == 0 {
		return
	}
	si, s := p.countAlloc(th, ts, size, stack)
	th.lastAlloc, th.lastAllocTS, th.lastAllocOK = ptr, ts, true
	// The hand-over rule (reuse.go) looks only when a free by a thread
	// found no block less than the skew ago: not a lookup per allocation.
	if (late || ts < p.lastPending+reuseSkew) && p.pairPending(ptr, ts, late, th.tid, reuseSkew) {
		// Its free was applied before it: born and dead already.
		p.t.Frees++
		p.t.UnknownFrees--
		return
	}
	s.LiveObjects++
	s.LiveBytes += size
	p.t.LiveObjects++
	p.t.LiveBytes += size
	p.live.insert(liveBlock{addr: ptr, ts: ts, size: size, site: si})
	if p.t.LiveBytes > p.t.PeakBytes {
		p.t.PeakBytes, p.t.PeakObjects, p.t.PeakTS = p.t.LiveBytes, p.t.LiveObjects, ts
		p.peakEpoch++
	}
}

// tempPair applies an allocation of ptr at ts by th and the free of ptr
// at freeTS that comes right after it in the order events are applied
// (a temporary block: th freed what it had just allocated) as alloc then
// free would, without the block entering the live table: the insert and
// the remove were most of the cost of a program that allocates and frees
// in a loop. It does nothing and reports false unless the pair is plain:
// in time (not late, freeTS not before ts), no timeline sample due
// between them, no new peak (the peak profile must see the block live),
// the address not live already and no earlier free of it waiting
// (reuse.go). The caller has checked that the free is not deferred.
func (p *proc) tempPair(th *thread, ts, ptr, size, stack, freeTS, reuseSkew uint64) bool {
	if ptr == 0 || ts < p.maxApplied || freeTS < ts || freeTS >= p.nextSample ||
		ts < p.lastPending+reuseSkew || p.t.LiveBytes+size > p.t.PeakBytes {
		return false
	}
	if _, _, _, live := p.live.find(ptr); live {
		return false
	}
	p.maxApplied = freeTS
	p.heapEvents = true
	_, s := p.countAlloc(th, ts, size, stack)
	s.Temporaries++
	p.t.Frees++
	p.t.TemporaryAllocations++
	// As free leaves them after alloc set them.
	th.lastAlloc, th.lastAllocTS, th.lastAllocOK = ptr, ts, false
	return true
}

func (p *proc) free(th *thread, ts, ptr, reuseSkew uint64) {
	p.applied(ts)
	p.heapEvents = true
	temp := th.lastAllocOK && th.lastAlloc == ptr
	th.lastAllocOK = false
	p.closeBlock(ts, ptr, temp, th.lastAllocTS, th.tid, reuseSkew)
}

// closeBlock applies a free of ptr at ts by thread tid (0: unknown); temp
// says its thread's previous allocation, at lastTS, was of ptr (the
// temporary rule); reuseSkew is the reuse rule's (reuse.go).
func (p *proc) closeBlock(ts, ptr uint64, temp bool, lastTS uint64, tid uint32, reuseSkew uint64) {
	b, ok := p.live.remove(ptr, ts, tid, reuseSkew, p.siteKeys)
	if !ok {
		p.t.UnknownFrees++
		if p.pendingCount < maxPending {
			if p.pending == nil {
				p.pending = make(map[uint64][]pendingFree)
			}
			p.pending[ptr] = append(p.pending[ptr], pendingFree{ts, tid})
			if tid != 0 {
				p.lastPending = max(p.lastPending, ts)
			}
			p.pendingCount++
		}
		return
	}
	s := &p.sites[b.site]
	p.touch(s)
	s.LiveObjects--
	s.LiveBytes -= b.size
	p.t.Frees++
	p.t.LiveObjects--
	p.t.LiveBytes -= b.size
	if temp && b.ts == lastTS {
		s.Temporaries++
		p.t.TemporaryAllocations++
	}
}

// pairPending matches an allocation of ptr at ts by thread tid with a free
// of ptr applied before it, which found no block: for an allocation that
// arrived late, the earliest such free at or after ts; otherwise, or if
// there is none, one by another thread stamped less than skew before ts,
// the latest (a free of a block handed over at once, stamped before its
// allocation: reuse.go). A late allocation can be one of those too: a
// thread moved to another CPU can stamp an event before its previous one.
func (p *proc) pairPending(ptr, ts uint64, late bool, tid uint32, skew uint64) bool {
	frees := p.pending[ptr]
	best := -1
	if late {
		for i, f := range frees {
			if f.ts >= ts && (best < 0 || f.ts < frees[best].ts) {
				best = i
			}
		}
	}
	if best < 0 {
		for i, f := range frees {
			if f.tid != 0 && f.tid != tid && f.ts <= ts && ts-f.ts < skew && (best < 0 || f.ts > frees[best].ts) {
				best = i
			}
		}
	}
	if best < 0 {
		return false
	}
	frees = append(frees[:best], frees[best+1:]...)
	if len(frees) == 0 {
		delete(p.pending, ptr)
	} else {
		p.pending[ptr] = frees
	}
	p.pendingCount--
	return true
}

// loadedModules is how many modules are not unloaded (kept by
// addModule: a program that dlopens and dlcloses in a loop has many
// modules, few at a time, and a load must not count them all).
func (p *proc) loadedModules() int { return p.loaded }

// countLoaded recounts loaded after the module list changed at once.
func (p *proc) countLoaded() {
	p.loaded = 0
	for i := range p.modules {
		if p.modules[i].UnloadTS == 0 {
			p.loaded++
		}
	}
}

func (p *proc) addModule(ts uint64, m shm.Module) {
	if m.Event == shm.ModuleUnload {
		for i := len(p.modules) - 1; i >= 0; i-- {
			o := &p.modules[i]
			if o.UnloadTS == 0 && o.Bias == m.Bias && o.Path == m.Path {
				o.UnloadTS = ts
				p.loaded--
				return
			}
		}
		return
	}
	p.modules = append(p.modules, Module{Path: m.Path, BuildID: m.BuildID, Bias: m.Bias, Segments: m.Segments, LoadTS: ts})
	p.loaded++
}

// snapshot returns the state as a Process that shares nothing mutable.
func (p *proc) snapshot(exit ExitStatus) *Process {
	out := &Process{
		Pid: p.pid, Ppid: p.ppid, Exe: p.exe, Argv0: p.argv0, Execs: p.execs,
		StartTS: p.startTS, EndTS: p.maxApplied,
		Threads: make(map[uint32]string, len(p.threadNames)),
		Modules: make([]Module, len(p.modules)),
		Sites:   make([]Site, len(p.sites)),
		Stacks:  make(map[uint64][]uint64, len(p.sites)),
		Totals:  p.t,
		Exit:    exit,
		Reach:   p.reach.state,

		ExitRecorded: p.libExitKnown,
	}
	for tid, n := range p.threadNames {
		out.Threads[tid] = n
	}
	copy(out.Modules, p.modules)
	byKind := p.siteKinds()
	// Sites in (stack, thread) order: the keys are sorted, 16 bytes
	// each, not the 160-byte sites (sort.Slice on the sites took 2.6 ms
	// of a compiler's 20 000; BenchmarkSnapshot).
	type siteOrder struct {
		stack uint64
		tid   uint32
		i     uint32
	}
	order := make([]siteOrder, len(p.siteKeys))
	for i := range p.siteKeys {
		order[i] = siteOrder{p.siteKeys[i].StackID, p.siteKeys[i].Tid, uint32(i)}
	}
	slices.SortFunc(order, func(a, b siteOrder) int {
		if c := cmp.Compare(a.stack, b.stack); c != 0 {
			return c
		}
		return cmp.Compare(a.tid, b.tid)
	})
	for j, o := range order {
		i := o.i
		c, k := &p.sites[i], &p.siteKeys[i]
		s := &out.Sites[j]
		*s = Site{StackID: k.StackID, Tid: k.Tid, FirstTS: k.FirstTS,
			Allocs: c.Allocs, AllocBytes: c.AllocBytes, LiveObjects: c.LiveObjects, LiveBytes: c.LiveBytes,
			PeakObjects: c.PeakObjects, PeakBytes: c.PeakBytes, Temporaries: c.Temporaries, ByKind: byKind[i]}
		if c.snapEpoch != p.peakEpoch {
			s.PeakObjects, s.PeakBytes = s.LiveObjects, s.LiveBytes
		}
		if pcs, ok := p.stacks.get(s.StackID); ok {
			out.Stacks[s.StackID] = pcs
		}
	}
	out.Timeline = append([]Sample(nil), p.timeline...)
	if p.maxApplied != 0 {
		out.Timeline = append(out.Timeline, Sample{TS: p.maxApplied, HeapBytes: p.t.LiveBytes, LiveObjects: p.t.LiveObjects})
	}
	if !exit.Known && p.libExitKnown {
		out.Exit = ExitStatus{Known: true, Code: int(p.libExit)}
	}
	return out
}
