// Package engine turns the ring's records into per-process heap state: a
// live table per process (with generations per address for out-of-order
// arrival), per-site aggregates, the totals of DESIGN.md §6, the peak with
// per-site values at the peak, a timeline, modules and thread names.
//
// Records of one thread arrive in program order; records of different
// threads and processes interleave and arrive out of time order by up to
// the Reader's polling delay. Heap events wait until the reader's
// watermark passes them (Settle), or at most a reorder window, and are
// applied in timestamp order across all threads and processes, which
// makes every result exact (TestEngineMatchesModel). When the window
// runs out before the watermark (a thread stalled longer than it in the
// middle of a record), allocations are applied and frees wait for the
// watermark (deferred.go); an event that arrives after later events of
// its process were applied is applied then. Both are counted as late:
// pairing and the end state stay exact, the heap curve and the peak see
// late events when they were applied.
//
// An Engine is not safe for concurrent use: one goroutine applies records
// and reads state (Snapshot copies what a concurrent reader needs).
package engine

import (
	"encoding/binary"
	"fmt"
	"sort"
	"time"
	"unsafe"

	"memscope/shm"
)

// Options configures an Engine.
type Options struct {
	// ReorderWindow is how long heap events wait for older events of other
	// threads before they are applied in timestamp order, whatever the
	// reader's watermark says (Settle): the bound on a thread stalled in
	// the middle of writing a record. Default 1 s, shortened to
	// pressureWindow while the waiting events take more than
	// maxWindowBlocks; negative means no window (apply on arrival).
	ReorderWindow time.Duration
	// TimelineInterval is the spacing of timeline samples. Default 10 ms.
	TimelineInterval time.Duration
	// Stamps converts records' timestamps to ns (the ring's
	// Clock().Conv()); the zero value takes them as ns already
	// (shm.NSStamps).
	Stamps shm.StampConv
	// MaxStacks bounds the distinct stacks the engine keeps (the ring is
	// written by the traced program: a hostile one must not exhaust the
	// analyzer's memory). Default 16 M (about 4 GiB of stacks at depth 32).
	MaxStacks int
	// ReuseSkew bounds how far two threads' records of one address may
	// be stamped out of order: a reuse before the free that released the
	// address, a free before the allocation of the block it frees
	// (reuse.go). Default 100 us; negative: none.
	ReuseSkew time.Duration
}

// maxWindowBlocks bounds the memory of the events waiting for a stalled
// writer (128 MiB): past it the window shrinks to pressureWindow, and an
// event later than that is applied as late. With writers stalling for
// less than a second (the watermark moves with every record), the window
// holds almost nothing; 1000 threads on 2 cores stalled a writer inside
// a record for over 100 ms in 1 of 3 runs of testdata/crowd.c.
const (
	maxWindowBlocks = 4096
	pressureWindow  = 100 * time.Millisecond
)

// maxModules bounds the modules one process may have loaded at once (a
// real program has hundreds; one that dlopens and dlcloses in a loop has
// few at a time).
const maxModules = 1 << 16

// Engine holds the state of every traced process.
type Engine struct {
	window   uint64 // ns
	interval uint64 // ns
	stamps   shm.StampConv

	procs   map[uint32]*proc
	threads map[uint64]*thread
	last    *thread // the thread of the previous record (records come in runs)
	heap    threadHeap
	pool    blockPool
	batch   *sortedBatch // made at the first batch
	// batchLimit is the capacity of batches (0: batchCap); tests make
	// it small to fill batches up.
	batchLimit int
	// windowBlocks is maxWindowBlocks; tests make it small.
	windowBlocks int

	ownedStacks int    // stacks of the living processes' tables (stacktable.go T3)
	maxStacks   int    // bound of ownedStacks (Options.MaxStacks)
	reuseSkew   uint64 // Options.ReuseSkew, ns

	procRecs   map[uint64]pendingProc // PROCESS records waiting in the window
	nextProcID uint64

	// The two sides of forks (fork.go): the parents' states at forks
	// whose child has not announced itself yet, and the forks whose
	// child did before the parent's FORKED record came.
	forkCuts  map[forkID]*proc
	forkTaken map[forkID]bool

	exitChecks []ExitCheck // processes waiting at exit for a leak check (TakeExitChecks)

	maxSeen  uint64 // largest timestamp seen
	released uint64 // events with key <= released have been applied
	// safe is the reader's watermark (Settle): every record stamped
	// before it has arrived. Frees wait for it (deferred.go); 0: no
	// watermark, nothing waits.
	safe      uint64
	deferring []*proc // processes with frees waiting for the watermark
	slack     uint64  // release in steps of at least this many key units

	// flushing is the process FlushProcess applies: its records are all
	// read, so its frees need not wait for the watermark.
	flushing *proc

	stateBuf []byte // WriteState's spill buffer, kept between checkpoints
}

