package e2e

import (
	"bytes"
	"context"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run the testdata programs through the real
// `memscope-analyze run` (which preloads the real library) and check the
// reports it writes against testdata/NAME.expect.json: the leak groups
// with their frames, the totals of DESIGN §6, the exit status, and the
// pprof profile.

// leaksJSON is the schema of memscope.PROG.PID.leaks.json (DESIGN §6).
type leaksJSON struct {
	Version    int      `json:"version"`
	Pid        uint32   `json:"pid"`
	Ppid       uint32   `json:"ppid"`
	Program    string   `json:"program"`
	ExitStatus *int     `json:"exit_status"`
	Complete   bool     `json:"complete"`
	Incomplete []string `json:"incomplete"`
	Totals     struct {
		Allocations          uint64 `json:"allocations"`
		Frees                uint64 `json:"frees"`
		BytesAllocated       uint64 `json:"bytes_allocated"`
		PeakBytes            uint64 `json:"peak_bytes"`
		TemporaryAllocations uint64 `json:"temporary_allocations"`
		DroppedEvents        uint64 `json:"dropped_events"`
		UnrecordedCalls      uint64 `json:"unrecorded_calls"`
		UnknownFrees         uint64 `json:"unknown_frees"`
		LateEvents           uint64 `json:"late_events"`
	} `json:"totals"`
	LeakedBytes      uint64 `json:"leaked_bytes"`
	LeakedObjects    uint64 `json:"leaked_objects"`
	Reachability     string `json:"reachability"`
	DirectBytes      uint64 `json:"direct_bytes"`
	DirectObjects    uint64 `json:"direct_objects"`
	IndirectBytes    uint64 `json:"indirect_bytes"`
	IndirectObjects  uint64 `json:"indirect_objects"`
	ReachableBytes   uint64 `json:"reachable_bytes"`
	ReachableObjects uint64 `json:"reachable_objects"`
	Leaks            []struct {
		Kind       string `json:"kind"`
		Bytes      uint64 `json:"bytes"`
		Objects    uint64 `json:"objects"`
		Suppressed bool   `json:"suppressed"`
		Frames     []struct {
			Address  string `json:"address"`
			Function string `json:"function"`
			File     string `json:"file"`
			Line     int    `json:"line"`
			Module   string `json:"module"`
		} `json:"frames"`
	} `json:"leaks"`
}

// allocated is what the process still held at exit, whatever the leak
// check's verdict: bytes and objects.
func (r *leaksJSON) allocated() (uint64, uint64) {
	return r.LeakedBytes + r.ReachableBytes, r.LeakedObjects + r.ReachableObjects
}

// analyzed is the outcome of one `memscope-analyze run`.
type analyzed struct {
	dir      string // --out
	exitCode int
	stdout   string
	stderr   string
	reports  []*leaksJSON
	self     uint32 // the analyzer's pid: the ppid of the traced program
}

// analyze runs argv under `memscope-analyze run` with extra flags.
func analyze(t *testing.T, flags []string, argv ...string) *analyzed {
	t.Helper()
	return analyzeEnv(t, nil, flags, argv...)
}

// analyzeEnv is analyze with env added to (and overriding) cleanEnv's.
func analyzeEnv(t *testing.T, env, flags []string, argv ...string) *analyzed {
	t.Helper()
	out := t.TempDir()
	// Every process's reports: the tests read the fork children's.
	args := append([]string{"run", "--out", out, "--reports", "all"}, flags...)
	args = append(append(args, "--"), argv...)
	cmd := exec.Command(analyzer(t), args...)
	cmd.Env = append(cleanEnv(), env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	a := &analyzed{dir: out, stdout: so.String(), stderr: se.String(), self: uint32(cmd.Process.Pid)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		a.exitCode = ee.ExitCode()
	default:
		t.Fatalf("memscope-analyze %s: %v", strings.Join(args, " "), err)
	}
	a.reports = readReports(t, out)
	return a
}

// readReports parses every leaks.json in dir.
func readReports(t *testing.T, dir string) []*leaksJSON {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "memscope.*.leaks.json"))
	var reports []*leaksJSON
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		var r leaksJSON
		require.NoError(t, json.Unmarshal(b, &r), "%s", f)
		reports = append(reports, &r)
	}
	return reports
}

