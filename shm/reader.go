package shm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ReaderOptions configure a Reader.
type ReaderOptions struct {
	SealAfter    time.Duration              // 0: the ring header's seal_after_ns
	ProcessAlive func(pid uint32) bool      // nil: kill(pid, 0) != ESRCH and not a zombie
	ThreadAlive  func(pid, tid uint32) bool // nil: /proc/PID/task/TID exists and is not a zombie
	// PollBytes bounds what one Poll or PollChunks delivers (0: all
	// that is published). A snapshot holding more is delivered over
	// several calls, each with its own Watermark, so a consumer that
	// fell behind works through its backlog in pieces that stay in the
	// CPU's caches, and commits (frees ring space) after each.
	PollBytes int
}

// ReaderStats are a Reader's counters.
type ReaderStats struct {
	ChunksRead uint64 // chunks sealed and delivered to their end
	Records    uint64 // records delivered (again after a Rollback)
	Sealed     uint64 // chunks this Reader sealed: idle, owner gone, SealProcess
	Abandoned  uint64 // reservations this Reader abandoned (never claimed)
	Dropped    uint64 // the header's dropped_events: events producers could not record
	Commits    uint64 // successful Commit calls
	Pieces     uint64 // polls that stopped at PollBytes with more of their snapshot to deliver
}

// chunkKind is what the Reader knows about the chunk with a given sequence.
type chunkKind uint8

const (
	chunkUnclaimed chunkKind = iota // reserved, slot not claimed yet
	chunkUninit                     // claimed, state not initialised yet (owner unknown)
	chunkOwned                      // initialised: pid and tid are the owner's
	chunkAbandoned                  // the consumer gave up on the reservation: empty, sealed
	chunkReleased                   // reset by a consumer that died before moving last_read_to
)

// chunkEntry is the Reader's view of one chunk of the window.
type chunkEntry struct {
	seq       uint64
	valid     bool // describes seq
	kind      chunkKind
	sealed    bool // SEALED seen (final): snapLen is the chunk's final length
	counted   bool // counted in ChunksRead
	readOff   uint32
	commitOff uint32 // readOff at the last Commit (what Rollback returns to)
	snapLen   uint32 // published length in the current snapshot
	pid, tid  uint32
	lastSeq   uint64 // seq and state words last seen, for idle detection
	lastState uint64
	changedAt uint64 // CLOCK_MONOTONIC ns when they last changed
	// quietAt is the clock of the latest snapshot that saw the chunk with
	// no record in progress (0: none known). The owner's next record in
	// it carries a timestamp >= quietAt (Watermark).
	quietAt uint64
	// laterMin is the least stamp of the records not yet delivered in
	// this chunk's snapshot and in those of every later chunk of the
	// window (math.MaxUint64: none): the watermark of a delivery that
	// stops before this chunk (setPartialWatermark).
	laterMin uint64
}

// Reader is the ring's consumer. It delivers every record exactly once
// across commits, keeps each thread's records in program order, and moves
// the ring's cursors. A ring has one Reader at a time; a Reader is not safe
// for concurrent use.
type Reader struct {
	r            *Ring
	sealAfterNS  uint64
	timeoutNS    uint64 // the ring's consumer timeout: patience with owners that cannot be identified
	processAlive func(pid uint32) bool
	threadAlive  func(pid, tid uint32) bool
	pid          uint32
	base         uint64            // committed: chunks < base are released (== last_read_to)
	startedAt    uint64            // base when this Reader attached
	head         uint64            // reserve_head of the last snapshot
	clock        *Clock            // of the records' timestamps (the watermark's)
	stampNow     uint64            // clock.Now() read before the current snapshot
	snapNow      uint64            // clock.Now() read before the last snapshot
	watermark    uint64            // Watermark
	pollBytes    int               // ReaderOptions.PollBytes
	snapOpen     bool              // the last snapshot is not delivered to its end yet
	nextDeliver  uint64            // the chunk whose records an open snapshot delivers next
	wakeOwed     bool              // chunks were released since waiting producers were last woken
	uncommitted  int64             // bytes delivered since the last Commit (Uncommitted)
	skip         map[uint64]uint32 // SkipTo: chunks read further than they say, not seen yet
	resumed      bool              // Resumed
	journal      Journal
	entries      []chunkEntry
	stats        ReaderStats
}

