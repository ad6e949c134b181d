package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/shm"
)

// TestRealPrograms runs programs nobody here wrote with and without the
// library: stdout, stderr and the exit status must be byte-identical, and
// the ring must hold their allocations. A program that is not installed
// is skipped.
func TestRealPrograms(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "data.txt"), bytes.Repeat([]byte("memscope real program test\n"), 500), 0o644))
	input := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), 2000)
	tests := []struct {
		name   string
		argv   []string
		stdin  []byte
		noHeap bool // allocates nothing (valgrind agrees): only PROCESS/MODULE records
	}{
		{"python3", []string{"python3", "-c", "import json, sys\nd = {str(i): list(range(i % 7)) for i in range(2000)}\nprint(len(json.dumps(d, sort_keys=True)))\nsys.exit(3)"}, nil, false},
		{"perl", []string{"perl", "-e", `my %h = map { $_ => [$_ * 2] } 1 .. 5000; print scalar(keys %h), "\n"; exit 4`}, nil, false},
		{"bash pipeline non-zero exit", []string{"bash", "-c", `seq 1 3000 | sort -rn | head -3; printf 'a\nb\n' | grep -q zzz`}, nil, false},
		{"sh -c", []string{"sh", "-c", `x=0; for i in 1 2 3 4 5; do x=$((x + i)); done; echo "sum $x"; exit 5`}, nil, false},
		{"awk", []string{"awk", `BEGIN { for (i = 0; i < 5000; i++) a[i] = i * i; s = 0; for (k in a) s += a[k]; print s }`}, nil, false},
		{"gzip", []string{"gzip", "-9", "-n", "-c"}, input, true},
		{"git --version", []string{"git", "--version"}, nil, false},
		{"timeout", []string{"timeout", "5", "sh", "-c", "sleep 0.2; echo slept"}, nil, false},
		{"sqlite3", []string{"sqlite3", ":memory:", "create table t(x); insert into t values (1), (2), (40); select sum(x), count(*) from t;"}, nil, false},
		{"tar", []string{"tar", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner", "--format=ustar", "-cf", "-", "-C", dir, "data.txt"}, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := exec.LookPath(tc.argv[0]); err != nil {
				t.Skipf("%s not installed", tc.argv[0])
			}
			checkUnchanged(t, tc.argv, runOpts{Stdin: tc.stdin, Dir: dir}, !tc.noHeap)
		})
	}
	// Programs that break when a profiler adds threads or children.
	for _, name := range []string{"sigsuspend", "signalfd"} {
		t.Run(name, func(t *testing.T) {
			checkUnchanged(t, []string{program(t, name)}, runOpts{}, true)
		})
	}
}

func checkUnchanged(t *testing.T, argv []string, o runOpts, allocates bool) {
	t.Helper()
	want := bare(t, argv, o)
	got := traced(t, argv, o)
	assert.Equal(t, want.ExitCode, got.ExitCode, "exit status")
	assert.Equal(t, want.Signal, got.Signal, "signal")
	assert.True(t, bytes.Equal(want.Stdout, got.Stdout), "stdout differs:\nbare:   %q\ntraced: %q", trim(want.Stdout), trim(got.Stdout))
	assert.Equal(t, string(want.Stderr), string(got.Stderr), "stderr")
	assert.Zero(t, got.Dropped, "dropped events")
	allocs := 0
	for _, ev := range got.Events {
		if ev.Type == shm.RecAlloc || ev.Type == shm.RecRealloc {
			allocs++
		}
	}
	if allocates {
		assert.NotZero(t, allocs, "no allocation recorded")
	}
	assert.NotEmpty(t, got.processes(), "no PROCESS record")
}

func trim(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}
