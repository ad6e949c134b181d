package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// verdicts lists a report's groups as "KIND BYTESxOBJECTS[ suppressed]":
// every group that is not reachable, and the reachable ones of the sizes
// testdata/reach.c allocates (101-130 bytes, 32 MiB and more); libc's own
// blocks must all be reachable, so any other leak fails the test.
func verdicts(r *leaksJSON) []string {
	var out []string
	for _, g := range r.Leaks {
		ours := (g.Bytes >= 101 && g.Bytes <= 130) || g.Bytes >= 32<<20
		if g.Kind == "reachable" && !ours {
			continue
		}
		v := fmt.Sprintf("%s %dx%d", g.Kind, g.Bytes, g.Objects)
		if g.Suppressed {
			v += " suppressed"
		}
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// childOf returns the report of the fork child of pid.
func (a *analyzed) childOf(t *testing.T, pid uint32) *leaksJSON {
	t.Helper()
	for _, r := range a.reports {
		if r.Ppid == pid {
			return r
		}
	}
	t.Fatalf("no report of a child of pid %d", pid)
	return nil
}

// TestReachability runs each case of testdata/reach.c (one rule of
// DESIGN.md §6.1 each; the expected verdicts are LeakSanitizer's on the
// same program, but for "merged": valgrind's) through the real library
// and analyzer.
func TestReachability(t *testing.T) {
	prog := program(t, "reach")
	supp := filepath.Join(t.TempDir(), "supp.txt")
	require.NoError(t, os.WriteFile(supp, []byte("leak:suppressed_alloc\n"), 0o644))
	const checked = "checked"
	tlsLib := program(t, "tlsplugin", "-shared", "-fPIC")
	tests := []struct {
		name  string
		flags []string
		want  []string // verdicts of the main process
		reach string   // its "reachability"
		args  []string // after the case's name
	}{
		{"global", nil, []string{"reachable 101x1", "reachable 102x1"}, checked, nil},
		{"stack", nil, []string{"reachable 103x1"}, checked, nil},
		{"deadframe", nil, []string{"direct 104x1"}, checked, nil},
		{"register", nil, []string{"reachable 105x1"}, checked, nil},
		{"tls", nil, []string{"reachable 106x1"}, checked, nil},
		{"tsd", nil, []string{"reachable 107x1"}, checked, nil},
		{"tlsdl", nil, []string{"reachable 122x1"}, checked, []string{tlsLib}},
		{"self", nil, []string{"direct 108x1"}, checked, nil},
		{"list", nil, []string{"direct 109x1", "indirect 110x1", "indirect 111x1"}, checked, nil},
		{"cycle", nil, []string{"indirect 112x1", "indirect 113x1"}, checked, nil},
		{"big", nil, []string{"direct 33554433x1", "reachable 33554432x1"}, checked, nil},
		{"merged", nil, []string{"reachable 125x1", "reachable 33554434x1"}, checked, nil},
		{"suppressed", []string{"--suppressions", supp}, []string{"direct 114x1 suppressed", "indirect 115x1 suppressed"}, checked, nil},
		{"exitthread", nil, []string{"direct 118x1", "reachable 119x1"}, checked, nil},
		{"deadthread", nil, []string{"direct 123x1"}, checked, nil},
		{"_exit", nil, []string{"unknown 120x1"},
			"not checked: the process did not wait for the check at exit (it left through _exit or _Exit, or MEMSCOPE_LEAK_CHECK_TIMEOUT=0)", nil},
		{"traced", nil, []string{"unknown 121x1"}, "", nil}, // reason checked below
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := analyze(t, tc.flags, append([]string{prog, tc.name}, tc.args...)...)
			require.Equal(t, 0, a.exitCode, "stderr:\n%s", a.stderr)
			m := a.main(t)
			if tc.name == "traced" {
				// Not checked: every block is unknown, its idle thread's
				// DTV too (its size depends on the modules loaded).
				assert.Contains(t, verdicts(m), tc.want[0])
			} else {
				assert.Equal(t, tc.want, verdicts(m))
			}
			if tc.reach != "" {
				assert.Equal(t, tc.reach, m.Reachability)
			} else {
				assert.True(t, strings.HasPrefix(m.Reachability, "not checked: cannot stop the process to scan it: ptrace(PTRACE_SEIZE, "), m.Reachability)
				assert.Contains(t, a.stderr, "its blocks are reported as leaks of unknown kind")
			}
			var direct, indirect uint64
			for _, v := range tc.want {
				var kind string
				var bytes, objects uint64
				fmt.Sscanf(v, "%s %dx%d", &kind, &bytes, &objects)
				switch kind {
				case "direct":
					direct += bytes
				case "indirect":
					indirect += bytes
				}
			}
			assert.Equal(t, direct, m.DirectBytes, "direct_bytes")
			assert.Equal(t, indirect, m.IndirectBytes, "indirect_bytes")
		})
	}

	t.Run("fork", func(t *testing.T) {
		a := analyze(t, nil, prog, "fork")
		require.Equal(t, 0, a.exitCode, "stderr:\n%s", a.stderr)
		m := a.main(t)
		assert.Equal(t, []string{"direct 116x1"}, verdicts(m))
		child := a.childOf(t, m.Pid)
		assert.Equal(t, checked, child.Reachability)
		assert.Equal(t, []string{"direct 116x1", "direct 117x1"}, verdicts(child))
	})

	t.Run("forkthread", func(t *testing.T) {
		// LSan (which suspends no thread the child lacks) says the same:
		// 124 B is a direct leak of the child only.
		a := analyze(t, nil, prog, "forkthread")
		require.Equal(t, 0, a.exitCode, "stderr:\n%s", a.stderr)
		m := a.main(t)
		assert.Equal(t, []string{"reachable 124x1"}, verdicts(m))
		child := a.childOf(t, m.Pid)
		assert.Equal(t, []string{"direct 124x1"}, verdicts(child))
	})

	t.Run("pprof leak label", func(t *testing.T) {
		a := analyze(t, nil, prog, "list")
		m := a.main(t)
		path := filepath.Join(a.dir, fmt.Sprintf("memscope.reach.%d.pb.gz", m.Pid))
		p := parseProfile(t, path)
		inuse := map[string]int64{}
		var allocs int64
		for _, s := range p.Sample {
			inuse[strings.Join(s.Label["leak"], ",")] += s.Value[3]
			allocs += s.Value[0]
		}
		assert.Equal(t, int64(109), inuse["direct"])
		assert.Equal(t, int64(221), inuse["indirect"])
		assert.Equal(t, int64(m.ReachableBytes), inuse["reachable"])
		assert.Equal(t, int64(m.Totals.Allocations), allocs, "allocations counted once")
		// What a user types: pprof matches tag values as regexps, so
		// leak=direct shows the leaks (direct and indirect: 330 B, no
		// reachable block), leak=^direct the direct ones alone.
		for _, tc := range []struct{ focus, total string }{{"leak=direct", "330B"}, {"leak=^direct", "109B"}} {
			out, err := exec.Command("go", "tool", "pprof", "-tagfocus", tc.focus, "-sample_index=inuse_space", "-top", path).CombinedOutput()
			require.NoError(t, err, "%s", out)
			assert.Contains(t, string(out), "Showing nodes accounting for "+tc.total+",", tc.focus)
			assert.Contains(t, string(out), " list\n", tc.focus)
		}
	})

	t.Run("text report", func(t *testing.T) {
		a := analyze(t, nil, prog, "list")
		m := a.main(t)
		text, err := os.ReadFile(filepath.Join(a.dir, fmt.Sprintf("memscope.reach.%d.leaks.txt", m.Pid)))
		require.NoError(t, err)
		s := string(text)
		d := strings.Index(s, "\nDirect leak of 109 byte(s) in 1 object(s) allocated from:\n")
		i1 := strings.Index(s, "\nIndirect leak of 111 byte(s) in 1 object(s) allocated from:\n")
		i2 := strings.Index(s, "\nIndirect leak of 110 byte(s) in 1 object(s) allocated from:\n")
		assert.True(t, d >= 0 && i1 > d && i2 > i1, "direct first, then indirect by bytes:\n%s", s)
		assert.Contains(t, s, fmt.Sprintf("still reachable: %d byte(s) in %d object(s)\n", m.ReachableBytes, m.ReachableObjects))
		assert.True(t, strings.HasSuffix(s, "SUMMARY: memscope: 330 byte(s) leaked in 3 allocation(s).\n"), s)
		assert.NotContains(t, s, "Reachable block")
	})
}

