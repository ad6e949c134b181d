package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Writer appends frames to a journal: an shm.Journal. It never fails a
// Commit: when it cannot keep the journal it drops it (the file cut to a
// header flagged stopped at its limit, or removed after a write error)
// and tells the onDrop callback of a write error once.
type Writer struct {
	f    *os.File
	path string
	hdr  Header
	// iov is what is to be written, in order: frame headers (in hdrs)
	// and the frames' data, which aliases the ring (written before the
	// Commit that lets producers reuse it: no copy).
	iov     [][]byte
	hdrs    []byte
	buf     int64 // bytes in iov
	written int64 // bytes in the file
	flushed int64 // file size at the last Flush (Rollback returns to it)
	limit   int64
	dropped string // why the journal was dropped; "" while kept
	public  bool   // renamed to path (Publish)
	onDrop  func(reason string)
	// base is the file's size when its last checkpoint was written (the
	// header's when there is none).
	base int64
	// ring: the last checkpoint said the records after it stay in the
	// ring (flagRing): Taken keeps nothing, only notes are written.
	ring bool
	// ckptHead is the last checkpoint's header and chunk list, its
	// memory reused (in ring mode a checkpoint is written every few MB
	// of records: 176 a second in make bench's threads 2 row).
	ckptHead []byte
}

// writeAt is how much the Writer gathers before writing; maxIOV how
// many pieces one writev takes (IOV_MAX).
const (
	writeAt = 4 << 20
	maxIOV  = 1024
)

// Create starts the journal at path (replacing any file there) for the
// ring h names. limit bounds its size in bytes (0: none); onDrop, if set,
// is told once why the journal was dropped.
func Create(path string, h Header, limit int64, onDrop func(reason string)) (*Writer, error) {
	tmp := path + ".tmp"
	// One left by an analyzer that died while it resumed is ours now, and
	// so is a checkpoint one died writing (Checkpoint's temporary file).
	for _, old := range []string{tmp, path + ".ckpt"} {
		if err := os.Remove(old); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("journal: %w", err)
		}
	}
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	w := &Writer{f: f, path: path, hdr: h, limit: limit, onDrop: onDrop, hdrs: make([]byte, 0, maxIOV/2*frameSize)}
	w.add(h.encode())
	if err := w.write(); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("journal %s: %w", tmp, err)
	}
	w.flushed, w.base = w.written, w.written
	return w, nil
}

// SinceCheckpoint is how many bytes of frames the journal took since its
// last checkpoint (since its start if none).
func (w *Writer) SinceCheckpoint() int64 { return w.written + w.buf - w.base }

// ChunkOffset says where the next frame of a chunk starts: what the
// consumer had read of it (shm.Reader.ReadChunks).
type ChunkOffset struct {
	Seq uint64
	Off uint32
}