func (a *analyzed) main(t *testing.T) *leaksJSON {
	t.Helper()
	for _, r := range a.reports {
		if r.Ppid == a.self {
			return r
		}
	}
	t.Fatalf("no report of the program itself (ppid %d) among %d reports; stderr:\n%s", a.self, len(a.reports), a.stderr)
	return nil
}

// byRole finds the report of an expectation role (see testdata/README.md).
func (a *analyzed) byRole(t *testing.T, role, image string) *leaksJSON {
	t.Helper()
	m := a.main(t)
	if role == "main" {
		return m
	}
	for _, r := range a.reports {
		if r.Ppid != m.Pid {
			continue
		}
		sameImage := filepath.Base(r.Program) == image
		switch role {
		case "fork child", "fork child after exec":
			if sameImage {
				return r
			}
		case "system() shell":
			if !sameImage {
				return r
			}
		}
	}
	t.Fatalf("no report for role %q (image %q)", role, image)
	return nil
}

// programGroups renders r's leak groups with the innermost run of frames
// that lie in the program's own modules (the executable and the objects
// built beside it), as the expectations list them.
func programGroups(r *leaksJSON, modules []string) []string {
	isOurs := map[string]bool{}
	for _, m := range modules {
		isOurs[m] = true
	}
	var out []string
	for _, g := range r.Leaks {
		var frames []srcLoc
		for _, f := range g.Frames {
			if !isOurs[f.Module] {
				if len(frames) > 0 {
					break
				}
				continue
			}
			frames = append(frames, srcLoc{Function: f.Function, File: filepath.Base(f.File), Line: f.Line})
		}
		out = append(out, groupString(g.Bytes, g.Objects, frames))
	}
	return out
}

func shellCode(p expectProcess) int {
	if p.Signal != nil {
		return 128 + int(signalNames[*p.Signal])
	}
	return *p.ExitStatus
}

// valgrindFigures is the "valgrind" section of an expect file: valgrind's
// "total heap usage" line for the main process, recorded once by hand.
// no_freeres is the run with --run-libc-freeres=no --run-cxx-freeres=no,
// which does not free libc's and libstdc++'s own blocks at exit and so
// counts exactly what a real run does (testdata/README.md).
type valgrindFigures struct {
	NoFreeres *struct {
		Allocs         uint64 `json:"allocs"`
		Frees          uint64 `json:"frees"`
		BytesAllocated uint64 `json:"bytes_allocated"`
		BytesDiffer    string `json:"bytes_differ"`
	} `json:"no_freeres"`
}

func loadValgrind(t *testing.T, name string) valgrindFigures {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "testdata", name+".expect.json"))
	require.NoError(t, err)
	var v struct {
		Valgrind valgrindFigures `json:"valgrind"`
	}
	require.NoError(t, json.Unmarshal(b, &v))
	return v.Valgrind
}