// New returns an empty Engine.
func New(opts Options) *Engine {
	w := opts.ReorderWindow
	switch {
	case w == 0:
		w = time.Second
	case w < 0:
		w = 0
	}
	iv := opts.TimelineInterval
	if iv <= 0 {
		iv = 10 * time.Millisecond
	}
	e := &Engine{
		window:   uint64(w),
		interval: uint64(iv),
		stamps:   opts.Stamps,
		procs:    map[uint32]*proc{},
		threads:  map[uint64]*thread{},
		procRecs: map[uint64]pendingProc{},
		slack:    uint64(w) / 16 << kindBit,

		maxStacks:    opts.MaxStacks,
		windowBlocks: maxWindowBlocks,
	}
	if e.maxStacks <= 0 {
		e.maxStacks = 16 << 20
	}
	switch {
	case opts.ReuseSkew == 0:
		e.reuseSkew = defaultReuseSkew
	case opts.ReuseSkew > 0:
		e.reuseSkew = uint64(opts.ReuseSkew)
	}
	if e.stamps == (shm.StampConv{}) {
		e.stamps = shm.NSStamps()
	}
	return e
}

func (e *Engine) proc(pid uint32) *proc {
	p := e.procs[pid]
	if p == nil {
		p = newProc(pid, e.interval)
		e.procs[pid] = p
	}
	return p
}

// thread returns the stream of (pid, tid). Records come in runs of one
// thread (a chunk each), so the previous record's thread is tried first.
func (e *Engine) thread(pid, tid uint32) *thread {
	if th := e.last; th != nil && th.pid == pid && th.tid == tid {
		return th
	}
	return e.lookupThread(pid, tid)
}

func (e *Engine) lookupThread(pid, tid uint32) *thread {
	k := uint64(pid)<<32 | uint64(tid)
	th := e.threads[k]
	if th == nil {
		p := e.proc(pid)
		th = &thread{pid: pid, tid: tid, proc: p}
		e.threads[k] = th
		p.threads = append(p.threads, th)
	}
	e.last = th
	return th
}

// Apply decodes one record and applies it, or queues it in the reorder
// window. rec.Data is not retained. A record that does not decode gives an
// error naming its pid, tid and type; the engine's state is unchanged.
func (e *Engine) Apply(rec shm.Record) error {
	_, _, err := e.ApplyChunk(rec.Pid, rec.Tid, rec.Data)
	if bad, ok := err.(*shm.RecordError); ok {
		return recErr(rec, bad.Err)
	}
	return err
}

