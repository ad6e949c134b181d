package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// applied is one frame as Replay applied it.
type applied struct {
	pid, tid uint32
	data     string
}

func rec(s string) []byte { // 8 bytes: a stand-in for whole records
	b := make([]byte, 8)
	copy(b, s)
	return b
}

func writeJournal(t *testing.T, path string, frames func(w *Writer)) {
	t.Helper()
	w, err := Create(path, Header{RingCreatedNS: 77, Root: 42, StampBase: 1 << 63, StampMul: 0x15555555}, 0, func(r string) { t.Fatalf("dropped: %s", r) })
	require.NoError(t, err)
	frames(w)
	require.NoError(t, w.Publish())
	require.NoError(t, w.Close())
}

func replayAll(t *testing.T, path string, committed func(seq uint64, end uint32) bool) ([]applied, Header, Stats, error) {
	var got []applied
	h, st, err := Replay(path, 77, committed, func(state []byte, chunks []ChunkOffset, ring bool) error {
		got = append(got, applied{data: fmt.Sprintf("state %s %v ring=%v", state, chunks, ring)})
		return nil
	}, func(pid, tid uint32, data []byte) error {
		got = append(got, applied{pid, tid, string(bytes.TrimRight(data, "\x00"))})
		return nil
	}, func(pid uint32, data []byte) error {
		got = append(got, applied{pid: pid, data: "note " + string(bytes.TrimRight(data, "\x00"))})
		return nil
	})
	return got, h, st, err
}

func TestReplay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ring.journal")
	writeJournal(t, path, func(w *Writer) {
		w.Taken(0, 0, 1, 10, rec("a"))
		w.Taken(1, 0, 1, 11, rec("b"))
		w.Taken(0, 8, 1, 10, append(rec("c"), rec("d")...))
		w.Taken(1, 8, 1, 11, rec("e"))
		require.NoError(t, w.Flush())
	})
	// The ring committed chunk 0 to 24 bytes and chunk 1 to 8.
	committed := func(seq uint64, end uint32) bool { return end <= map[uint64]uint32{0: 24, 1: 8}[seq] }
	got, h, st, err := replayAll(t, path, committed)
	require.NoError(t, err)
	// The header says which ring, and on which line its times are.
	want := Header{RingCreatedNS: 77, Root: 42, StampBase: 1 << 63, StampMul: 0x15555555}
	require.Equal(t, want, h)
	rh, err := ReadHeader(path)
	require.NoError(t, err)
	require.Equal(t, want, rh)
	require.Equal(t, []applied{{1, 10, "a"}, {1, 11, "b"}, {1, 10, "c\x00\x00\x00\x00\x00\x00\x00d"}}, got)
	require.Equal(t, Stats{Frames: 3, Bytes: 32, Skipped: 1}, st)

	// Another ring's journal.
	_, _, err = Replay(path, 78, committed, nil, func(uint32, uint32, []byte) error { return nil }, nil)
	require.ErrorContains(t, err, "written for a ring created at 77, this one was created at 78")

	// Cut in its last frame (a crash in the middle of a write): that
	// frame was not committed, the rest replays.
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	cut := filepath.Join(t.TempDir(), "cut.journal")
	require.NoError(t, os.WriteFile(cut, data[:len(data)-4], 0o600))
	got, _, _, err = replayAll(t, cut, func(uint64, uint32) bool { return true })
	require.NoError(t, err)
	require.Len(t, got, 3)

	// A frame that does not follow its chunk's previous one.
	gap := append([]byte(nil), data...)
	off := headerSize + frameSize + 8 + frameSize + 8 // the third frame: chunk 0 from 8
	binary.LittleEndian.PutUint32(gap[off+12:], 16)
	require.NoError(t, os.WriteFile(cut, gap, 0o600))
	_, _, _, err = replayAll(t, cut, func(uint64, uint32) bool { return true })
	require.ErrorContains(t, err, "chunk 0's frame starts at data offset 16, its previous one ended at 8")

	// Not a journal.
	require.NoError(t, os.WriteFile(cut, []byte("hello, world, this is not a journal file"), 0o600))
	_, _, _, err = replayAll(t, cut, func(uint64, uint32) bool { return true })
	require.ErrorContains(t, err, "not a memscope journal")
}