// NewReader starts consuming r from its last commit (last_read_to and the
// chunks' consumed offsets). It refuses a ring another live process is
// consuming.
func (r *Ring) NewReader(opts ReaderOptions) (*Reader, error) {
	if r.mem == nil {
		return nil, fmt.Errorf("ring %s: %w", r.path, errClosed)
	}
	rd := &Reader{
		r:            r,
		clock:        r.clock,
		sealAfterNS:  uint64(r.sealAfter),
		timeoutNS:    uint64(r.consumerTimeout),
		processAlive: opts.ProcessAlive,
		threadAlive:  opts.ThreadAlive,
		pollBytes:    opts.PollBytes,
		pid:          uint32(os.Getpid()),
		entries:      make([]chunkEntry, r.chunkCount),
	}
	if opts.SealAfter > 0 {
		rd.sealAfterNS = uint64(opts.SealAfter)
	}
	if rd.processAlive == nil {
		rd.processAlive = processAlive
	}
	if rd.threadAlive == nil {
		rd.threadAlive = threadAlive
	}
	now := monotonicNS()
	other := atomic.LoadUint32(r.u32(offConsumerPid))
	hb := atomic.LoadUint64(r.u64(offHeartbeatNS))
	if other != 0 && other != rd.pid && hb+rd.timeoutNS > now && rd.processAlive(other) {
		return nil, fmt.Errorf("ring %s: already consumed by process %d (heartbeat %v ago)", r.path, other, time.Duration(now-hb))
	}
	rd.base = atomic.LoadUint64(r.u64(offLastReadTo))
	head := atomic.LoadUint64(r.u64(offReserveHead))
	if head < rd.base || head-rd.base > uint64(r.chunkCount) {
		return nil, rd.headerErr(offReserveHead, "reserve_head %d and last_read_to %d are not a window of at most %d chunks", head, rd.base, r.chunkCount)
	}
	rd.head = rd.base
	rd.startedAt = rd.base
	committed, err := rd.anyCommitted(head)
	if err != nil {
		return nil, err
	}
	rd.resumed = rd.base > 0 || committed
	atomic.StoreUint64(r.u64(offHeartbeatNS), now)
	atomic.StoreUint32(r.u32(offConsumerPid), rd.pid)
	return rd, nil
}

func (rd *Reader) headerErr(off int64, format string, args ...any) error {
	return &FormatError{Path: rd.r.path, Chunk: -1, Slot: -1, Offset: off, Problem: fmt.Sprintf(format, args...)}
}

func (rd *Reader) chunkErr(seq uint64, off uint64, format string, args ...any) error {
	return &FormatError{
		Path: rd.r.path, Chunk: int64(seq), Slot: int64(seq % uint64(rd.r.chunkCount)),
		Offset: int64(rd.r.slotOffset(seq) + off), Problem: fmt.Sprintf(format, args...),
	}
}

// Poll delivers every record available now, each thread's records in
// program order (I8: it snapshots the chunk states from the highest
// sequence down, then delivers in increasing sequence order up to the
// snapshotted lengths). With ReaderOptions.PollBytes, it stops at a chunk
// once it has delivered that many bytes, and the next Poll delivers the
// rest of the same snapshot before taking a new one. It also refreshes
// the heartbeat, seals idle chunks and chunks whose owner is gone, and
// abandons reservations never claimed. Records alias the ring and are valid until the next Poll, Commit or
// Rollback. If fn fails, Poll returns its error; the record fn refused is
// delivered again by the next Poll. A malformed chunk or record gives a
// *FormatError naming the chunk sequence, slot, file offset and problem.
func (rd *Reader) Poll(fn func(Record) error) (n int, err error) {
	return rd.PollChunks(func(pid, tid uint32, data []byte) (int, int, error) {
		return decodeRecords(data, pid, tid, fn)
	})
}

// ChunkFunc takes the unread records of one chunk, written by thread tid
// of process pid: data holds them back to back as the producer published
// them, not yet validated (ParseRecordHeader says what a well-formed
// record is; DecodeChunk is the reference loop). data aliases the ring
// and is valid until the next Poll, Commit or Rollback. It returns how many
// bytes and records it took, whole records from the start of data; if it
// took less than all of data, err says why: a *RecordError (with Offset
// relative to data) for a malformed record, which the Reader reports as a
// *FormatError of the ring, or any other error for a record it refused.
type ChunkFunc func(pid, tid uint32, data []byte) (took, records int, err error)

