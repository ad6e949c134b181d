package shm

import (
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// recordingJournal is a Journal that keeps what it was given, flushed or
// not, as a consumer's journal would.
type recordingJournal struct {
	taken, flushed []takenBytes
	flushes        int
}

type takenBytes struct {
	seq      uint64
	off, end uint32
}

func (j *recordingJournal) Taken(seq uint64, off uint32, pid, tid uint32, data []byte) {
	j.taken = append(j.taken, takenBytes{seq, off, off + uint32(len(data))})
}
func (j *recordingJournal) Flush() error {
	j.flushed = append(j.flushed, j.taken...)
	j.taken = nil
	j.flushes++
	return nil
}
func (j *recordingJournal) Rollback() error { j.taken = nil; return nil }

// TestJournalAndResume: the Reader hands every byte it delivers to its
// journal and flushes it before each Commit; a Reader attached after
// another committed says so (Resumed) and tells committed bytes
// (Committed) from those it will deliver again.
func TestJournalAndResume(t *testing.T) {
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 8 * MinChunkSize})
	c := attach(t, r, false)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w := c.NewWriter(uint32(os.Getpid()), uint32(unix.Gettid()))
	defer w.Free()

	first, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)
	require.False(t, first.Resumed(), "a fresh ring")
	j := &recordingJournal{}
	first.SetJournal(j)
	for i := uint64(0); i < 10; i++ {
		require.True(t, w.AppendFree(i+1, 0x1000+i))
	}
	n, err := first.Poll(func(Record) error { return nil })
	require.NoError(t, err)
	require.Equal(t, 10, n)
	require.Equal(t, []takenBytes{{0, 0, 10 * 24}}, j.taken, "delivered, not flushed yet")
	require.NoError(t, first.Commit())
	require.Equal(t, []takenBytes{{0, 0, 240}}, j.flushed)
	require.Empty(t, j.taken)

	// Five more, delivered and not committed: the first reader "dies".
	for i := uint64(0); i < 5; i++ {
		require.True(t, w.AppendFree(20+i, 0x2000+i))
	}
	_, err = first.Poll(func(Record) error { return nil })
	require.NoError(t, err)
	require.Equal(t, []takenBytes{{0, 240, 360}}, j.taken)

	second, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)
	require.True(t, second.Resumed())
	require.True(t, second.Committed(0, 240))
	require.False(t, second.Committed(0, 360), "delivered but not committed")
	require.False(t, second.Committed(1, 8), "a chunk not reserved yet")
	var again []uint64
	_, err = second.Poll(func(rec Record) error {
		f, err := rec.Free()
		again = append(again, f.Ptr)
		return err
	})
	require.NoError(t, err)
	require.Equal(t, []uint64{0x2000, 0x2001, 0x2002, 0x2003, 0x2004}, again, "what was not committed comes again")
}