// ApplyChunk applies the records of data, written back to back by thread
// tid of process pid (a chunk's unread records: it is a shm.ChunkFunc,
// which the session polls the ring with). It returns how many bytes and
// records it took; it stops before a malformed record, with a
// *shm.RecordError, or before one it cannot apply, with an error naming
// its pid, tid and type. data is not retained.
//
// This is the engine's inner loop: heap records, most of the stream, are
// decoded in place and queued; the rest go through shm.ParseRecordHeader
// and applyRecord.
func (e *Engine) ApplyChunk(pid, tid uint32, data []byte) (took, records int, err error) {
	le := binary.LittleEndian
	stamps := e.stamps
	// The chunk's heap events are appended to its thread's run as they
	// are decoded, and published (counted, merged, windowed) at once.
	var run runAppender
	defer e.publish(&run)
	for took < len(data) {
		d := data[took:]
		// The ring's chunks were written by other cores: fetch ahead.
		if len(d) > recordsAhead {
			prefetch(unsafe.Pointer(&d[recordsAhead]))
		}
		if len(d) >= shm.RecordHeaderSize {
			// Little-endian header: type | len<<16 | flags<<32, ts.
			w := le.Uint64(d)
			t, n := shm.RecordType(w), int(uint16(w>>16))
			ts := stamps.NS(le.Uint64(d[8:]))
			if n <= len(d) && n%8 == 0 {
				d = d[:n]
				switch {
				case t == shm.RecAlloc && n >= allocRecSize:
					run.open(e, pid, tid)
					run.push(event{eventKey(ts, evAlloc),
						le.Uint64(d[allocPtrOff:]), le.Uint64(d[allocSizeOff:]), le.Uint64(d[allocStackOff:])})
					took, records = took+n, records+1
					continue
				case t == shm.RecFree && n >= freeRecSize:
					run.open(e, pid, tid)
					run.push(event{key: eventKey(ts, evFree), ptr: le.Uint64(d[freePtrOff:])})
					took, records = took+n, records+1
					continue
				case t == shm.RecRealloc && n >= reallocRecSize && stamps.NS(le.Uint64(d[reallocTSBeforeOff:])) <= ts:
					run.open(e, pid, tid)
					if old := le.Uint64(d[reallocOldOff:]); old != 0 {
						run.push(event{key: eventKey(stamps.NS(le.Uint64(d[reallocTSBeforeOff:])), evFree), ptr: old})
					}
					if nw := le.Uint64(d[reallocNewOff:]); nw != 0 {
						run.push(event{eventKey(ts, evAlloc), nw, le.Uint64(d[reallocSizeOff:]), le.Uint64(d[reallocStackOff:])})
					}
					took, records = took+n, records+1
					continue
				}
			}
		}
		rec, perr := shm.ParseRecordHeader(data[took:])
		if perr != nil {
			return took, records, &shm.RecordError{Offset: took, Err: perr}
		}
		rec.Pid, rec.Tid = pid, tid
		rec.TS = stamps.NS(rec.TS)
		// The events appended so far come first (applyRecord can queue
		// and release).
		e.publish(&run)
		if err := e.applyRecord(rec); err != nil {
			return took, records, err
		}
		took, records = took+len(rec.Data), records+1
	}
	return took, records, nil
}

// Sizes and field offsets of the ALLOC, FREE and REALLOC records of
// include/memscope.h, as in shm/record.go (TestHeapRecordLayout checks
// them on records encoded by shm).
const (
	allocRecSize  = 48
	allocPtrOff   = 16
	allocSizeOff  = 24
	allocStackOff = 32

	freeRecSize = 24
	freePtrOff  = 16

	reallocRecSize     = 64
	reallocOldOff      = 16
	reallocNewOff      = 24
	reallocSizeOff     = 32
	reallocStackOff    = 40
	reallocTSBeforeOff = 48
)