// TestAnalyzeExpectations checks the reports of every testdata program.
func TestAnalyzeExpectations(t *testing.T) {
	for _, name := range expectPrograms {
		t.Run(name, func(t *testing.T) {
			exp := loadExpect(t, name)
			vg := loadValgrind(t, name)
			bin := program(t, name)
			modules := []string{bin}
			for _, run := range exp.Runs {
				args := run.Args
				if name == "dlopen" {
					args = []string{program(t, "plugin", "-shared", "-fPIC")}
					modules = append(modules, args[0])
				}
				t.Run(strings.Join(append([]string{"args"}, run.Args...), "_"), func(t *testing.T) {
					a := analyze(t, nil, append([]string{bin}, args...)...)
					assert.Equal(t, run.Stdout, a.stdout, "stdout")
					assert.Equal(t, shellCode(run.Processes[0]), a.exitCode, "exit status; stderr:\n%s", a.stderr)
					for _, p := range run.Processes {
						image := ""
						if p.Image != nil {
							image = *p.Image
						}
						r := a.byRole(t, p.Role, image)
						assert.True(t, r.Complete, "%s: complete", p.Role)
						if assert.NotNil(t, r.ExitStatus, "%s: exit_status", p.Role) {
							assert.Equal(t, shellCode(p), *r.ExitStatus, "%s: exit_status", p.Role)
						}
						assert.Zero(t, r.Totals.DroppedEvents, "%s: dropped events", p.Role)
						if p.Exact {
							// The programs free only what they allocated.
							assert.Zero(t, r.Totals.UnknownFrees, "%s: frees of unknown blocks", p.Role)
						}
						allocBytes, allocObjects := r.allocated()
						assert.Equal(t, r.Totals.Allocations-r.Totals.Frees, allocObjects, "%s: allocations - frees == objects still allocated", p.Role)
						if !p.Exact {
							assert.NotZero(t, r.Totals.Allocations, "%s: nothing recorded", p.Role)
							continue
						}
						if image != "" {
							assert.Equal(t, image, filepath.Base(r.Program), "%s: program", p.Role)
						}
						assert.Equal(t, p.Totals.Allocations, r.Totals.Allocations, "%s: allocations", p.Role)
						assert.Equal(t, p.Totals.Frees, r.Totals.Frees, "%s: frees", p.Role)
						if p.Totals.BytesAllocated != nil {
							assert.Equal(t, *p.Totals.BytesAllocated, r.Totals.BytesAllocated, "%s: bytes allocated", p.Role)
						}
						if vg := vg.NoFreeres; vg != nil && p.Role == "main" {
							assert.Equal(t, vg.Allocs, r.Totals.Allocations, "main: allocations against valgrind's total heap usage")
							assert.Equal(t, vg.Frees, r.Totals.Frees, "main: frees against valgrind's total heap usage")
							if vg.BytesDiffer == "" {
								assert.Equal(t, vg.BytesAllocated, r.Totals.BytesAllocated, "main: bytes allocated against valgrind's total heap usage")
							}
						}
						// The expectations list what is still allocated at exit
						// (reachable or not); reach_test.go checks the verdicts.
						assert.Equal(t, p.LeakedBytes, allocBytes, "%s: bytes still allocated", p.Role)
						assert.Equal(t, p.LeakedObjects, allocObjects, "%s: objects still allocated", p.Role)
						var want []string
						for _, g := range p.Leaks {
							want = append(want, groupString(g.Bytes, g.Objects, g.Frames))
						}
						got := programGroups(r, modules)
						sort.Strings(want)
						sort.Strings(got)
						assert.Equal(t, want, got, "%s: leak groups", p.Role)
						for i := 1; i < len(r.Leaks); i++ {
							// By verdict (direct leaks first, as LSan lists them), then bytes.
							if r.Leaks[i-1].Kind == r.Leaks[i].Kind {
								assert.GreaterOrEqual(t, r.Leaks[i-1].Bytes, r.Leaks[i].Bytes, "%s: groups of a kind sorted by bytes", p.Role)
							}
						}
					}
				})
			}
		})
	}
}

// TestAnalyzePprof checks the heap profile of testdata/leaks: valid, with
// exact inuse_space per leaking function, readable by `go tool pprof`.
func TestAnalyzePprof(t *testing.T) {
	a := analyze(t, nil, program(t, "leaks"))
	m := a.main(t)
	path := filepath.Join(a.dir, fmt.Sprintf("memscope.leaks.%d.pb.gz", m.Pid))
	p := parseProfile(t, path)
	var types []string
	for _, st := range p.SampleType {
		types = append(types, st.Type+"/"+st.Unit)
	}
	assert.Equal(t, []string{"alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"}, types)
	assert.Equal(t, "inuse_space", p.DefaultSampleType)

	// inuse_space by the innermost function: testdata/leaks.c's comment
	// says 100 B leak_direct, 3 x 200 B level3, 300 B leak_calloc.
	flat := map[string]int64{}
	for _, s := range p.Sample {
		if s.Value[3] == 0 {
			continue
		}
		fn := s.Location[0].Line[0].Function.Name
		flat[fn] += s.Value[3]
	}
	assert.Equal(t, map[string]int64{"leak_direct": 100, "level3": 600, "leak_calloc": 300}, flat)

	out, err := exec.Command("go", "tool", "pprof", "-top", "-sample_index=inuse_space", path).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, want := range []string{"600B", "level3", "300B", "leak_calloc", "100B", "leak_direct"} {
		assert.Contains(t, string(out), want)
	}
}