// Checkpoint replaces every frame so far by the state writeState writes,
// what applying them gave the caller, and returns its size: it writes a
// journal holding the header and the checkpoint, renames it over this
// one, and appends the next frames to it. The state is streamed to the
// file, not held in memory. chunks are the read offsets of the chunks
// read in part or whole and not released: the state covers the records
// before them. A state of at most ringUpTo bytes leaves the records after
// it in the ring (ring mode, RingMode): the caller calls Checkpoint
// before it commits what the state covers, the journal keeps no frame
// after the checkpoint (the ring keeps the records until the next Commit,
// and a resume skips what the checkpoint covers), and notes are still
// written. A larger one is a checkpoint taken right after a Commit (which
// the journal's Flush preceded), frames following. If it cannot write
// the new journal, it says why and the journal goes on as it was; one
// that would pass the limit is stopped.
func (w *Writer) Checkpoint(writeState func(io.Writer) error, chunks []ChunkOffset, ringUpTo int64) (int64, error) {
	if w.dropped != "" {
		return 0, nil
	}
	if err := w.Flush(); err != nil || w.dropped != "" {
		return 0, err
	}
	h := w.hdr
	h.Flags |= flagCheckpoint
	le := binary.LittleEndian
	// The state's length and the ring flag are known once it is written:
	// the header and the length are written again then.
	b := append(w.ckptHead[:0], h.encode()...)
	b = le.AppendUint64(b, 0)
	b = le.AppendUint64(b, uint64(len(chunks)))
	for _, c := range chunks {
		b = le.AppendUint64(b, c.Seq)
		b = le.AppendUint64(b, uint64(c.Off))
	}
	name := w.path
	if !w.public {
		name += ".tmp"
	}
	w.ckptHead = b
	tmp := w.path + ".ckpt" // none left by a dead analyzer: Create removed it
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("journal checkpoint: %w", err)
	}
	state := &countingWriter{w: f}
	_, err = f.Write(b)
	if err == nil {
		err = writeState(state)
	}
	ring := state.n <= ringUpTo
	if ring {
		h.Flags |= flagRing
	}
	if err == nil {
		_, err = f.WriteAt(le.AppendUint64(h.encode(), uint64(state.n)), 0)
	}
	total := int64(len(b)) + state.n
	if err == nil && w.limit > 0 && total > w.limit {
		f.Close()
		os.Remove(tmp)
		w.stop()
		return state.n, nil
	}
	if err == nil {
		err = os.Rename(tmp, name)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return state.n, fmt.Errorf("journal checkpoint %s: %w", tmp, err)
	}
	w.f.Close()
	w.f = f
	w.written, w.flushed, w.base = total, total, total
	w.ring = ring
	return state.n, nil
}

// countingWriter counts what it writes to w.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// RingMode reports whether the last checkpoint left the records after it
// in the ring (Checkpoint's ring): the caller commits only after the
// next checkpoint.
func (w *Writer) RingMode() bool { return w.ring && w.dropped == "" }