// TestRealProgramVerdicts runs real programs under `run --fail-on-leak`:
// those valgrind finds no lost block in must pass the gate with no direct
// or indirect leak (python3 -c pass among them: LeakSanitizer reports 6
// blocks of 13628 bytes whose only pointers are in CPython's arenas,
// which it does not scan, and which are roots here, as in valgrind);
// those that leak must report exactly their leaks (sort: valgrind's 16
// bytes definitely lost), and the gate's last line says so.
func TestRealProgramVerdicts(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for i := 500; i > 0; i-- {
		lines = append(lines, fmt.Sprint(i*7919%1000))
	}
	sortIn := filepath.Join(dir, "in.txt")
	require.NoError(t, os.WriteFile(sortIn, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	tests := []struct {
		name             string
		argv             []string
		wantExit         int
		leakBytes, leaks uint64 // direct + indirect of the program's own process
	}{
		{"ls", []string{"ls", "/"}, 0, 0, 0},
		{"git --version", []string{"git", "--version"}, 0, 0, 0},
		{"find", []string{"find", dir}, 0, 0, 0},
		{"tar -c", []string{"tar", "-cf", "-", "-C", dir, "in.txt"}, 0, 0, 0},
		{"sha256sum", []string{"sha256sum", sortIn}, 0, 0, 0},
		{"C++ hello world", []string{program(t, "hello")}, 0, 0, 0},
		{"sort", []string{"sort", sortIn}, 23, 16, 1},
	}
	if out, err := exec.Command("python3", "-c", "import sys; print(sys.executable)").Output(); err == nil {
		py := strings.TrimSpace(string(out)) // the interpreter itself, not a shell shim
		tests = append(tests, struct {
			name             string
			argv             []string
			wantExit         int
			leakBytes, leaks uint64
		}{"python3 -c pass", []string{py, "-c", "pass"}, 0, 0, 0})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := exec.LookPath(tc.argv[0]); err != nil {
				t.Skipf("%s not installed", tc.argv[0])
			}
			a := analyze(t, []string{"--fail-on-leak"}, tc.argv...)
			require.Equal(t, tc.wantExit, a.exitCode, "stderr:\n%s", a.stderr)
			m := a.main(t)
			assert.Equal(t, "checked", m.Reachability)
			assert.Equal(t, tc.leakBytes, m.DirectBytes+m.IndirectBytes, "direct + indirect bytes")
			assert.Equal(t, tc.leaks, m.DirectObjects+m.IndirectObjects, "direct + indirect objects")
			last := strings.TrimSpace(a.stderr)
			last = last[strings.LastIndex(last, "\n")+1:]
			if tc.wantExit == 23 {
				assert.Equal(t, fmt.Sprintf("memscope: --fail-on-leak: %d byte(s) leaked in %d object(s) in 1 process(es) (pid %d %s: %d B in %d); reports in %s",
					tc.leakBytes, tc.leaks, m.Pid, filepath.Base(m.Program), tc.leakBytes, tc.leaks, a.dir), last)
			}
		})
	}
}