// PollChunks is Poll delivering a chunk's unread records at once, for a
// consumer that decodes them in its own loop (the engine's hot path).
// fn is called once per chunk with unread records, in the order Poll
// delivers records; what it did not take is delivered again by the next
// PollChunks or Poll. n counts the records fn took.
func (rd *Reader) PollChunks(fn ChunkFunc) (n int, err error) {
	r := rd.r
	if r.mem == nil {
		return 0, fmt.Errorf("ring %s: %w", r.path, errClosed)
	}
	defer r.catchFault(&err, debug.SetPanicOnFault(true))
	if !rd.snapOpen {
		if err := rd.snapshot(); err != nil {
			return 0, err
		}
		rd.snapOpen, rd.nextDeliver = true, rd.base
	}
	defer func() { rd.stats.Records += uint64(n) }()
	nc := uint64(r.chunkCount)
	delivered := 0
	for j := max(rd.nextDeliver, rd.base); j < rd.head; j++ {
		e := &rd.entries[j%nc]
		if rd.pollBytes > 0 && delivered >= rd.pollBytes && e.readOff < e.snapLen {
			// Enough for one call: the rest of the snapshot next time.
			rd.nextDeliver = j
			rd.stats.Pieces++
			rd.setPartialWatermark(e.laterMin)
			return n, nil
		}
		if e.readOff < e.snapLen {
			data := r.data(j, e.readOff, e.snapLen)
			took, k, ferr := fn(e.pid, e.tid, data)
			if took < 0 || took > int(e.snapLen-e.readOff) {
				return n, fmt.Errorf("ring %s: chunk %d: consumer says it took %d of %d bytes", r.path, j, took, e.snapLen-e.readOff)
			}
			rd.journalTaken(j, e.readOff, e.pid, e.tid, data[:took])
			e.readOff += uint32(took)
			rd.uncommitted += int64(took)
			n += k
			delivered += took
			if ferr != nil {
				var bad *RecordError
				if errors.As(ferr, &bad) {
					off := e.readOff
					return n, rd.chunkErr(j, ChunkHeaderSize+uint64(off), "record at chunk data offset %d: %v", off, bad.Err)
				}
				return n, ferr
			}
			if e.readOff < e.snapLen {
				return n, fmt.Errorf("ring %s: chunk %d: consumer took %d of %d bytes without an error", r.path, j, took, e.snapLen-e.readOff+uint32(took))
			}
		}
		if e.sealed && !e.counted {
			e.counted = true
			rd.stats.ChunksRead++
		}
	}
	rd.snapOpen = false
	rd.setWatermark(rd.stampNow)
	return n, nil
}

// snapshot refreshes the heartbeat, then snapshots every chunk of the
// window (observe), sealing and abandoning those that are due, and
// releases the chunks committed since the last one.
func (rd *Reader) snapshot() error {
	r := rd.r
	// The records' clock first: the heartbeat's store orders it before
	// every load of the snapshot (Watermark).
	rd.stampNow = rd.clock.Now()
	now := monotonicNS()
	atomic.StoreUint64(r.u64(offHeartbeatNS), now)
	atomic.StoreUint32(r.u32(offConsumerPid), rd.pid)
	if lrt := atomic.LoadUint64(r.u64(offLastReadTo)); lrt != rd.base {
		return rd.headerErr(offLastReadTo, "last_read_to changed to %d behind this reader's back (committed %d): another consumer?", lrt, rd.base)
	}
	nc := uint64(r.chunkCount)
	head := atomic.LoadUint64(r.u64(offReserveHead))
	if head < rd.head || head-rd.base > nc {
		return rd.headerErr(offReserveHead, "reserve_head %d is not in [%d, %d]", head, rd.head, rd.base+nc)
	}
	// Snapshot from the highest sequence down (I8). observe tells new
	// chunks by rd.head, the previous snapshot's reserve_head.
	laterMin := uint64(math.MaxUint64)
	for j := head; j > rd.base; {
		j--
		if err := rd.observe(j, now); err != nil {
			return err
		}
		if rd.pollBytes > 0 {
			e := &rd.entries[j%nc]
			if e.readOff < e.snapLen {
				laterMin = min(laterMin, rd.firstStamp(j, e.readOff, e.snapLen))
			}
			e.laterMin = laterMin
		}
	}
	rd.head = head
	if atomic.LoadUint64(r.u64(offNextReadFrom)) < head {
		atomic.StoreUint64(r.u64(offNextReadFrom), head)
	}
	rd.releaseCommitted()
	return nil
}

