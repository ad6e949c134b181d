package symbolize

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDiskCache: frames resolved with DWARF are kept per build ID across
// Symbolizers, and a later one answers from the cache without opening
// the object (its path is gone); what another build of memscope wrote,
// or a damaged file, is ignored; a module without DWARF is not cached.
func TestDiskCache(t *testing.T) {
	p := buildInline(t, t.TempDir(), "-O2", "-gdwarf-5")
	id := elfBuildID(t, p.exe)
	cache := t.TempDir()

	first := New(Options{DebugDirs: []string{t.TempDir()}, CacheDir: cache})
	want := map[string][]Frame{}
	for _, label := range inlineLabels {
		fr, err := first.Symbolize(Module{Path: p.exe, BuildID: id}, p.probes[label].addr)
		require.NoError(t, err)
		require.Equal(t, p.want(t, label), fr, label)
		want[label] = fr
	}
	require.NoError(t, first.SaveCache())
	first.Close()
	file := filepath.Join(cache, hex.EncodeToString(id)+".sym")
	fi, err := os.Stat(file)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	// The object is gone: only the cache can answer.
	gone := Module{Path: filepath.Join(t.TempDir(), "removed"), BuildID: id}
	second := New(Options{CacheDir: cache})
	for _, label := range inlineLabels {
		fr, err := second.Symbolize(gone, p.probes[label].addr)
		require.NoError(t, err, label)
		assert.Equal(t, want[label], fr, label)
	}
	assert.Empty(t, second.modules, "answered from the cache without opening a module")
	// An address not in the cache opens the module (here: it is missing).
	_, err = second.Symbolize(gone, p.probes["main"].addr+1)
	require.Error(t, err)

	// Written by another build of memscope: ignored.
	other := newDiskCache(cache)
	other.stamp = "another memscope"
	assert.Empty(t, other.read(hex.EncodeToString(id)))
	// Damaged: ignored, and replaced at the next save.
	require.NoError(t, os.WriteFile(file, []byte("not a cache"), 0o600))
	third := New(Options{CacheDir: cache})
	_, err = third.Symbolize(gone, p.probes["leaf"].addr)
	require.Error(t, err, "a damaged cache answered")
	fourth := New(Options{CacheDir: cache})
	_, err = fourth.Symbolize(Module{Path: p.exe, BuildID: id}, p.probes["leaf"].addr)
	require.NoError(t, err)
	require.NoError(t, fourth.SaveCache())
	fifth := New(Options{CacheDir: cache})
	fr, err := fifth.Symbolize(gone, p.probes["leaf"].addr)
	require.NoError(t, err)
	assert.Equal(t, want["leaf"], fr)

	// Without DWARF (stripped of it), results are not kept.
	stripped := filepath.Join(t.TempDir(), "stripped")
	runCmd(t, p.dir, needTool(t, "objcopy"), "--strip-debug", p.exe, stripped)
	nodwarf := t.TempDir()
	s := New(Options{DebugDirs: []string{t.TempDir()}, CacheDir: nodwarf})
	_, err = s.Symbolize(Module{Path: stripped, BuildID: id}, p.probes["main"].addr)
	require.ErrorIs(t, err, ErrNoDebugInfo)
	require.NoError(t, s.SaveCache())
	entries, err := os.ReadDir(nodwarf)
	require.NoError(t, err)
	assert.Empty(t, entries)
}