// bareReach is testdata/reach.c's case run with a bare LD_PRELOAD, its
// private directory and report directory (returned) its own.
func bareReach(t *testing.T, name string) (*exec.Cmd, *bytes.Buffer, string) {
	xdg, out := t.TempDir(), t.TempDir()
	cmd := exec.Command(program(t, "reach"), name)
	cmd.Env = append(cleanEnv(), "LD_PRELOAD="+library(t), "XDG_RUNTIME_DIR="+xdg, "MEMSCOPE_OUT="+out,
		"MEMSCOPE_ANALYZER="+analyzer(t))
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	return cmd, stderr, out
}

// TestRecorderKilledDuringCheck: in bare mode, SIGKILL the recorder while
// it holds the program for its leak check. The kernel lets the program go
// on, and the library stops waiting as soon as its consumer is gone: the
// program exits with its own status, long before the 5 s timeout.
func TestRecorderKilledDuringCheck(t *testing.T) {
	cmd, stderr, _ := bareReach(t, "bigheap")
	require.NoError(t, cmd.Start())
	// The recorder attaches with ptrace for the check: TracerPid names it.
	var tracer int
	deadline := time.Now().Add(60 * time.Second)
	for tracer == 0 && time.Now().Before(deadline) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		if err != nil {
			break
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "TracerPid:"); ok {
				fmt.Sscan(strings.TrimSpace(v), &tracer)
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	if tracer == 0 {
		cmd.Wait()
		t.Fatalf("the check never stopped the program; stderr:\n%s", stderr.String())
	}
	require.NoError(t, syscall.Kill(tracer, syscall.SIGKILL))
	killed := time.Now()
	require.NoError(t, cmd.Wait(), "stderr:\n%s", stderr.String())
	assert.Less(t, time.Since(killed), time.Second, "exit after the recorder died")
	assert.Empty(t, stderr.String())
}

// TestBareModeReportsAtExit: with a bare LD_PRELOAD, the program's first
// process waits at exit until its reports are written, so a script's
// next command finds them (issue 18): no polling here.
func TestBareModeReportsAtExit(t *testing.T) {
	cmd, stderr, out := bareReach(t, "list")
	require.NoError(t, cmd.Run())
	reports, err := filepath.Glob(filepath.Join(out, "memscope.reach.*.leaks.json"))
	require.NoError(t, err)
	require.Len(t, reports, 1, "the report exists when the exit status does; stderr:\n%s", stderr.String())
	var r leaksJSON
	b, err := os.ReadFile(reports[0])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &r))
	assert.Equal(t, "checked", r.Reachability)
	assert.Equal(t, []string{"direct 109x1", "indirect 110x1", "indirect 111x1"}, verdicts(&r))
	require.NotNil(t, r.ExitStatus)
	assert.Equal(t, 0, *r.ExitStatus)
	assert.Contains(t, stderr.String(), "leaked:     330 B in 3 objects", "the summary came before the exit")
	files, _ := filepath.Glob(filepath.Join(out, "memscope.reach.*"))
	assert.Len(t, files, 5)
}