// firstStamp is the least stamp (ns) of chunk j's records from data
// offset off to end: the first one's, as a thread stamps its records in
// program order, or its free's if it is a REALLOC (stamped before the
// call). A record too short to say gives 0, which only holds the
// watermark back until delivery reports the record malformed.
func (rd *Reader) firstStamp(j uint64, off, end uint32) uint64 {
	d := rd.r.data(j, off, end)
	if len(d) < RecordHeaderSize {
		return 0
	}
	conv := rd.clock.Conv()
	w := binary.LittleEndian.Uint64(d)
	ts := conv.NS(binary.LittleEndian.Uint64(d[8:]))
	if RecordType(w) == RecRealloc && int(uint16(w>>16)) >= reallocSize && len(d) >= reallocSize {
		ts = min(ts, conv.NS(binary.LittleEndian.Uint64(d[reallocOffTSBefore:])))
	}
	return ts
}

// Behind reports whether the last PollChunks or Poll stopped before the
// end of its snapshot (PollBytes): the ring holds records not delivered
// yet that may be stamped long before now (a backlog: a consumer that
// fell behind, or one that took over a ring nobody read for a while).
func (rd *Reader) Behind() bool { return rd.snapOpen }

// Watermark is a time no record delivered after the last PollChunks or
// Poll can be stamped before (ns of the ring's Clock; 0 when nothing is
// known): a consumer that orders events by time can apply those below it
// at once, without waiting for other threads.
//
// Why it holds: producers read the clock inside the record, after the
// CAS that marks their chunk WRITING (ms_rec_open in
// preload/memscope_internal.h). PollChunks reads the clock (now), then,
// behind a full barrier (the heartbeat's atomic store), snapshots
// every chunk. A chunk seen without a record in progress, or not
// claimed yet, will hold only records stamped >= now; a chunk reserved
// after the snapshot read reserve_head likewise. A record in progress
// was stamped after the chunk was last seen quiet (quietAt), or after the
// snapshot before the one that first saw its chunk. Sealed chunks were
// delivered to their end. So the least quietAt of the chunks seen
// WRITING, or now, bounds every record still to come. A chunk's owner
// stamps its records in program order, so a chunk's bound is also no
// earlier than the stamp of its first record: a chunk caught WRITING in
// snapshot after snapshot (a busy thread, and an analyzer that fell
// behind and snapshots seldom) does not hold the watermark back to a
// snapshot long gone. A poll that stops
// before the end of its snapshot (PollBytes) also leaves records of the
// snapshot undelivered: each thread stamps its records in program order,
// so the first one left in each chunk (or its free, for a REALLOC) is the
// least of its chunk, and the least of those bounds them all (laterMin).
func (rd *Reader) Watermark() uint64 { return rd.watermark }

// setPartialWatermark sets Watermark after a delivery that stopped
// before the end of the snapshot: the records left undelivered were
// stamped no earlier than laterMin, and those after the snapshot as for
// a complete one.
func (rd *Reader) setPartialWatermark(laterMin uint64) {
	w := rd.watermark
	rd.setWatermark(rd.stampNow)
	rd.watermark = max(w, min(rd.watermark, laterMin))
}

// setWatermark computes Watermark after a complete snapshot taken at now.
func (rd *Reader) setWatermark(now uint64) {
	w := now
	nc := uint64(rd.r.chunkCount)
	for j := rd.base; j < rd.head; j++ {
		e := &rd.entries[j%nc]
		if e.sealed || e.quietAt >= w {
			continue
		}
		q := e.quietAt
		if e.kind == chunkOwned {
			// Its owner stamps its records in program order: the one in
			// progress, and the next, no earlier than its first.
			q = max(q, rd.firstStamp(j, 0, e.snapLen))
		}
		w = min(w, q)
	}
	rd.snapNow = now
	rd.watermark = max(rd.applySlack(w), rd.watermark)
}