// applyRecord applies every record but well-formed heap records.
func (e *Engine) applyRecord(rec shm.Record) error {
	switch rec.Type {
	case shm.RecAlloc, shm.RecFree, shm.RecRealloc:
		// ApplyChunk queued it unless it is malformed: say how.
		return recErr(rec, heapRecordFault(rec))
	case shm.RecStack:
		return e.addStack(e.proc(rec.Pid), rec)
	case shm.RecModule:
		m, err := rec.Module()
		if err != nil {
			return recErr(rec, err)
		}
		if m.Event != shm.ModuleLoad && m.Event != shm.ModuleUnload {
			return recErr(rec, fmt.Errorf("unknown module event %d", m.Event))
		}
		p := e.proc(rec.Pid)
		if m.Event == shm.ModuleLoad && p.loadedModules() >= maxModules {
			return recErr(rec, fmt.Errorf("more than %d modules loaded at once in one process: refusing the ring (corrupt, or written by something hostile)", maxModules))
		}
		p.addModule(rec.TS, m)
	case shm.RecThread:
		t, err := rec.Thread()
		if err != nil {
			return recErr(rec, err)
		}
		p := e.proc(rec.Pid)
		p.threadNames[t.Tid] = t.Name
		p.reach.thread(t)
	case shm.RecProcess:
		pr, err := rec.Process()
		if err != nil {
			return recErr(rec, err)
		}
		if pr.Event < shm.ProcessStart || pr.Event > shm.ProcessForked {
			return recErr(rec, fmt.Errorf("unknown process event %d", uint32(pr.Event)))
		}
		if pr.Event == shm.ProcessExit && rec.Flags&shm.FlagExitCheck != 0 {
			e.exitChecks = append(e.exitChecks, ExitCheck{Pid: rec.Pid, Tid: rec.Tid, TS: rec.TS, Reports: rec.Flags&shm.FlagExitReports != 0})
		}
		e.nextProcID++
		key := eventKey(rec.TS, evProc)
		e.procRecs[e.nextProcID] = pendingProc{pr, key}
		e.queue(e.thread(rec.Pid, rec.Tid), key, e.nextProcID, 0, 0)
	case shm.RecLost:
		l, err := rec.Lost()
		if err != nil {
			return recErr(rec, err)
		}
		if rec.Flags&shm.FlagUnrecorded != 0 {
			e.proc(rec.Pid).t.UnrecordedCalls += l.Count
		} else {
			e.proc(rec.Pid).t.DroppedEvents += l.Count
		}
	default:
		return fmt.Errorf("pid %d tid %d: unknown record type %d", rec.Pid, rec.Tid, uint16(rec.Type))
	}
	return nil
}

// heapRecordFault says what is wrong with a heap record ApplyChunk did not
// take: shorter than its layout (shm's decoder says so, as its sizes are
// ApplyChunk's: TestHeapRecordLayout), or a realloc stamped before its free.
func heapRecordFault(rec shm.Record) error {
	var err error
	switch rec.Type {
	case shm.RecAlloc:
		_, err = rec.Alloc()
	case shm.RecFree:
		_, err = rec.Free()
	case shm.RecRealloc:
		var r shm.Realloc
		if r, err = rec.Realloc(); err == nil {
			err = fmt.Errorf("ts_before %d is after ts %d", r.TSBefore, rec.TS)
		}
	}
	if err == nil {
		err = fmt.Errorf("%d bytes: not the layout ApplyChunk decodes", len(rec.Data))
	}
	return err
}

// pendingProc is a PROCESS record waiting in the window, with its key.
type pendingProc struct {
	rec shm.Process
	key uint64
}

func recErr(rec shm.Record, err error) error {
	return fmt.Errorf("pid %d tid %d: %s record at ts %d: %w", rec.Pid, rec.Tid, rec.Type, rec.TS, err)
}

// queue adds one event to th's run and applies what left the window.
func (e *Engine) queue(th *thread, key, ptr, size, stack uint64) {
	run := e.appendTo(th)
	run.push(event{key, ptr, size, stack})
	e.publish(&run)
}

// open starts appending to the run of (pid, tid), unless run is open:
// a chunk looks its thread up at its first heap record, so that a bad
// record before any changes nothing.
func (run *runAppender) open(e *Engine, pid, tid uint32) {
	if run.th == nil {
		run.start(e, pid, tid)
	}
}

// start is open's first time (out of line: open is inlined in the loop).
//
//go:noinline
func (run *runAppender) start(e *Engine, pid, tid uint32) { *run = e.appendTo(e.thread(pid, tid)) }

// appendTo starts appending events to th's run.
func (e *Engine) appendTo(th *thread) runAppender {
	b, i := th.tailBlk, th.tailIdx
	if b == nil || i == blockEvents {
		b, i = th.newTail(&e.pool), 0
	}
	return runAppender{th: th, pool: &e.pool, b: b, i: i, first: &b.ev[i]}
}

