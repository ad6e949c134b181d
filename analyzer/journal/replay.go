package journal

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrLimit: the journal's writer reached its limit and stopped keeping it.
var ErrLimit = errors.New("its writer reached its limit (MEMSCOPE_JOURNAL) and stopped it")

// Stats is what Replay replayed.
type Stats struct {
	Frames, Bytes int64 // committed frames applied, and their data bytes
	Skipped       int64 // frames the ring says were not committed (it delivers them again)
	Checkpoint    int64 // bytes of the checkpoint the frames follow (0: none)
	Notes         int64 // notes applied
}

// Restore takes a journal's checkpoint: the consumer's state, the chunks
// it had read and how far (the frames or, with ring, the ring's records
// that follow start there).
type Restore func(state []byte, chunks []ChunkOffset, ring bool) error

// readCheckpoint reads the checkpoint that follows the header into next
// (where each chunk's next frame starts) and restore, and returns its
// size. size, the journal's, bounds what its counts may claim.
func readCheckpoint(r io.Reader, size int64, next map[uint64]uint32, ring bool, restore Restore) (int64, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, err
	}
	le := binary.LittleEndian
	stateLen, chunks := le.Uint64(b[:]), le.Uint64(b[8:])
	left := uint64(max(size-headerSize-16, 0))
	if chunks > left/16 || stateLen > left-chunks*16 {
		return 0, fmt.Errorf("claims %d bytes of state and %d chunks, in a file of %d bytes", stateLen, chunks, size)
	}
	chunkOffs := make([]ChunkOffset, 0, chunks)
	for range chunks {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, err
		}
		seq, off := le.Uint64(b[:]), le.Uint64(b[8:])
		if off == 0 || off%8 != 0 || off >= maxFrame {
			return 0, fmt.Errorf("chunk %d read to offset %d", seq, off)
		}
		next[seq] = uint32(off)
		chunkOffs = append(chunkOffs, ChunkOffset{Seq: seq, Off: uint32(off)})
	}
	state := make([]byte, stateLen)
	if _, err := io.ReadFull(r, state); err != nil {
		return 0, err
	}
	if restore == nil {
		return 0, errors.New("nothing to restore it into")
	}
	if err := restore(state, chunkOffs, ring); err != nil {
		return 0, err
	}
	return int64(16 + chunks*16 + stateLen), nil
}

// Replay reads the journal at path, checks that it belongs to the ring
// ringCreatedNS names, hands its checkpoint, if it has one, to restore,
// and calls, in the journal's order, apply with every frame committed
// says the dead consumer committed and note with every note (Writer.Note).
// It returns the journal's header. A journal that is cut short in its
// last frame ends there (that frame was not committed: a Flush precedes
// every Commit); any other damage, or a frame that does not follow the
// last one of its chunk, is an error that names the offset.
func Replay(path string, ringCreatedNS uint64, committed func(seq uint64, end uint32) bool,
	restore Restore, apply func(pid, tid uint32, data []byte) error, note func(pid uint32, data []byte) error) (Header, Stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, Stats{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Header{}, Stats{}, err
	}
	return replay(bufio.NewReaderSize(f, 1<<20), fi.Size(), path, ringCreatedNS, committed, restore, apply, note)
}

// replay is Replay reading the journal from r, of size bytes (path
// names it in errors).
func replay(r io.Reader, size int64, path string, ringCreatedNS uint64, committed func(seq uint64, end uint32) bool,
	restore Restore, apply func(pid, tid uint32, data []byte) error, note func(pid uint32, data []byte) error) (Header, Stats, error) {
	var st Stats
	h, err := readHeader(r, path)
	if err != nil {
		return Header{}, st, err
	}
	if h.RingCreatedNS != ringCreatedNS {
		return h, st, fmt.Errorf("journal %s: written for a ring created at %d, this one was created at %d", path, h.RingCreatedNS, ringCreatedNS)
	}
	if h.Flags&flagLimit != 0 {
		return h, st, fmt.Errorf("journal %s: %w", path, ErrLimit)
	}
	next := map[uint64]uint32{} // per chunk: where its next frame starts
	off := int64(headerSize)
	if h.Flags&flagCheckpoint != 0 {
		n, err := readCheckpoint(r, size, next, h.Flags&flagRing != 0, restore)
		if err != nil {
			return h, st, fmt.Errorf("journal %s: checkpoint: %w", path, err)
		}
		off += n
		st.Checkpoint = n
	}
	fb := make([]byte, frameSize)
	data := make([]byte, 0, 64<<10)
	for {
		if _, err := io.ReadFull(r, fb); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return h, st, nil
			}
			return h, st, fmt.Errorf("journal %s: offset %d: %w", path, off, err)
		}
		fr := getFrame(fb)
		if fr.off == noteMark {
			if fr.len%8 != 0 || int64(fr.len) > size-off-frameSize || fr.tid != 0 || fr.seq != 0 {
				return h, st, fmt.Errorf("journal %s: offset %d: note of %d bytes: corrupt", path, off, fr.len)
			}
			b := make([]byte, fr.len)
			if cut, err := readFrameData(r, b); cut || err != nil {
				return h, st, wrapAt(path, off, err)
			}
			if note == nil {
				return h, st, fmt.Errorf("journal %s: offset %d: a note, and nothing to apply it to", path, off)
			}
			if err := note(fr.pid, b); err != nil {
				return h, st, fmt.Errorf("journal %s: offset %d (note of pid %d): %w", path, off, fr.pid, err)
			}
			st.Notes++
			off += frameSize + int64(fr.len)
			continue
		}
		if h.Flags&flagRing != 0 {
			return h, st, fmt.Errorf("journal %s: offset %d: a frame after a checkpoint that left the records in the ring", path, off)
		}
		if fr.len == 0 || fr.len%8 != 0 || fr.len > maxFrame || uint64(fr.off)+uint64(fr.len) > maxFrame || fr.off%8 != 0 {
			return h, st, fmt.Errorf("journal %s: offset %d: frame of %d bytes at chunk data offset %d: corrupt", path, off, fr.len, fr.off)
		}
		if cap(data) < int(fr.len) {
			data = make([]byte, fr.len)
		}
		data = data[:fr.len]
		if cut, err := readFrameData(r, data); cut || err != nil {
			return h, st, wrapAt(path, off, err)
		}
		if want := next[fr.seq]; fr.off != want {
			return h, st, fmt.Errorf("journal %s: offset %d: chunk %d's frame starts at data offset %d, its previous one ended at %d", path, off, fr.seq, fr.off, want)
		}
		next[fr.seq] = fr.off + fr.len
		if committed(fr.seq, fr.off+fr.len) {
			if err := apply(fr.pid, fr.tid, data); err != nil {
				return h, st, fmt.Errorf("journal %s: offset %d (chunk %d): %w", path, off, fr.seq, err)
			}
			st.Frames++
			st.Bytes += int64(fr.len)
		} else {
			st.Skipped++
		}
		off += frameSize + int64(fr.len)
	}
}

// readFrameData reads a frame's data into b; cut says the journal ends
// in it (the frame was being written when its writer died: it was not
// committed, and the journal ends there).
func readFrameData(r io.Reader, b []byte) (cut bool, err error) {
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return true, nil
		}
		return false, err
	}
	return false, nil
}

// wrapAt names the journal and the offset in err (nil stays nil).
func wrapAt(path string, off int64, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("journal %s: offset %d: %w", path, off, err)
}