// applySlack lowers a bound by watermarkSlack in an MS_RING_TSC ring.
func (rd *Reader) applySlack(w uint64) uint64 {
	if rd.clock.TSC() {
		w = max(w, watermarkSlack) - watermarkSlack
	}
	return w
}

// watermarkSlack is how far below the bound of setWatermark the
// watermark of an MS_RING_TSC ring stays: a producer's plain rdtsc may
// read the counter before the CAS that marks its chunk WRITING has
// completed (preload/ring.h ms_tsc), by that CAS's latency, a cache miss
// or two: far less than this. Events wait this much longer, no more.
const watermarkSlack = 100_000 // ns

// observe snapshots the chunk with sequence j into its entry, sealing or
// abandoning it if it is due. Every word read from the slot is validated:
// the shared memory is untrusted.
func (rd *Reader) observe(j uint64, now uint64) error {
	r := rd.r
	nc := uint64(r.chunkCount)
	e := &rd.entries[j%nc]
	c := r.chunk(j)
	if !e.valid || e.seq != j {
		consumed := atomic.LoadUint64(c.consumed())
		if consumed > uint64(r.dataCap()) || consumed%8 != 0 {
			return rd.chunkErr(j, chOffConsumed, "consumed offset %d is not a multiple of 8 within the chunk's %d data bytes", consumed, r.dataCap())
		}
		*e = chunkEntry{seq: j, valid: true, readOff: uint32(consumed), commitOff: uint32(consumed), changedAt: now}
		if j >= rd.head {
			// Reserved after the previous snapshot read reserve_head,
			// so after that snapshot's clock: whatever it holds was
			// stamped later.
			e.quietAt = rd.snapNow
		}
		e.lastSeq, e.lastState = math.MaxUint64, math.MaxUint64
	}
	if e.sealed {
		return nil // final: the snapshot cannot change
	}
	// A CAS that fails means the slot moved on: look again (the move resets
	// the idle clock, so the second look does not try again).
	for attempt := 0; attempt < 3; attempt++ {
		seqWord := atomic.LoadUint64(c.seq())
		switch {
		case seqWord == seqClaimed(j):
			st := atomic.LoadUint64(c.state())
			retry, err := rd.observeClaimed(e, c, st, now)
			if err != nil || !retry {
				return err
			}
		case seqWord == seqAbandoned(j):
			if e.readOff != 0 {
				return rd.chunkErr(j, chOffConsumed, "consumed offset %d in an abandoned chunk", e.readOff)
			}
			e.kind, e.sealed, e.snapLen = chunkAbandoned, true, 0
			return nil
		case j < nc && seqWord == 0, j >= nc && (seqWord == seqClaimed(j-nc) || seqWord == seqAbandoned(j-nc)):
			if e.readOff != 0 {
				return rd.chunkErr(j, chOffConsumed, "consumed offset %d in a chunk not claimed yet", e.readOff)
			}
			e.kind, e.snapLen, e.quietAt = chunkUnclaimed, 0, rd.stampNow
			if !rd.idle(e, seqWord, 0, now) {
				return nil
			}
			// Reserved but never claimed for seal_after: the producer died
			// or stalled between its two CASes. Abandon the reservation
			// (I2); a late claim then fails and the producer reserves again.
			if atomic.CompareAndSwapUint64(c.seq(), seqWord, seqAbandoned(j)) {
				e.kind, e.sealed = chunkAbandoned, true
				rd.stats.Abandoned++
				return nil
			}
		default:
			var prev string
			if j >= nc {
				prev = fmt.Sprintf(", or the previous occupant's %#x/%#x", seqClaimed(j-nc), seqAbandoned(j-nc))
			}
			return rd.chunkErr(j, chOffSeq, "seq word %#x is not a claim of sequence %d (want %#x or %#x%s)", seqWord, j, seqClaimed(j), seqAbandoned(j), prev)
		}
	}
	return nil
}

