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
	// process pid. data aliases the ring: copy it.
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
func (rd *Reader) Committed(seq uint64, end uint32) (ok bool) {
	r := rd.r
	if r.mem == nil {
		return false
	}
	defer func() {
		if recover() != nil { // a fault on the mapping (truncated file)
			ok = false
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	if seq < rd.startedAt {
		return true
	}
	if seq >= rd.startedAt+uint64(r.chunkCount) {
		return false
	}
	nc := uint64(r.chunkCount)
	c := r.chunk(seq)
	if atomic.LoadUint64(c.state()) == stateFree(seq+nc) {
		return true // released, last_read_to not published yet
	}
	if atomic.LoadUint64(c.seq()) != seqClaimed(seq) {
		return false
	}
	return atomic.LoadUint64(c.consumed()) >= uint64(end)
}

// anyCommitted reports whether a chunk of the window [base, head) holds
// committed bytes or was released (NewReader: Resumed).
func (rd *Reader) anyCommitted(head uint64) (found bool, err error) {
	r := rd.r
	defer r.catchFault(&err, debug.SetPanicOnFault(true))
	nc := uint64(r.chunkCount)
	for j := rd.base; j < head; j++ {
		c := r.chunk(j)
		if atomic.LoadUint64(c.state()) == stateFree(j+nc) ||
			atomic.LoadUint64(c.seq()) == seqClaimed(j) && atomic.LoadUint64(c.consumed()) > 0 {
			return true, nil
		}
	}
	return false, nil
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