// TestAnalyzeFailOnLeak checks --fail-on-leak and suppressions. leaks.c
// keeps its blocks in a global (reachable: no leak for the gate), so the
// suppression cases run it with --no-leak-check, where every block still
// allocated counts; testdata/reach.c's cases leak for real.
func TestAnalyzeFailOnLeak(t *testing.T) {
	leaks := program(t, "leaks")
	reachProg := program(t, "reach")
	supp := filepath.Join(t.TempDir(), "supp.txt")
	require.NoError(t, os.WriteFile(supp, []byte("# every leak of leaks.c\nleak:leak_direct\nleak:level1\nleak:leaks.c\n"), 0o644))
	partial := filepath.Join(t.TempDir(), "partial.txt")
	require.NoError(t, os.WriteFile(partial, []byte("leak:leak_direct\n"), 0o644))
	crash := program(t, "crash")
	tests := []struct {
		name  string
		flags []string
		argv  []string
		want  int
	}{
		{"leaks without the flag", []string{"--no-leak-check"}, []string{leaks}, 0},
		{"leaks", []string{"--fail-on-leak", "--no-leak-check"}, []string{leaks}, 23},
		{"all suppressed", []string{"--fail-on-leak", "--no-leak-check", "--suppressions", supp}, []string{leaks}, 0},
		{"some suppressed", []string{"--fail-on-leak", "--no-leak-check", "--suppressions", partial}, []string{leaks}, 23},
		{"reachable only", []string{"--fail-on-leak"}, []string{leaks}, 0},
		{"a direct leak", []string{"--fail-on-leak"}, []string{reachProg, "deadframe"}, 23},
		{"an indirect leak", []string{"--fail-on-leak"}, []string{reachProg, "cycle"}, 23},
		{"not checked: _exit", []string{"--fail-on-leak"}, []string{reachProg, "_exit"}, 23},
		{"exit status kept", nil, []string{crash, "_exit"}, 9},
		{"abort", nil, []string{crash, "abort"}, 128 + int(syscall.SIGABRT)},
		{"SIGKILL", nil, []string{crash, "kill"}, 128 + int(syscall.SIGKILL)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := analyze(t, tc.flags, tc.argv...)
			assert.Equal(t, tc.want, a.exitCode, "stderr:\n%s", a.stderr)
		})
	}
	t.Run("suppressed groups are marked", func(t *testing.T) {
		a := analyze(t, []string{"--no-leak-check", "--suppressions", supp}, leaks)
		m := a.main(t)
		assert.Equal(t, uint64(1000), m.LeakedBytes, "suppressed leaks still count in leaked_bytes")
		for _, g := range m.Leaks {
			assert.True(t, g.Suppressed, "%d bytes", g.Bytes)
		}
	})
}