// publish makes the events run appended pending: it counts them, puts
// their thread in the heap if it had none, moves the window and applies
// what left it. It resets run (publishing it again does nothing).
//
// The window moves only when the largest timestamp seen grows, so it is
// checked only then: with the same maxSeen, the limit is the one of the
// last check, and released only grows. A thread's events come in
// timestamp order, so the first of a run is its oldest and the last its
// newest.
func (e *Engine) publish(run *runAppender) {
	th := run.th
	if th == nil || run.n == 0 {
		*run = runAppender{}
		return
	}
	th.tailIdx = run.i
	first, last := run.first.key, run.b.ev[run.i-1].key
	wasEmpty := th.pending == 0
	th.pending += run.n
	*run = runAppender{}
	if wasEmpty {
		e.heap.add(th)
	}
	if ts := last >> kindBit; ts > e.maxSeen {
		e.maxSeen = ts
		w := e.window
		if e.pool.inUse > e.windowBlocks && w > uint64(pressureWindow) {
			w = uint64(pressureWindow)
		}
		if ts >= w {
			if limit := eventKey(ts-w, 1<<kindBit-1); limit >= e.released+e.slack {
				e.release(limit)
			}
		}
	}
	if first <= e.released {
		// Behind what was applied already: apply it now.
		e.release(e.released)
	}
}

// release applies, in key order, every pending event with key <= limit.
func (e *Engine) release(limit uint64) {
	if limit > e.released {
		e.released = limit
	}
	for len(e.heap) > 0 {
		if e.heap[0].key > limit {
			return
		}
		// Several threads: in sorted batches (batch.go).
		if len(e.heap) >= 2 && e.applyBatch(limit) {
			continue
		}
		th := e.heap[0].th
		bound := e.heap.secondKey()
		if limit < bound {
			bound = limit
		}
		// Apply th's run up to the next thread's head.
		if e.applyRun(th, bound) {
			e.heap.removeRoot()
		} else {
			e.heap[0].key = th.headKey()
			e.heap.down(0)
		}
	}
}

// applyRun applies th's pending events with key <= bound, in place in
// their blocks, and reports whether th has none left.
func (e *Engine) applyRun(th *thread, bound uint64) (empty bool) {
	for {
		b, i := th.headBlk, th.headIdx
		end := blockEvents
		if b == th.tailBlk {
			end = th.tailIdx
		}
		// th's event slotAhead on is applied soon (release applies a
		// run in place when it comes first for a stretch): start
		// fetching its live table group now, so that the cache misses
		// of several events overlap (frees of old blocks miss: the
		// table is larger than the caches).
		ahead := end - slotAhead // prefetch for i < ahead
		// The run itself was written some 100 ms ago (the window): it
		// is out of cache too, and the CPU's prefetcher does not fetch
		// it ahead (measured: loading event slotAhead was a quarter of
		// the time), so it is fetched queueAhead events ahead, a line
		// (two events) at a time.
		live := &th.proc.live
		for ; i < end; i++ {
			ev := &b.ev[i]
			if ev.key > bound {
				break
			}
			if i < ahead {
				if i&1 == 0 && i+queueAhead < end {
					prefetch(unsafe.Pointer(&b.ev[i+queueAhead]))
				}
				live.prefetch(b.ev[i+slotAhead].ptr)
			}
			if i+1 < end && b.ev[i+1].key <= bound && e.applyTempPair(th, ev, &b.ev[i+1]) {
				i++
				continue
			}
			e.applyEvent(th, ev)
		}
		// Take them off the run (at the end of the head block, skip
		// moves on to the next, and the loop goes on with it).
		th.skip(i-th.headIdx, &e.pool)
		if th.empty() {
			return true
		}
		if i < end {
			return false
		}
	}
}

// applyTempPair applies ev and nx, th's next event in the order events
// are applied, as one if they are an allocation and the free of its
// block (proc.tempPair), and reports whether it did.
func (e *Engine) applyTempPair(th *thread, ev, nx *event) bool {
	const kinds = 1<<kindBit - 1
	if ev.key&kinds != evAlloc || nx.key&kinds != evFree || nx.ptr != ev.ptr {
		return false
	}
	if e.safe != 0 && nx.ts() >= e.safe && th.proc != e.flushing {
		return false // the free waits (deferred.go)
	}
	return th.proc.tempPair(th, ev.ts(), ev.ptr, ev.size, ev.stack, nx.ts(), e.reuseSkew)
}