// TestWriterDrops: a journal past its limit is dropped, file and all,
// so that no resume takes it for whole; Rollback forgets what was not
// flushed.
func TestWriterDrops(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ring.journal")
	var reasons []string
	w, err := Create(path, Header{RingCreatedNS: 77}, headerSize+2*(frameSize+8), func(r string) { reasons = append(reasons, r) })
	require.NoError(t, err)
	require.NoError(t, w.Publish())
	w.Taken(0, 0, 1, 1, rec("a"))
	require.NoError(t, w.Flush())
	w.Taken(0, 8, 1, 1, rec("b"))
	require.NoError(t, w.Rollback())
	w.Taken(0, 8, 1, 1, rec("c"))
	require.NoError(t, w.Flush())
	got, _, _, err := replayAll(t, path, func(uint64, uint32) bool { return true })
	require.NoError(t, err)
	require.Equal(t, []applied{{1, 1, "a"}, {1, 1, "c"}}, got, "b was rolled back")

	// Past its limit: stopped, and a resume is told why.
	w.Taken(0, 16, 1, 1, rec("d"))
	require.NoError(t, w.Flush())
	require.Empty(t, reasons, "not an error")
	require.Equal(t, ErrLimit.Error(), w.Dropped())
	_, _, _, err = replayAll(t, path, func(uint64, uint32) bool { return true })
	require.ErrorIs(t, err, ErrLimit)
	w.Taken(0, 24, 1, 1, rec("e"))
	w.Remove()
	left, _ := os.ReadDir(dir)
	require.Empty(t, left)

	// A write error drops it: the file goes, the callback is told once.
	w, err = Create(path, Header{RingCreatedNS: 77}, 0, func(r string) { reasons = append(reasons, r) })
	require.NoError(t, err)
	require.NoError(t, w.Publish())
	w.f.Close() // the next write fails
	w.Taken(0, 0, 1, 1, rec("a"))
	require.NoError(t, w.Flush())
	require.Len(t, reasons, 1)
	require.Contains(t, reasons[0], "bad file descriptor")
	_, err = os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "a journal with a hole is removed")
}

// TestCheckpoint: a checkpoint replaces the frames before it; the frames
// after it continue each chunk where the checkpoint says it was read
// to; a resume restores the state, then replays those frames.
func TestCheckpoint(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ring.journal")
	w, err := Create(path, Header{RingCreatedNS: 77, Root: 42, StampBase: 1 << 63, StampMul: 0x15555555}, 0, func(r string) { t.Fatalf("dropped: %s", r) })
	require.NoError(t, err)
	require.NoError(t, w.Publish())
	w.Taken(0, 0, 1, 10, rec("a"))
	w.Taken(1, 0, 1, 11, rec("b"))
	require.NoError(t, w.Flush())
	require.Equal(t, int64(2*(frameSize+8)), w.SinceCheckpoint())
	require.NoError(t, checkpoint(w, []byte("after a and b"), []ChunkOffset{{Seq: 0, Off: 8}, {Seq: 1, Off: 8}}, false))
	require.Zero(t, w.SinceCheckpoint())
	w.Taken(0, 8, 1, 10, rec("c"))
	w.Note(5, []byte("verdicts"))
	w.Taken(2, 0, 1, 12, rec("d"))
	require.NoError(t, w.Flush())
	require.NoError(t, w.Close())

	got, h, st, err := replayAll(t, path, func(uint64, uint32) bool { return true })
	require.NoError(t, err)
	require.Equal(t, Header{RingCreatedNS: 77, Root: 42, Flags: flagCheckpoint, StampBase: 1 << 63, StampMul: 0x15555555}, h)
	require.Equal(t, []applied{{data: "state after a and b [{0 8} {1 8}] ring=false"}, {1, 10, "c"}, {pid: 5, data: "note verdicts"}, {1, 12, "d"}}, got)
	require.Equal(t, Stats{Frames: 2, Bytes: 16, Checkpoint: 16 + 2*16 + 13, Notes: 1}, st)
	left, _ := os.ReadDir(dir)
	require.Len(t, left, 1, "the checkpoint's file replaced the journal")

	// A frame after the checkpoint that does not continue its chunk.
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	bad := append([]byte(nil), data...)
	off := headerSize + 16 + 2*16 + 13 // the first frame after the checkpoint
	binary.LittleEndian.PutUint32(bad[off+12:], 0)
	cut := filepath.Join(dir, "bad.journal")
	require.NoError(t, os.WriteFile(cut, bad, 0o600))
	_, _, _, err = replayAll(t, cut, func(uint64, uint32) bool { return true })
	require.ErrorContains(t, err, "chunk 0's frame starts at data offset 0, its previous one ended at 8")

	// A checkpoint that claims more than the file holds.
	binary.LittleEndian.PutUint64(bad[headerSize:], 1<<40)
	require.NoError(t, os.WriteFile(cut, bad, 0o600))
	_, _, _, err = replayAll(t, cut, func(uint64, uint32) bool { return true })
	require.ErrorContains(t, err, "checkpoint: claims 1099511627776 bytes of state")

	// A state the consumer cannot restore.
	_, _, err = Replay(path, 77, func(uint64, uint32) bool { return true }, func([]byte, []ChunkOffset, bool) error { return errors.New("no") }, nil, nil)
	require.ErrorContains(t, err, "checkpoint: no")

	// At its limit: a checkpoint larger than the limit stops the journal.
	w, err = Create(path, Header{RingCreatedNS: 77}, headerSize+64, nil)
	require.NoError(t, err)
	require.NoError(t, w.Publish())
	require.NoError(t, checkpoint(w, make([]byte, 64), nil, false))
	require.Equal(t, ErrLimit.Error(), w.Dropped())
	_, _, _, err = replayAll(t, path, func(uint64, uint32) bool { return true })
	require.ErrorIs(t, err, ErrLimit)
}

