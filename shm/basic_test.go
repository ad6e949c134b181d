package shm

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"memscope/shm/internal/cring"
)

// newTestRing creates a ring in a fresh private directory.
func newTestRing(t testing.TB, opts Options) *Ring {
	t.Helper()
	path := filepath.Join(privateDir(t), "ring")
	r, err := Create(path, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

// privateDir returns a fresh directory with mode 0700.
func privateDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o700))
	return dir
}

// attach maps r through the C writer.
func attach(t testing.TB, r *Ring, lossy bool) *cring.Ring {
	t.Helper()
	c, err := cring.Attach(r.Path(), lossy)
	require.NoError(t, err)
	t.Cleanup(c.Detach)
	return c
}

func TestHappyPath(t *testing.T) {
	r := newTestRing(t, Options{ChunkSize: 4096, Size: 8 * 4096})
	c := attach(t, r, false)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w := c.NewWriter(uint32(os.Getpid()), uint32(unix.Gettid()))
	defer w.Free()
	for i := uint64(0); i < 10; i++ {
		require.True(t, w.AppendAlloc(i, 0x1000+i, i, 0, 1, 0))
	}
	rd, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)
	var got []uint64
	n, err := rd.Poll(func(rec Record) error {
		a, err := rec.Alloc()
		require.NoError(t, err)
		require.Equal(t, uint32(os.Getpid()), rec.Pid)
		got = append(got, a.Ptr)
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 10, n)
	require.Len(t, got, 10)
	require.NoError(t, rd.Commit())
	require.Equal(t, uint64(1), r.Info().ReserveHead)
	require.Equal(t, uint64(0), r.Info().LastReadTo)
	w.Seal()
	_, err = rd.Poll(func(Record) error { return nil })
	require.NoError(t, err)
	require.NoError(t, rd.Commit())
	require.Equal(t, uint64(1), r.Info().LastReadTo)
	require.True(t, rd.Idle())
}
