package journal

import (
	"bufio"
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
}

// Replay reads the journal at path, checks that it belongs to the ring
// ringCreatedNS names, and calls apply, in the journal's order, with
// every frame committed says the dead consumer committed; keep, if set,
// receives the same frames (the new analyzer's journal). It returns the
// journal's header. A journal that is cut short in its last frame ends
// there (that frame was not committed: a Flush precedes every Commit);
// any other damage, or a frame that does not follow the last one of its
// chunk, is an error that names the offset.
func Replay(path string, ringCreatedNS uint64, committed func(seq uint64, end uint32) bool,
	apply func(pid, tid uint32, data []byte) error, keep *Writer) (Header, Stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return Header{}, Stats{}, err
	}
	defer f.Close()
	return replay(bufio.NewReaderSize(f, 1<<20), path, ringCreatedNS, committed, apply, keep)
}

// replay is Replay reading the journal from r (path names it in errors).
func replay(r io.Reader, path string, ringCreatedNS uint64, committed func(seq uint64, end uint32) bool,
	apply func(pid, tid uint32, data []byte) error, keep *Writer) (Header, Stats, error) {
	var st Stats
	hb := make([]byte, headerSize)
	if _, err := io.ReadFull(r, hb); err != nil {
		return Header{}, st, fmt.Errorf("journal %s: header: %w", path, err)
	}
	h, err := decodeHeader(hb)
	if err != nil {
		return Header{}, st, fmt.Errorf("journal %s: %w", path, err)
	}
	if h.RingCreatedNS != ringCreatedNS {
		return h, st, fmt.Errorf("journal %s: written for a ring created at %d, this one was created at %d", path, h.RingCreatedNS, ringCreatedNS)
	}
	if h.Flags&flagLimit != 0 {
		return h, st, fmt.Errorf("journal %s: %w", path, ErrLimit)
	}
	next := map[uint64]uint32{} // per chunk: where its next frame starts
	fb := make([]byte, frameSize)
	data := make([]byte, 0, 64<<10)
	off := int64(headerSize)
	for {
		if _, err := io.ReadFull(r, fb); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return h, st, nil
			}
			return h, st, fmt.Errorf("journal %s: offset %d: %w", path, off, err)
		}
		fr := getFrame(fb)
		if fr.len == 0 || fr.len%8 != 0 || fr.len > maxFrame || uint64(fr.off)+uint64(fr.len) > maxFrame || fr.off%8 != 0 {
			return h, st, fmt.Errorf("journal %s: offset %d: frame of %d bytes at chunk data offset %d: corrupt", path, off, fr.len, fr.off)
		}
		if cap(data) < int(fr.len) {
			data = make([]byte, fr.len)
		}
		data = data[:fr.len]
		if _, err := io.ReadFull(r, data); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return h, st, nil // cut in its last frame: not committed
			}
			return h, st, fmt.Errorf("journal %s: offset %d: %w", path, off, err)
		}
		if want := next[fr.seq]; fr.off != want {
			return h, st, fmt.Errorf("journal %s: offset %d: chunk %d's frame starts at data offset %d, its previous one ended at %d", path, off, fr.seq, fr.off, want)
		}
		next[fr.seq] = fr.off + fr.len
		if committed(fr.seq, fr.off+fr.len) {
			if err := apply(fr.pid, fr.tid, data); err != nil {
				return h, st, fmt.Errorf("journal %s: offset %d (chunk %d): %w", path, off, fr.seq, err)
			}
			if keep != nil {
				// data is reused for the next frame.
				keep.Taken(fr.seq, fr.off, fr.pid, fr.tid, append([]byte(nil), data...))
			}
			st.Frames++
			st.Bytes += int64(fr.len)
		} else {
			st.Skipped++
		}
		off += frameSize + int64(fr.len)
	}
}