// observeClaimed snapshots a claimed chunk whose state word is st. It
// returns retry if a CAS on the slot failed.
func (rd *Reader) observeClaimed(e *chunkEntry, c chunkHeader, st uint64, now uint64) (retry bool, err error) {
	r := rd.r
	j := e.seq
	nc := uint64(r.chunkCount)
	switch {
	case st == stateInitial(j, nc):
		// Claimed, not initialised: the owner is between its claim and
		// its first CAS on state, and may be writing pid and tid. Seal it
		// after seal_after if the owner is known to be gone, or after the
		// consumer timeout if the owner cannot be identified (I4).
		if e.readOff != 0 {
			return false, rd.chunkErr(j, chOffConsumed, "consumed offset %d in a chunk not initialised yet", e.readOff)
		}
		e.kind, e.snapLen, e.quietAt = chunkUninit, 0, rd.stampNow
		if !rd.idle(e, seqClaimed(j), st, now) {
			return false, nil
		}
		pid, tid := atomic.LoadUint32(c.pid()), atomic.LoadUint32(c.tid())
		ownerGone := pid != 0 && tid != 0 && !rd.ownerAlive(pid, tid)
		if !ownerGone && now-e.changedAt < max(rd.timeoutNS, rd.sealAfterNS) {
			return false, nil
		}
		if atomic.CompareAndSwapUint64(c.state(), st, stateSealed|stateGen(j)) {
			e.sealed = true
			rd.stats.Sealed++
			return false, nil
		}
		return true, nil
	case st == stateFree(j+nc):
		// Reset for the next round by a consumer that stopped before it
		// published last_read_to: consumed and committed, nothing to read.
		e.kind, e.sealed, e.snapLen = chunkReleased, true, e.readOff
		return false, nil
	case st&stateGenField != stateGen(j):
		return false, rd.chunkErr(j, chOffState, "state %#x carries generation %d, want %d for sequence %d",
			st, (st&stateGenField)>>stateGenShift, stateGen(j)>>stateGenShift, j)
	}
	ln := uint32(st & stateLenMask)
	if st&stateLenMask > uint64(r.dataCap()) {
		return false, rd.chunkErr(j, chOffState, "published length %d runs past the chunk's %d data bytes", st&stateLenMask, r.dataCap())
	}
	if ln%8 != 0 {
		return false, rd.chunkErr(j, chOffState, "published length %d is not a multiple of 8", ln)
	}
	if ln < e.readOff {
		return false, rd.chunkErr(j, chOffState, "published length %d is below the consumed offset %d", ln, e.readOff)
	}
	if e.kind != chunkOwned {
		// I3: pid and tid were written before the state was initialised.
		e.kind = chunkOwned
		e.pid, e.tid = atomic.LoadUint32(c.pid()), atomic.LoadUint32(c.tid())
	}
	if off, ok := rd.skip[j]; ok {
		delete(rd.skip, j)
		if off > e.readOff && off <= ln {
			e.readOff = off // delivered before; consumed stays as it was until a Commit
		}
	}
	e.snapLen = ln
	if st&stateWriting == 0 {
		e.quietAt = rd.stampNow
	}
	if st&stateSealed != 0 {
		e.sealed = true
		return false, nil
	}
	if !rd.idle(e, seqClaimed(j), st, now) {
		return false, nil
	}
	next := st | stateSealed
	if st&stateWriting != 0 {
		// I5: never seal under a live writer. A writer that is gone
		// left the record at len incomplete: publish the prefix only.
		if rd.ownerAlive(e.pid, e.tid) {
			return false, nil
		}
		next = (st &^ stateWriting) | stateSealed
	}
	if atomic.CompareAndSwapUint64(c.state(), st, next) {
		e.sealed = true
		rd.stats.Sealed++
		return false, nil
	}
	return true, nil
}

// idle records the slot words just seen and reports whether they have not
// changed for seal_after.
func (rd *Reader) idle(e *chunkEntry, seqWord, st uint64, now uint64) bool {
	if seqWord != e.lastSeq || st != e.lastState {
		e.lastSeq, e.lastState, e.changedAt = seqWord, st, now
		return false
	}
	return now-e.changedAt >= rd.sealAfterNS
}

func (rd *Reader) ownerAlive(pid, tid uint32) bool {
	return rd.processAlive(pid) && rd.threadAlive(pid, tid)
}