// Publish makes the journal the ring's (renames it over path): until
// then a resume does not see it. Replay's frames are in it by then.
func (w *Writer) Publish() error {
	if w.dropped != "" {
		return nil
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if w.dropped != "" {
		return nil
	}
	if err := os.Rename(w.path+".tmp", w.path); err != nil {
		w.drop(fmt.Sprintf("cannot publish it: %v", err))
		return nil
	}
	w.public = true
	return nil
}

// Taken appends a frame (shm.Journal). data must stay as it is until
// the next Flush (the Reader's data does: it is the ring's, which only
// a Commit releases, after the Flush).
func (w *Writer) Taken(seq uint64, off uint32, pid, tid uint32, data []byte) {
	if w.ring || !w.room(frameSize+int64(len(data)), 2, frameSize) {
		return
	}
	n := len(w.hdrs)
	w.hdrs = w.hdrs[:n+frameSize]
	frame{len: uint32(len(data)), pid: pid, tid: tid, off: off, seq: seq}.put(w.hdrs[n:])
	w.add(w.hdrs[n : n+frameSize : n+frameSize])
	w.add(data)
}

// Note appends a note of the consumer's own (about process pid, or 0),
// what replaying the records cannot say, in its place among the frames;
// the next Flush writes it. data is copied.
func (w *Writer) Note(pid uint32, data []byte) {
	padded := make([]byte, frameSize+(len(data)+7)&^7)
	if !w.room(int64(len(padded)), 1, 0) {
		return
	}
	frame{len: uint32(len(padded) - frameSize), pid: pid, off: noteMark}.put(padded)
	copy(padded[frameSize:], data)
	w.add(padded)
}

// room readies the Writer to gather n more bytes in pieces more pieces,
// hdrBytes of them in hdrs: it stops the journal at its limit and writes
// out what it gathered when full. It reports whether to gather them.
func (w *Writer) room(n int64, pieces, hdrBytes int) bool {
	if w.dropped != "" {
		return false
	}
	if w.limit > 0 && w.written+w.buf+n > w.limit {
		w.stop()
		return false
	}
	if len(w.iov)+pieces > maxIOV || len(w.hdrs)+hdrBytes > cap(w.hdrs) || w.buf >= writeAt {
		if err := w.write(); err != nil {
			w.drop(err.Error())
			return false
		}
	}
	return true
}

func (w *Writer) add(b []byte) {
	w.iov = append(w.iov, b)
	w.buf += int64(len(b))
}

// Flush writes what was Taken (shm.Journal). No fsync: the journal
// outlives the analyzer's process, not the machine (nor does the ring,
// in memory).
func (w *Writer) Flush() error {
	if w.dropped != "" {
		return nil
	}
	if err := w.write(); err != nil {
		w.drop(err.Error())
		return nil
	}
	w.flushed = w.written
	return nil
}

// Rollback forgets what was Taken since the last Flush (shm.Journal).
func (w *Writer) Rollback() error {
	if w.dropped != "" {
		return nil
	}
	w.reset()
	if w.written != w.flushed {
		if err := w.f.Truncate(w.flushed); err != nil {
			w.drop(err.Error())
			return nil
		}
		if _, err := w.f.Seek(w.flushed, 0); err != nil {
			w.drop(err.Error())
			return nil
		}
		w.written = w.flushed
	}
	return nil
}

// Abandon drops the journal (its file goes): a resume will say its
// reports are incomplete, and why.
func (w *Writer) Abandon(reason string) {
	if w.dropped == "" {
		w.drop(reason)
	}
}

// Dropped says why the journal was dropped ("" while it is kept).
func (w *Writer) Dropped() string { return w.dropped }

// Close closes the journal, keeping the file (the ring is kept).
func (w *Writer) Close() error {
	if w.f == nil {
		return nil
	}
	err := w.Flush()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	return err
}

// Remove closes the journal and removes the file (the ring is gone).
func (w *Writer) Remove() {
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
	removeFiles(w.path)
}

// write writes iov out with writev: no copy in this process.
func (w *Writer) write() error {
	defer w.reset()
	iov := w.iov
	for len(iov) > 0 {
		n, err := unix.Writev(int(w.f.Fd()), iov[:min(len(iov), maxIOV)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		w.written += int64(n)
		// Skip what was written, maybe part of a piece (no piece is
		// empty: frames have data).
		for n > 0 {
			if n >= len(iov[0]) {
				n -= len(iov[0])
				iov = iov[1:]
			} else {
				iov[0] = iov[0][n:]
				n = 0
			}
		}
	}
	return nil
}

// reset forgets the pieces gathered (written or rolled back).
func (w *Writer) reset() {
	clear(w.iov) // no reference to the ring's memory
	w.iov = w.iov[:0]
	w.hdrs = w.hdrs[:0]
	w.buf = 0
}

// stop gives the journal up at its limit: the file keeps its header,
// flagged, so that a resume says why it cannot replay it (or goes, if
// that cannot be written).
func (w *Writer) stop() {
	w.dropped = ErrLimit.Error()
	w.reset()
	h := w.hdr
	h.Flags |= flagLimit
	err := w.f.Truncate(0)
	if err == nil {
		_, err = w.f.WriteAt(h.encode(), 0)
	}
	w.f.Close()
	w.f = nil
	if err == nil && !w.public {
		// In place of the journal a resume would otherwise replay.
		err = os.Rename(w.path+".tmp", w.path)
	}
	if err != nil {
		removeFiles(w.path)
	}
}

// drop gives the journal up after a write error: the file goes, so that
// no resume takes a journal with a hole for complete.
func (w *Writer) drop(reason string) {
	w.dropped = reason
	w.reset()
	w.f.Truncate(0)
	w.f.Close()
	w.f = nil
	removeFiles(w.path)
	if w.onDrop != nil {
		w.onDrop(reason)
	}
}