// TestAnalyzeBadInput checks the messages for what cannot work.
func TestAnalyzeBadInput(t *testing.T) {
	notExec := filepath.Join(t.TempDir(), "plain.txt")
	require.NoError(t, os.WriteFile(notExec, []byte("hello"), 0o644))
	foreign := filepath.Join(t.TempDir(), "foreign.ring")
	require.NoError(t, os.WriteFile(foreign, make([]byte, 8192), 0o600))
	tests := []struct {
		name string
		args []string
		want string
		env  []string
	}{
		{"missing program", []string{"run", "--", "/nonexistent/prog"}, "program /nonexistent/prog does not exist", nil},
		{"not executable", []string{"run", "--", notExec}, "is not executable", nil},
		{"not in PATH", []string{"run", "--", "no-such-program-xyz"}, `program "no-such-program-xyz" not found in PATH`, nil},
		{"bad out dir", []string{"run", "--out", "/etc/passwd/dir", "--", "/bin/true"}, "--out /etc/passwd/dir", nil},
		{"bad flag", []string{"run", "--no-such-flag", "--", "/bin/true"}, "unknown flag: --no-such-flag", nil},
		{"bad ring size", []string{"run", "--ring-size", "lots", "--", "/bin/true"}, `invalid size "lots"`, nil},
		{"missing ring", []string{"record", "--ring", "/nonexistent/ring"}, "/nonexistent/ring", nil},
		{"no program", []string{"run"}, "run needs a program", nil},
		{"foreign ring", []string{"record", "--ring", foreign}, "not a memscope ring", nil},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`, nil},
		{"bad clock", []string{"run", "--", "/bin/true"}, `MEMSCOPE_CLOCK="hpet": want tsc or monotonic`, []string{"MEMSCOPE_CLOCK=hpet"}},
		{"bad checkpoint interval", []string{"run", "--", "/bin/true"}, `MEMSCOPE_CHECKPOINT_EVERY="often": want a size (e.g. 64M)`, []string{"MEMSCOPE_CHECKPOINT_EVERY=often"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(analyzer(t), tc.args...)
			cmd.Env = append(cleanEnv(), tc.env...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "%s", out)
			assert.Equal(t, 2, ee.ExitCode())
			assert.Contains(t, string(out), tc.want)
			assert.NotContains(t, string(out), "goroutine", "no panic")
			assert.Equal(t, 1, strings.Count(strings.TrimSpace(string(out)), "\n")+1, "one line: %s", out)
		})
	}
}

// TestBarePreload runs testdata/leaks with a bare LD_PRELOAD: the library
// creates the ring and starts `memscope-analyze record` detached, which
// writes the reports into MEMSCOPE_OUT after the program has exited.
func TestBarePreload(t *testing.T) {
	analyzer(t) // the library finds memscope-analyze beside itself
	bin := program(t, "leaks")
	out := t.TempDir()
	errf, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	require.NoError(t, err)
	defer errf.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(cleanEnv(), "LD_PRELOAD="+library(t), "MEMSCOPE_OUT="+out)
	cmd.Stderr = errf
	outBytes, err := cmd.Output()
	require.NoError(t, err)
	assert.Empty(t, string(outBytes))
	pid := cmd.Process.Pid

	path := filepath.Join(out, fmt.Sprintf("memscope.leaks.%d.leaks.json", pid))
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			break
		}
		if time.Now().After(deadline) {
			se, _ := os.ReadFile(errf.Name())
			t.Fatalf("no report %s after 20 s; stderr:\n%s", path, se)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var r leaksJSON
	require.NoError(t, json.Unmarshal(b, &r))
	exp := loadExpect(t, "leaks").Runs[0].Processes[0]
	allocBytes, _ := r.allocated()
	assert.Equal(t, exp.LeakedBytes, allocBytes)
	assert.Equal(t, exp.Totals.Allocations, r.Totals.Allocations)
	var want []string
	for _, g := range exp.Leaks {
		want = append(want, groupString(g.Bytes, g.Objects, g.Frames))
	}
	got := programGroups(&r, []string{bin})
	sort.Strings(want)
	sort.Strings(got)
	assert.Equal(t, want, got)
	for _, suffix := range []string{".pb.gz", ".peak.pb.gz", ".leaks.txt", ".trace.json"} {
		assert.FileExists(t, filepath.Join(out, fmt.Sprintf("memscope.leaks.%d%s", pid, suffix)))
	}
}

// TestRunSignals checks that memscope-analyze passes signals on: a
// SIGTERM sent to it alone reaches PROG, and a SIGINT sent to the whole
// process group (a terminal's Ctrl-C) ends PROG but not the analyzer.
// Either way the reports are written and the exit status is PROG's.
func TestRunSignals(t *testing.T) {
	tests := []struct {
		name  string
		sig   syscall.Signal
		group bool // to the process group, as a terminal does
	}{
		{"SIGTERM to the analyzer", syscall.SIGTERM, false},
		{"Ctrl-C to the group", syscall.SIGINT, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := t.TempDir()
			cmd := exec.Command(analyzer(t), "run", "--out", out, "--", "sh", "-c", "exec sleep 30")
			cmd.Env = cleanEnv()
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			require.NoError(t, cmd.Start())
			time.Sleep(500 * time.Millisecond) // PROG is running and traced
			target := cmd.Process.Pid
			if tc.group {
				target = -target
			}
			require.NoError(t, syscall.Kill(target, tc.sig))
			err := cmd.Wait()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee)
			assert.Equal(t, 128+int(tc.sig), ee.ExitCode())
			files, _ := filepath.Glob(filepath.Join(out, "memscope.sleep.*.leaks.json"))
			require.Len(t, files, 1, "report of the killed sleep")
			reports := readReports(t, out)
			require.NotNil(t, reports[0].ExitStatus)
			assert.Equal(t, 128+int(tc.sig), *reports[0].ExitStatus)
		})
	}
}

// TestRunStatic checks the message for a program the library cannot be
// loaded into.
func TestRunStatic(t *testing.T) {
	src := filepath.Join(t.TempDir(), "static.c")
	require.NoError(t, os.WriteFile(src, []byte("#include <stdlib.h>\nint main(void){ return malloc(10) ? 4 : 5; }\n"), 0o644))
	bin := filepath.Join(t.TempDir(), "static")
	if out, err := exec.Command("gcc", "-static", "-o", bin, src).CombinedOutput(); err != nil {
		t.Skipf("no static libc to link with: %v\n%s", err, out)
	}
	a := analyze(t, nil, bin)
	assert.Equal(t, 4, a.exitCode, "the program's own status")
	assert.Contains(t, a.stderr, "is statically linked, so libmemscope.so could not be loaded into it: nothing was recorded")
	assert.Empty(t, a.reports)
}

func parseProfile(t *testing.T, path string) *profile.Profile {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	p, err := profile.Parse(f)
	require.NoError(t, err, "%s", path)
	require.NoError(t, p.CheckValid(), "%s", path)
	return p
}

// TestAnalyzeThreadsProfiles checks, on testdata/threads (8 threads named
// storm-N, each leaking one block of 8*N bytes from storm_leak), the
// thread labels of the exit profile, the peak profile against the peak
// in leaks.json, and the timeline.
func TestAnalyzeThreadsProfiles(t *testing.T) {
	a := analyze(t, nil, program(t, "threads"))
	m := a.main(t)
	base := filepath.Join(a.dir, fmt.Sprintf("memscope.threads.%d", m.Pid))

	exit := parseProfile(t, base+".pb.gz")
	leakByThread := map[string]int64{}
	for _, s := range exit.Sample {
		if s.Value[3] > 0 && s.Location[0].Line[0].Function.Name == "storm_leak" {
			require.Len(t, s.Label["thread"], 1)
			leakByThread[s.Label["thread"][0]] += s.Value[3]
		}
	}
	want := map[string]int64{}
	for n := 1; n <= 8; n++ {
		want[fmt.Sprintf("storm-%d", n)] = int64(8 * n)
	}
	assert.Equal(t, want, leakByThread, "inuse_space of storm_leak by thread label")

	peak := parseProfile(t, base+".peak.pb.gz")
	var peakInuse int64
	for _, s := range peak.Sample {
		peakInuse += s.Value[3]
	}
	assert.Equal(t, int64(m.Totals.PeakBytes), peakInuse, "peak profile's inuse_space == peak_bytes")
	assert.GreaterOrEqual(t, m.Totals.PeakBytes, m.LeakedBytes)

	b, err := os.ReadFile(base + ".trace.json")
	require.NoError(t, err)
	var trace struct {
		TraceEvents []struct {
			Name string         `json:"name"`
			Ph   string         `json:"ph"`
			Pid  uint32         `json:"pid"`
			Args map[string]any `json:"args"`
		} `json:"traceEvents"`
	}
	require.NoError(t, json.Unmarshal(b, &trace), "trace.json is JSON")
	var counters int
	var maxHeap float64
	for _, ev := range trace.TraceEvents {
		if ev.Ph == "C" && ev.Name == "heap" {
			counters++
			assert.Equal(t, m.Pid, ev.Pid)
			v, ok := ev.Args["bytes"].(float64)
			require.True(t, ok, "heap counter without bytes: %v", ev.Args)
			maxHeap = max(maxHeap, v)
		}
	}
	assert.NotZero(t, counters, "heap counter events")
	assert.LessOrEqual(t, maxHeap, float64(m.Totals.PeakBytes), "the timeline never exceeds the peak")
}

// sourceLine returns the line of testdata/FILE marked "LINE:tag".
func sourceLine(t *testing.T, file, tag string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "testdata", file))
	require.NoError(t, err)
	for i, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "LINE:"+tag+" ") || strings.HasSuffix(l, "LINE:"+tag+" */") {
			return i + 1
		}
	}
	t.Fatalf("no LINE:%s in testdata/%s", tag, file)
	return 0
}

// TestForkWhileLoaderLocked: a fork child whose parent had a thread
// inside dl_iterate_phdr must not hang (libunwind would wait for ever on
// the loader's lock), and its allocations keep their stacks.
func TestForkWhileLoaderLocked(t *testing.T) {
	bin := program(t, "forklock")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := t.TempDir()
	cmd := exec.CommandContext(ctx, analyzer(t), "run", "--out", out, "--", bin)
	cmd.Env = cleanEnv()
	// On a hang, kill the whole tree (the hung child holds our pipes).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	require.NoError(t, cmd.Run(), "stderr:\n%s", se.String())
	require.NoError(t, ctx.Err(), "hung")
	assert.Equal(t, "child status 5\n", so.String())
	a := &analyzed{dir: out, self: uint32(cmd.Process.Pid), reports: readReports(t, out)}
	// The child's status is its parent's to reap (stdout shows it was 5).
	child := a.byRole(t, "fork child", "forklock")
	got := programGroups(child, []string{bin})
	want := []string{
		groupString(22, 1, []srcLoc{{Function: "child_site2", File: "forklock.c", Line: sourceLine(t, "forklock.c", "child_site2")}, {Function: "main", File: "forklock.c", Line: 0}}),
		groupString(11, 1, []srcLoc{{Function: "child_site1", File: "forklock.c", Line: sourceLine(t, "forklock.c", "child_site1")}, {Function: "main", File: "forklock.c", Line: 0}}),
	}
	// main's line is not what is checked here: only the innermost frame.
	for i := range got {
		got[i] = strings.SplitN(got[i], " <- ", 2)[0]
	}
	for i := range want {
		want[i] = strings.SplitN(want[i], " <- ", 2)[0]
	}
	for _, w := range want {
		assert.Contains(t, got, w)
	}
}

// TestSymbolCache: with MEMSCOPE_SYMBOL_CACHE set, the analyzer keeps the
// frames it resolved with DWARF, per build ID, across runs; runs that
// read them write the same leak reports and profiles as a run without.
func TestSymbolCache(t *testing.T) {
	prog := program(t, "leaks")
	f, err := elf.Open(prog)
	require.NoError(t, err)
	id := hex.EncodeToString(buildID(t, f))
	f.Close()
	cache := t.TempDir()
	env := []string{"MEMSCOPE_SYMBOL_CACHE=" + cache}

	plain := analyze(t, nil, prog)
	first := analyzeEnv(t, env, nil, prog)
	require.FileExists(t, filepath.Join(cache, id+".sym"), "the program's frames are kept")
	second := analyzeEnv(t, env, nil, prog)

	profileLines := func(a *analyzed) []string {
		p := parseProfile(t, filepath.Join(a.dir, fmt.Sprintf("memscope.leaks.%d.pb.gz", a.main(t).Pid)))
		var lines []string
		for _, l := range p.Location {
			for _, ln := range l.Line {
				lines = append(lines, fmt.Sprintf("%s %s:%d", ln.Function.Name, ln.Function.Filename, ln.Line))
			}
		}
		sort.Strings(lines)
		return lines
	}
	// The leak groups and their frames, addresses aside (ASLR).
	leakLines := func(a *analyzed) []string {
		var lines []string
		for _, l := range a.main(t).Leaks {
			lines = append(lines, fmt.Sprintf("%s %d bytes in %d", l.Kind, l.Bytes, l.Objects))
			for _, f := range l.Frames {
				lines = append(lines, fmt.Sprintf("  %s %s:%d %s", f.Function, f.File, f.Line, f.Module))
			}
		}
		return lines
	}
	want, wantLines := leakLines(plain), profileLines(plain)
	require.NotEmpty(t, want)
	for i, a := range []*analyzed{first, second} {
		assert.Equal(t, want, leakLines(a), "run %d: leak groups and frames", i+1)
		assert.Equal(t, wantLines, profileLines(a), "run %d: profile locations", i+1)
	}
}