// applyEvent applies one event of th's (the events it applies are not
// retained: ev may be reused).
func (e *Engine) applyEvent(th *thread, ev *event) {
	p := th.proc
	switch ev.key & (1<<kindBit - 1) {
	case evAlloc:
		p.alloc(th, ev.ts(), ev.ptr, ev.size, ev.stack, e.reuseSkew)
	case evFree:
		if e.safe != 0 && ev.ts() >= e.safe && p != e.flushing {
			e.deferFree(th, ev.ts(), ev.ptr) // the window passed the watermark
		} else {
			p.free(th, ev.ts(), ev.ptr, e.reuseSkew)
		}
	case evProc:
		pr := e.procRecs[ev.ptr]
		delete(e.procRecs, ev.ptr)
		e.applyProcess(th, ev.ts(), pr.rec)
	}
}

// applyProcess applies a PROCESS record in timestamp order.
func (e *Engine) applyProcess(th *thread, ts uint64, pr shm.Process) {
	p := th.proc
	p.applied(ts)
	setNames := func() {
		if pr.Exe != "" {
			p.exe = pr.Exe
		}
		if pr.Arg0 != "" {
			p.argv0 = pr.Arg0
		}
	}
	switch pr.Event {
	case shm.ProcessStart, shm.ProcessExec:
		// A new image. START for a process already seen means an exec
		// whose library missed the old image's end (or a reused pid).
		if p.started || p.heapEvents || pr.Event == shm.ProcessExec {
			if p.started || p.heapEvents {
				p.execs++
			}
			p.resetImage(ts)
			e.forgetForks(p.pid)
		}
		p.started = true
		p.ppid = pr.Ppid
		setNames()
	case shm.ProcessFork:
		p.started = true
		p.ppid = pr.Ppid
		setNames()
		e.fork(p, pr.Ppid, uint32(pr.Status), ts) // fork.go
	case shm.ProcessForked:
		e.forked(p, uint32(pr.Status), ts)
	case shm.ProcessExit:
		p.libExit, p.libExitKnown = pr.Status, true
	}
	if p.startTS == 0 {
		p.startTS = ts
	}
}

// Advance tells the engine that the clock has reached now (CLOCK_MONOTONIC
// ns), so events older than the window are applied even when no newer
// record arrives (an idle ring; the live view).
func (e *Engine) Advance(now uint64) {
	if now > e.maxSeen {
		e.maxSeen = now
	}
	if e.maxSeen >= e.window {
		if limit := eventKey(e.maxSeen-e.window, 1<<kindBit-1); limit > e.released {
			e.release(limit)
		}
	}
}

// Settle applies every pending event stamped before ts, where ts is a time
// no record still to come can be stamped before (shm.Reader.Watermark):
// the reorder window only has to hold events the watermark has not
// passed. With every thread writing, that is the last few polls' events,
// which stay in the CPU's caches, instead of a whole window of them.
func (e *Engine) Settle(ts uint64) {
	if ts == 0 {
		return
	}
	if ts > e.safe {
		e.safe = ts
	}
	if limit := eventKey(ts-1, 1<<kindBit-1); limit > e.released {
		e.release(limit)
	}
	if len(e.deferring) > 0 {
		e.applyDeferred(e.safe)
	}
}

// Flush applies every pending event of every process. Later records still
// go through the window (only those older than what was flushed are late).
func (e *Engine) Flush() {
	e.release(eventKey(e.maxSeen, 1<<kindBit-1))
	if len(e.deferring) > 0 {
		e.applyDeferred(^uint64(0))
	}
}

