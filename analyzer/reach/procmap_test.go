package reach

import (
	"errors"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadWritableMaps: the mappings PROCMAP_QUERY lists are exactly the
// readable and writable lines of /proc/PID/maps, permissions and paths
// included, and a process that is gone is an error that names it.
func TestReadWritableMaps(t *testing.T) {
	pid := startTwoThreadParker(t)
	_, parked := AwaitThreadParked(pid, pid, 5*time.Second)
	require.True(t, parked, "settled in its wait")

	all, err := ReadMaps(pid)
	require.NoError(t, err)
	want, err := readWritableMapsText(pid)
	require.NoError(t, err)
	require.Less(t, len(want), len(all), "the text's read-only and executable mappings are left out")
	for _, m := range want {
		require.True(t, m.Readable() && m.Writable(), "%+v", m)
	}
	got, err := queryWritableMaps(pid)
	if errors.Is(err, errNoProcmapQuery) {
		t.Skip("this kernel has no PROCMAP_QUERY (Linux 6.11)")
	}
	require.NoError(t, err)
	assert.Equal(t, want, got)
	paths := map[string]bool{}
	for _, m := range got {
		paths[m.Path] = true
	}
	// The main stack, anonymous memory (the second thread's stack), a
	// module's data.
	assert.True(t, paths["[stack]"] && paths[""] && len(paths) >= 4, "paths: %v", paths)

	got, err = ReadWritableMaps(pid)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	gone := exec.Command("/bin/true")
	require.NoError(t, gone.Run())
	_, err = ReadWritableMaps(gone.Process.Pid)
	assert.ErrorContains(t, err, "/maps")
}

func TestPerms(t *testing.T) {
	for _, tt := range []struct {
		flags uint64
		want  string
	}{
		{procmapVMAReadable | procmapVMAWritable, "rw-p"},
		{procmapVMAReadable | procmapVMAWritable | procmapVMAShared, "rw-s"},
		{procmapVMAReadable | procmapVMAExec, "r-xp"},
		{0, "---p"},
	} {
		assert.Equal(t, tt.want, perms(tt.flags), "flags %#x", tt.flags)
	}
}
