package journal

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReplay: whatever the journal file holds, Replay returns (an error
// or frames whose sizes are within bounds), without a panic, applies
// only whole frames, and restores no state larger than the file.
func FuzzReplay(f *testing.F) {
	dir := f.TempDir()
	seed := filepath.Join(dir, "seed.journal")
	w, err := Create(seed, Header{RingCreatedNS: 77, Root: 1}, 0, nil)
	if err != nil {
		f.Fatal(err)
	}
	w.Taken(0, 0, 1, 2, make([]byte, 16))
	w.Taken(0, 16, 1, 2, make([]byte, 8))
	w.Taken(3, 0, 1, 3, make([]byte, 24))
	if err := w.Publish(); err != nil {
		f.Fatal(err)
	}
	data, err := os.ReadFile(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	// With a checkpoint.
	if err := checkpoint(w, []byte("state!!!"), []ChunkOffset{{Seq: 0, Off: 24}, {Seq: 3, Off: 24}}, false); err != nil {
		f.Fatal(err)
	}
	w.Taken(0, 24, 1, 2, make([]byte, 8))
	w.Note(1, []byte("a note"))
	w.Close()
	if data, err = os.ReadFile(seed); err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add(data[:headerSize])
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		restore := func(state []byte, _ []ChunkOffset, _ bool) error {
			if len(state) > len(b) {
				t.Fatalf("a state of %d bytes from a %d-byte file", len(state), len(b))
			}
			return nil
		}
		_, st, _ := replay(bytes.NewReader(b), int64(len(b)), "fuzz", 77, func(uint64, uint32) bool { return true }, restore, func(pid, tid uint32, data []byte) error {
			if len(data) == 0 || len(data)%8 != 0 || len(data) > maxFrame {
				t.Fatalf("a frame of %d bytes applied", len(data))
			}
			return nil
		}, func(pid uint32, data []byte) error {
			if len(data)%8 != 0 || len(data) > len(b) {
				t.Fatalf("a note of %d bytes from a %d-byte file", len(data), len(b))
			}
			return nil
		})
		if st.Bytes > int64(len(b)) {
			t.Fatalf("replayed %d bytes of a %d-byte file", st.Bytes, len(b))
		}
	})
}