// EndProcess applies everything pending up to the last event of pid (of
// every process, so that a child's fork record older than the parent's end
// still sees the parent), returns pid's final state and forgets it. Call
// it once the process is gone and the ring has been drained of its
// records. It returns nil for a pid the engine never saw.
func (e *Engine) EndProcess(pid uint32, exit ExitStatus) *Process {
	p := e.procs[pid]
	if p == nil {
		return nil
	}
	var limit uint64
	for _, th := range p.threads {
		if !th.empty() && th.lastKey() > limit {
			limit = th.lastKey()
		}
	}
	// A child's fork record may be younger than the parent's last event
	// (a parent that exits right after fork): it must still find the
	// parent.
	for _, pp := range e.procRecs {
		if pp.rec.Event == shm.ProcessFork && pp.rec.Ppid == pid && pp.key > limit {
			limit = pp.key
		}
	}
	if limit > 0 {
		e.release(limit)
	}
	for _, th := range p.threads {
		// Left only by a thread whose timestamps went backwards (bad
		// input): apply the rest in its order.
		if th.empty() {
			continue
		}
		if i := e.heap.index(th); i >= 0 {
			e.heap.remove(i)
		}
		for !th.empty() {
			ev := th.pop(&e.pool)
			e.applyEvent(th, &ev)
		}
	}
	// The process is gone and its records read: nothing of its own
	// is still to come, so its waiting frees are all due.
	if len(p.deferred) > 0 {
		p.applyDeferred(^uint64(0))
	}
	out := p.snapshot(exit) // holds the PCs of its stacks itself
	e.dropStacks(p)
	for _, th := range p.threads {
		th.release(&e.pool)
		delete(e.threads, uint64(th.pid)<<32|uint64(th.tid))
		if e.last == th {
			e.last = nil
		}
	}
	delete(e.procs, pid)
	e.forgetForks(pid)
	for i, q := range e.deferring {
		if q == p {
			e.deferring = append(e.deferring[:i], e.deferring[i+1:]...)
			break
		}
	}
	if b := e.batch; b != nil {
		// The last batch's thread pointers would keep the process's
		// state (its live table) from being collected.
		clear(b.th[:])
		clear(b.from[:cap(b.from)])
	}
	return out
}

// Snapshot returns a copy of pid's current state (nil if unknown), with
// the live values of the moment as "at exit"; pending events stay pending.
func (e *Engine) Snapshot(pid uint32) *Process {
	p := e.procs[pid]
	if p == nil {
		return nil
	}
	return p.snapshot(ExitStatus{})
}

// Pids returns the processes the engine holds state for, ascending.
func (e *Engine) Pids() []uint32 {
	out := make([]uint32, 0, len(e.procs))
	for pid := range e.procs {
		out = append(out, pid)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Stack returns the PCs of stack id of process pid (shared: do not
// modify), innermost first: pcs[0] is the return address into the
// caller of malloc.
func (e *Engine) Stack(pid uint32, id uint64) ([]uint64, bool) {
	p := e.procs[pid]
	if p == nil {
		return nil, false
	}
	return p.stacks.get(id)
}

// errTooManyStacks refuses a ring whose processes write more stacks than
// the engine keeps.
func errTooManyStacks(limit int) error {
	return fmt.Errorf("more than %d distinct stacks: refusing the ring (corrupt, or written by something hostile)", limit)
}

// Pending returns how many events wait in the reorder window.
func (e *Engine) Pending() int {
	n := 0
	for _, h := range e.heap {
		n += h.th.pending
	}
	return n
}

// applyRun and applyBatch fetch the live table group of the event
// slotAhead events on in the order they apply events, and the pending
// event queueAhead on in the thread's run they read. ApplyChunk fetches
// the chunk's bytes recordsAhead on. Each distance was measured on the
// captured stream (BenchmarkApplyCaptured, about 55 ns a record then):
// queueAhead 16 to 128 are within noise of each other and 7 ns faster
// than none; recordsAhead 1024 is 2.5 ns faster than none, 256 and 2048
// 1-2 ns slower than 1024; slotAhead 12 and 16 no faster than 8.
const (
	slotAhead    = 8
	queueAhead   = 32
	recordsAhead = 1024
)