// Commit makes everything delivered so far permanent: it stores each
// chunk's read offset in its header (consumed), releases the prefix of
// sealed chunks delivered to their end (state = MS_STATE_FREE of the
// slot's next sequence, consumed = 0, pid = tid = 0, then last_read_to),
// and wakes producers waiting for room.
func (rd *Reader) Commit() (err error) {
	r := rd.r
	if r.mem == nil {
		return fmt.Errorf("ring %s: %w", r.path, errClosed)
	}
	defer r.catchFault(&err, debug.SetPanicOnFault(true))
	// What is committed must be in the journal first (Journal).
	if err := rd.journalFlush(); err != nil {
		return err
	}
	nc := uint64(r.chunkCount)
	for j := rd.base; j < rd.head; j++ {
		e := &rd.entries[j%nc]
		if e.valid && e.seq == j && e.readOff != e.commitOff {
			atomic.StoreUint64(r.chunk(j).consumed(), uint64(e.readOff))
			e.commitOff = e.readOff
		}
	}
	rd.releaseCommitted()
	rd.uncommitted = 0
	rd.stats.Commits++
	return nil
}

// Uncommitted is how many bytes were delivered since the last Commit.
func (rd *Reader) Uncommitted() int64 { return rd.uncommitted }

// releaseCommitted releases the prefix of the window made of sealed
// chunks whose every record is committed: it resets each slot (state =
// MS_STATE_FREE of the slot's next sequence, consumed = 0, pid = tid = 0),
// publishes last_read_to, and wakes producers waiting for room. Releasing
// them changes nothing a Rollback could return to, so Poll does it too: a
// chunk sealed after its records were delivered and committed (the owner
// filled it, or it went idle) is freed even if the caller only commits
// after a Poll that delivered something.
func (rd *Reader) releaseCommitted() {
	r := rd.r
	nc := uint64(r.chunkCount)
	released := false
	for rd.base < rd.head {
		j := rd.base
		e := &rd.entries[j%nc]
		if !e.valid || e.seq != j || !e.sealed || e.commitOff < e.snapLen {
			break
		}
		// Reset before publishing last_read_to (I1). The state goes first:
		// a consumer that dies right after it sees MS_STATE_FREE and knows
		// the chunk was read, whatever consumed says.
		c := r.chunk(j)
		atomic.StoreUint64(c.state(), stateFree(j+nc))
		atomic.StoreUint64(c.consumed(), 0)
		atomic.StoreUint32(c.pid(), 0)
		atomic.StoreUint32(c.tid(), 0)
		rd.base = j + 1
		atomic.StoreUint64(r.u64(offLastReadTo), rd.base)
		e.valid = false
		released = true
	}
	rd.wakeOwed = rd.wakeOwed || released
	// Wake threads waiting for room once a sixteenth of the ring is free
	// or the snapshot is delivered, not at every piece of it: a waiter
	// woken for a few chunks fills them and sleeps again, and each such
	// round trip costs it a context switch and its caches.
	if rd.wakeOwed && (!rd.snapOpen || rd.head-rd.base <= nc-nc/16) {
		rd.wakeOwed = false
		atomic.AddUint32(r.u32(offCommitFutex), 1)
		if atomic.LoadUint32(r.u32(offFullWaiters)) > 0 {
			futexWakeAll(r.u32(offCommitFutex))
		}
	}
}

// Rollback returns to the last commit: the next Poll delivers again
// exactly what was delivered since.
func (rd *Reader) Rollback() error {
	r := rd.r
	if r.mem == nil {
		return fmt.Errorf("ring %s: %w", r.path, errClosed)
	}
	nc := uint64(r.chunkCount)
	for j := rd.base; j < rd.head; j++ {
		if e := &rd.entries[j%nc]; e.valid && e.seq == j {
			e.readOff = e.commitOff
		}
	}
	rd.snapOpen = false
	rd.uncommitted = 0
	if rd.journal != nil {
		if err := rd.journal.Rollback(); err != nil {
			return fmt.Errorf("ring %s: journal: %w", r.path, err)
		}
	}
	return nil
}

