// Package journal keeps a copy of every record an analyzer consumed from
// a ring, so that an analyzer that crashes (SIGKILL, OOM) can be replaced
// by one that produces the same reports: `memscope-analyze record --ring`
// replays the dead analyzer's journal, then reads the ring from where it
// stopped (DESIGN.md §10 "Resume").
//
// The ring forgets what a consumer committed; the journal does not. The
// Reader flushes the journal before each Commit (shm.Journal), so every
// committed byte is in it; bytes in it that were not committed (a crash
// between the two) are still in the ring, and Replay leaves them to the
// new Reader (shm.Reader.Committed tells them apart).
//
// File format (little-endian), next to the ring as RING.journal, 0600:
//
//	header      magic "MSJRNL01" | version u32 | header size u32 |
//	            ring created_ns u64 | root pid u32 | flags u32 |
//	            stamp line base u64 | stamp line mul u64         (48 B)
//	checkpoint  (flags & flagCheckpoint) state len u64 |
//	            chunks u64 | chunks * (seq u64 | next offset u64) |
//	            state (state len bytes)
//	frame       data len u32 | pid u32 | tid u32 | data offset u32 |
//	            chunk seq u64 | data (len bytes: whole records)  (24 B + len)
//	note        data len u32 | pid u32 | 0 u32 | 0xffffffff u32 | 0 u64 |
//	            data (len bytes, a multiple of 8: the consumer's)
//
// A frame holds the bytes of one chunk, from a data offset, that the
// analyzer took in one go; a chunk's frames follow each other without a
// gap, from offset 0 or from where the checkpoint says the chunk's next
// frame starts, which Replay checks.
//
// A note says what the consumer decided of a process that the records do
// not say (the verdicts of its leak check, which the process took with
// it), in its place among the frames.
//
// A checkpoint flagged flagRing is followed by notes only: the consumer
// took it before committing the records it covers, so the ring still
// holds them and everything after, until the consumer's next Commit; the
// checkpoint's chunk offsets say what a resuming consumer skips
// (shm.Reader.SkipTo). A consumer whose state is small checkpoints so
// every few MiB of records, and the journal copies no record at all.
//
// A checkpoint stands for every frame before it: its state is the
// consumer's (the session's and the engine's, opaque here) after
// applying them, taken right after a Commit. Writer.Checkpoint writes a
// new file holding it and renames it over the journal, so the journal
// holds the state and the frames since, and stays about the size of the
// state plus what the session lets pass between checkpoints. A writer
// that reaches its limit all the same cuts the file back to its header,
// flagged stopped (flagLimit), and one that cannot write removes it; a
// resume then says its reports are incomplete, and why.
package journal

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strings"
)

const (
	magic      = "MSJRNL01"
	version    = 3
	headerSize = 48
	frameSize  = 24
	// maxFrame bounds a frame's data: a chunk's (shm.MaxChunkSize).
	maxFrame = 1 << 24
)

// Header identifies the ring a journal belongs to and carries what the
// session knew that the records do not say.
type Header struct {
	RingCreatedNS uint64 // the ring's created_ns: which ring
	Root          uint32 // the session's first process (run: PROG), 0 if unknown
	Flags         uint32 // flagLimit
	// StampBase and StampMul are the line the writer converted record
	// stamps to ns on (shm.StampConv.Line; 0, 0 for a CLOCK_MONOTONIC
	// ring): the journal's times are on it, and an analyzer that
	// resumes the ring converts on it too (shm.Clock.Adopt).
	StampBase, StampMul uint64
}

// noteMark is a note's data offset: no frame of a chunk starts there.
const noteMark = 0xffffffff

// Header flags.
const (
	flagLimit      = 0x1 // the writer reached its limit and stopped; nothing follows
	flagCheckpoint = 0x2 // a checkpoint follows the header
	flagRing       = 0x4 // no frame follows the checkpoint: the records after it are in the ring
)

// Path is the journal of the ring at ringPath.
func Path(ringPath string) string { return ringPath + ".journal" }

// IsJournal reports whether a file name in the rings' directory is a
// journal (or one being written, or a checkpoint being written), not a
// ring.
func IsJournal(name string) bool {
	for _, suffix := range []string{".journal", ".journal.tmp", ".journal.ckpt"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

// Remove removes the journal of the ring at ringPath, if any.
func Remove(ringPath string) { removeFiles(Path(ringPath)) }

// removeFiles removes the journal at path and those being written
// beside it (path.tmp; path.ckpt, Writer.Checkpoint's).
func removeFiles(path string) {
	os.Remove(path + ".tmp")
	os.Remove(path + ".ckpt")
	os.Remove(path)
}

func (h Header) encode() []byte {
	b := make([]byte, headerSize)
	copy(b, magic)
	le := binary.LittleEndian
	le.PutUint32(b[8:], version)
	le.PutUint32(b[12:], headerSize)
	le.PutUint64(b[16:], h.RingCreatedNS)
	le.PutUint32(b[24:], h.Root)
	le.PutUint32(b[28:], h.Flags)
	le.PutUint64(b[32:], h.StampBase)
	le.PutUint64(b[40:], h.StampMul)
	return b
}

func decodeHeader(b []byte) (Header, error) {
	if len(b) < len(magic) || string(b[:len(magic)]) != magic {
		return Header{}, fmt.Errorf("bad magic %q: not a memscope journal", b[:min(len(b), len(magic))])
	}
	if len(b) < headerSize {
		return Header{}, fmt.Errorf("%d bytes: shorter than a journal header", len(b))
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[8:]); v != version {
		return Header{}, fmt.Errorf("version %d, this analyzer reads version %d", v, version)
	}
	if hs := le.Uint32(b[12:]); hs != headerSize {
		return Header{}, fmt.Errorf("header size %d, want %d", hs, headerSize)
	}
	return Header{RingCreatedNS: le.Uint64(b[16:]), Root: le.Uint32(b[24:]), Flags: le.Uint32(b[28:]),
		StampBase: le.Uint64(b[32:]), StampMul: le.Uint64(b[40:])}, nil
}

// ReadHeader reads the header of the journal at path.
func ReadHeader(path string) (Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, err
	}
	defer f.Close()
	return readHeader(f, path)
}

// readHeader reads a journal's header from r (path names it in errors).
func readHeader(r io.Reader, path string) (Header, error) {
	b := make([]byte, headerSize)
	n, err := io.ReadFull(r, b)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return Header{}, fmt.Errorf("journal %s: header: %w", path, err)
	}
	h, err := decodeHeader(b[:n])
	if err != nil {
		return Header{}, fmt.Errorf("journal %s: %w", path, err)
	}
	return h, nil
}

// frame is one frame's header.
type frame struct {
	len, pid, tid, off uint32
	seq                uint64
}

func (f frame) put(b []byte) {
	le := binary.LittleEndian
	le.PutUint32(b[0:], f.len)
	le.PutUint32(b[4:], f.pid)
	le.PutUint32(b[8:], f.tid)
	le.PutUint32(b[12:], f.off)
	le.PutUint64(b[16:], f.seq)
}

func getFrame(b []byte) frame {
	le := binary.LittleEndian
	return frame{len: le.Uint32(b[0:]), pid: le.Uint32(b[4:]), tid: le.Uint32(b[8:]), off: le.Uint32(b[12:]), seq: le.Uint64(b[16:])}
}