// TestNothingToScan: a process with no live block at exit and one thread
// is checked without being stopped or scanned (its verdict is known: no
// leak), while one that holds a block is scanned as always. The check
// timing lines (MEMSCOPE_CHECK_TIMING=1) say which path each took.
func TestNothingToScan(t *testing.T) {
	tests := []struct {
		name  string
		argv  []string
		quick bool
	}{
		{"no allocation", []string{"/bin/true"}, true},
		{"blocks at exit", []string{program(t, "leaks")}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			_, stderr, code := runCLIWith(t, []string{"MEMSCOPE_CHECK_TIMING=1"}, "",
				append([]string{"run", "--out", out, "--"}, tc.argv...)...)
			require.Equal(t, 0, code, stderr)
			require.Equal(t, 1, strings.Count(stderr, "memscope: leak check of pid"), stderr)
			assert.Equal(t, tc.quick, strings.Contains(stderr, "nothing to scan (no live block, one thread)"), stderr)
			assert.Equal(t, !tc.quick, strings.Contains(stderr, " held "), stderr)
			files, err := filepath.Glob(filepath.Join(out, "memscope.*.leaks.json"))
			require.NoError(t, err)
			require.Len(t, files, 1)
			var rep struct {
				Reachability string `json:"reachability"`
				LeakedBytes  uint64 `json:"leaked_bytes"`
			}
			data, err := os.ReadFile(files[0])
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(data, &rep))
			assert.Equal(t, "checked", rep.Reachability)
			if tc.quick {
				assert.Zero(t, rep.LeakedBytes)
			}
		})
	}
}
