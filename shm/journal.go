package shm

import (
	"fmt"
	"runtime/debug"
	"sync/atomic"
)

// Journal keeps a copy of what a Reader delivers, so that a consumer that
// crashes can be replaced by one that resumes exactly where it was: the
// ring forgets what was committed, the journal does not
// (analyzer/journal).
//
// The Reader keeps one invariant for it: a Commit publishes the
// consumption of a chunk's bytes only after Flush returned, so every
// committed byte was handed to the journal and flushed. Bytes handed to
// the journal and not committed (a crash between the two) are delivered
// again by the next consumer; the journal's reader tells them apart with
// Reader.Committed.
type Journal interface {
	// Taken is called with the bytes of chunk seq from data offset off
	// that the consumer took (whole records), written by thread tid of
	// process pid. data aliases the ring: it stays as it is until the
	// Flush that precedes the next Commit (or until a Rollback), not
	// after.
	Taken(seq uint64, off uint32, pid, tid uint32, data []byte)
	// Flush makes everything Taken so far durable. An error stops the
	// Commit (the bytes stay uncommitted).
	Flush() error
	// Rollback forgets what was Taken since the last Flush (Reader.Rollback
	// delivers it again).
	Rollback() error
}

// SetJournal has the Reader hand j every byte it delivers from now on
// and flush it before each Commit. nil: none.
func (rd *Reader) SetJournal(j Journal) { rd.journal = j }

// Resumed reports whether an earlier consumer had committed records of
// the ring when this Reader attached (chunks released, or records of
// chunks still in the window): the records this Reader will not see.
func (rd *Reader) Resumed() bool { return rd.resumed }

// Committed reports whether the bytes [0, end) of chunk seq's data were
// committed by a consumer: the chunk was released, or its consumed
// offset is at least end. A resuming consumer asks it of what a dead
// one's journal holds.
func (rd *Reader) Committed(seq uint64, end uint32) bool {
	r := rd.r
	switch {
	case r.mem == nil || seq >= rd.startedAt+uint64(r.chunkCount):
		return false
	case seq < rd.startedAt:
		return true
	}
	ok, err := r.chunkCommitted(seq, uint64(end))
	return err == nil && ok
}

// SkipTo tells a Reader that a consumer before it took chunk seq up to
// data offset off, whatever the chunk's consumed offset says (a journal
// checkpoint covers records it did not commit): it delivers each such
// chunk from there. Call it before the first Poll; offsets beyond what a
// chunk holds are ignored.
func (rd *Reader) SkipTo(offsets map[uint64]uint32) {
	rd.skip = offsets
}

// ReadChunks calls fn with every chunk of the window that is not
// released and of which something was delivered (by this Reader, or by
// the consumer it took over from: committed, or SkipTo), and how much:
// where its next record to deliver starts (what a journal's checkpoint
// covers).
func (rd *Reader) ReadChunks(fn func(seq uint64, off uint32)) (err error) {
	r := rd.r
	if r.mem == nil {
		return fmt.Errorf("ring %s: %w", r.path, errClosed)
	}
	defer r.catchFault(&err, debug.SetPanicOnFault(true))
	nc := uint64(r.chunkCount)
	head := min(atomic.LoadUint64(r.u64(offReserveHead)), rd.base+nc)
	for j := rd.base; j < head; j++ {
		if e := &rd.entries[j%nc]; j < rd.head && e.valid && e.seq == j {
			if e.readOff > 0 {
				fn(j, e.readOff)
			}
			continue
		}
		// Not seen yet: what the consumer before committed.
		c := r.chunk(j)
		if atomic.LoadUint64(c.seq()) != seqClaimed(j) {
			continue
		}
		consumed := atomic.LoadUint64(c.consumed())
		if consumed > uint64(r.dataCap()) || consumed%8 != 0 {
			return rd.chunkErr(j, chOffConsumed, "consumed offset %d is not a multiple of 8 within the chunk's %d data bytes", consumed, r.dataCap())
		}
		if off, ok := rd.skip[j]; ok && uint64(off) > consumed {
			consumed = uint64(off) // SkipTo's, not seen yet
		}
		if consumed > 0 {
			fn(j, uint32(consumed))
		}
	}
	return nil
}

// anyCommitted reports whether a chunk of the window [base, head) holds
// committed bytes or was released (NewReader: Resumed).
func (rd *Reader) anyCommitted(head uint64) (bool, error) {
	for j := rd.base; j < head; j++ {
		if ok, err := rd.r.chunkCommitted(j, 1); ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

// chunkCommitted reports whether the slot of chunk seq, in the window,
// says a consumer committed its data up to end bytes: it was released
// (reset for the next lap, last_read_to maybe not published yet), or it
// is still claimed by seq with a consumed offset of end or more.
func (r *Ring) chunkCommitted(seq, end uint64) (ok bool, err error) {
	defer r.catchFault(&err, debug.SetPanicOnFault(true))
	c := r.chunk(seq)
	if atomic.LoadUint64(c.state()) == stateFree(seq+uint64(r.chunkCount)) {
		return true, nil
	}
	return atomic.LoadUint64(c.seq()) == seqClaimed(seq) && atomic.LoadUint64(c.consumed()) >= end, nil
}

// journalTaken hands fn's bytes to the journal.
func (rd *Reader) journalTaken(seq uint64, off uint32, pid, tid uint32, data []byte) {
	if rd.journal != nil && len(data) > 0 {
		rd.journal.Taken(seq, off, pid, tid, data)
	}
}

func (rd *Reader) journalFlush() error {
	if rd.journal == nil {
		return nil
	}
	if err := rd.journal.Flush(); err != nil {
		return fmt.Errorf("ring %s: journal: %w", rd.r.path, err)
	}
	return nil
}