// checkpoint writes state as w's checkpoint, streamed as a consumer's
// is, leaving the records after it in the ring if ring, and checks the
// size Checkpoint returns.
func checkpoint(w *Writer, state []byte, chunks []ChunkOffset, ring bool) error {
	ringUpTo := int64(-1)
	if ring {
		ringUpTo = int64(len(state))
	}
	n, err := w.Checkpoint(func(o io.Writer) error {
		for i := 0; i < len(state); i += 3 { // in pieces
			if _, err := o.Write(state[i:min(i+3, len(state))]); err != nil {
				return err
			}
		}
		return nil
	}, chunks, ringUpTo)
	if err == nil && n != int64(len(state)) {
		err = fmt.Errorf("Checkpoint says the state is %d bytes, not %d", n, len(state))
	}
	return err
}

// TestRingCheckpoint: after a checkpoint that leaves the records in the
// ring, the journal keeps notes only; a resume is told so, with the
// chunk offsets to skip to, and a frame there is refused.
func TestRingCheckpoint(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ring.journal")
	w, err := Create(path, Header{RingCreatedNS: 77, Root: 42, StampBase: 1 << 63, StampMul: 0x15555555}, 0, func(r string) { t.Fatalf("dropped: %s", r) })
	require.NoError(t, err)
	require.NoError(t, w.Publish())
	w.Taken(0, 0, 1, 10, rec("a"))
	require.NoError(t, w.Flush())
	require.NoError(t, checkpoint(w, []byte("s"), []ChunkOffset{{Seq: 0, Off: 16}}, true))
	require.True(t, w.RingMode())
	w.Taken(0, 16, 1, 10, rec("b")) // stays in the ring
	w.Note(7, []byte("verdict"))
	require.NoError(t, w.Flush())
	require.Zero(t, w.SinceCheckpoint()-(frameSize+8), "the note only")
	require.NoError(t, w.Close())
	got, h, st, err := replayAll(t, path, func(uint64, uint32) bool { return true })
	require.NoError(t, err)
	require.Equal(t, uint32(flagCheckpoint|flagRing), h.Flags)
	require.Equal(t, []applied{{data: "state s [{0 16}] ring=true"}, {pid: 7, data: "note verdict"}}, got)
	require.Equal(t, int64(1), st.Notes)

	// A frame after such a checkpoint: not written by a Writer.
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	f := make([]byte, frameSize+8)
	frame{len: 8, pid: 1, tid: 10, off: 16, seq: 0}.put(f)
	require.NoError(t, os.WriteFile(path, append(data, f...), 0o600))
	_, _, _, err = replayAll(t, path, func(uint64, uint32) bool { return true })
	require.ErrorContains(t, err, "a frame after a checkpoint that left the records in the ring")
}

// TestJournalFiles: every file a Writer makes beside a ring is a journal
// (not a ring, for ps and gc) and goes with Remove, a checkpoint left
// half-written by an analyzer that died included.
func TestJournalFiles(t *testing.T) {
	ring := filepath.Join(t.TempDir(), "run.1.2.ring")
	for _, suffix := range []string{".journal", ".journal.tmp", ".journal.ckpt"} {
		require.True(t, IsJournal(filepath.Base(ring)+suffix), suffix)
		require.NoError(t, os.WriteFile(ring+suffix, []byte("x"), 0o600))
	}
	require.False(t, IsJournal(filepath.Base(ring)))
	Remove(ring)
	left, err := filepath.Glob(ring + "*")
	require.NoError(t, err)
	require.Empty(t, left)
}

// TestCheckpointsInARow: a checkpoint left half-written by an analyzer
// that died is removed when the journal is created, and checkpoints
// written one after another (their header buffer reused) each carry
// their own chunk list: a shorter list after a longer one is not
// followed by the longer one's tail.
func TestCheckpointsInARow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ring.journal")
	require.NoError(t, os.WriteFile(path+".ckpt", []byte("half a checkpoint"), 0o600))
	w, err := Create(path, Header{RingCreatedNS: 77}, 0, func(r string) { t.Fatalf("dropped: %s", r) })
	require.NoError(t, err)
	require.NoError(t, w.Publish())
	require.NoError(t, checkpoint(w, []byte("first"), []ChunkOffset{{Seq: 0, Off: 8}, {Seq: 1, Off: 16}, {Seq: 2, Off: 24}}, false))
	require.NoError(t, checkpoint(w, []byte("second"), []ChunkOffset{{Seq: 5, Off: 40}}, false))
	require.NoError(t, w.Close())

	got, _, _, err := replayAll(t, path, func(uint64, uint32) bool { return true })
	require.NoError(t, err)
	require.Equal(t, []applied{{data: "state second [{5 40}] ring=false"}}, got)
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, left, 1, "only the journal")
}