// SealProcess seals every chunk of pid in the window now, even one under
// a writer: the caller knows the process has exited (it reaped it), so
// nothing writes any more and only the complete records are published.
func (rd *Reader) SealProcess(pid uint32) {
	r := rd.r
	if r.mem == nil {
		return
	}
	nc := uint64(r.chunkCount)
	head := atomic.LoadUint64(r.u64(offReserveHead))
	if head < rd.base || head-rd.base > nc {
		return // Poll reports it
	}
	for j := rd.base; j < head; j++ {
		c := r.chunk(j)
		if atomic.LoadUint64(c.seq()) != seqClaimed(j) {
			continue
		}
		for {
			st := atomic.LoadUint64(c.state())
			if atomic.LoadUint32(c.pid()) != pid {
				break
			}
			next := (st &^ stateWriting) | stateSealed
			if st == stateInitial(j, nc) {
				next = stateSealed | stateGen(j) // claimed, never initialised (I4)
			} else if st&stateSealed != 0 || st&stateGenField != stateGen(j) || st&stateLenMask > uint64(r.dataCap()) {
				break // sealed, or malformed (Poll reports it)
			}
			if atomic.CompareAndSwapUint64(c.state(), st, next) {
				rd.stats.Sealed++
				break
			}
		}
	}
}

// Pending reports whether the window still holds something that may be
// pid's and is not delivered: a chunk of pid not sealed or not read to
// its end, or a reservation whose owner is not known yet.
func (rd *Reader) Pending(pid uint32) bool {
	r := rd.r
	if r.mem == nil {
		return false
	}
	nc := uint64(r.chunkCount)
	head := atomic.LoadUint64(r.u64(offReserveHead))
	if head < rd.base || head-rd.base > nc {
		return true
	}
	for j := rd.base; j < head; j++ {
		e := &rd.entries[j%nc]
		if j < rd.head && e.valid && e.seq == j && e.sealed && e.readOff >= e.snapLen {
			continue
		}
		c := r.chunk(j)
		seqWord := atomic.LoadUint64(c.seq())
		if seqWord == seqAbandoned(j) {
			continue
		}
		if seqWord != seqClaimed(j) {
			return true // not claimed yet: owner unknown
		}
		st := atomic.LoadUint64(c.state())
		owner := atomic.LoadUint32(c.pid())
		if st == stateInitial(j, nc) && owner == 0 {
			return true
		}
		if owner == pid {
			return true
		}
	}
	return false
}

// Idle reports whether the window is empty: every reserved chunk is
// committed.
func (rd *Reader) Idle() bool {
	if rd.r.mem == nil {
		return true
	}
	return atomic.LoadUint64(rd.r.u64(offReserveHead)) == rd.base
}

// StartedAt is the chunk sequence this Reader began at: non-zero when an
// earlier consumer (a crashed analyzer) had already read and released
// chunks 0..StartedAt-1, whose records this Reader never sees.
func (rd *Reader) StartedAt() uint64 { return rd.startedAt }

// Stats returns the Reader's counters.
func (rd *Reader) Stats() ReaderStats {
	s := rd.stats
	if rd.r.mem != nil {
		s.Dropped = atomic.LoadUint64(rd.r.u64(offDroppedEvents))
	}
	return s
}

// futexWakeAll wakes every process waiting on the futex word at addr. The
// word is in a MAP_SHARED mapping, so this is a shared (not private) futex.
func futexWakeAll(addr *uint32) {
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWake, math.MaxInt32, 0, 0, 0)
}

// processAlive is the default ReaderOptions.ProcessAlive.
func processAlive(pid uint32) bool {
	if pid == 0 || pid > math.MaxInt32 {
		return false
	}
	if err := unix.Kill(int(pid), 0); errors.Is(err, unix.ESRCH) {
		return false
	}
	return !isZombie("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/stat")
}

// threadAlive is the default ReaderOptions.ThreadAlive.
func threadAlive(pid, tid uint32) bool {
	p := "/proc/" + strconv.FormatUint(uint64(pid), 10) + "/task/" + strconv.FormatUint(uint64(tid), 10)
	if _, err := os.Stat(p); err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	return !isZombie(p + "/stat")
}

// isZombie reports whether the /proc stat file says Z (zombie) or X (dead).
func isZombie(statPath string) bool {
	b, err := os.ReadFile(statPath)
	if err != nil {
		return errors.Is(err, os.ErrNotExist)
	}
	// "pid (comm) S ...": comm may contain ") ", so take the last one.
	i := bytes.LastIndex(b, []byte(") "))
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] == 'Z' || b[i+2] == 'X'
}

// Futex operations without FUTEX_PRIVATE_FLAG: the other side is another
// process.
const (
	futexWait = 0 // FUTEX_WAIT
	futexWake = 1 // FUTEX_WAKE
)
