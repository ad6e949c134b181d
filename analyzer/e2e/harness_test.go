// Package e2e runs real programs under build/libmemscope.so and checks the
// records the library writes into a ring read with the real shm.Reader.
// The programs are in testdata/ and have exactly known behaviour; the
// oracle for stack addresses is addr2line on the test binary.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"memscope/shm"
)

// event is one decoded record, copied out of the ring.
type event struct {
	Pid, Tid uint32
	Type     shm.RecordType
	Flags    uint32
	TS       uint64
	Alloc    shm.Alloc
	Free     shm.Free
	Realloc  shm.Realloc
	Stack    shm.Stack
	Module   shm.Module
	Thread   shm.Thread
	Process  shm.Process
	Lost     shm.Lost
}

func decode(r shm.Record) (event, error) {
	ev := event{Pid: r.Pid, Tid: r.Tid, Type: r.Type, Flags: r.Flags, TS: r.TS}
	var err error
	switch r.Type {
	case shm.RecAlloc:
		ev.Alloc, err = r.Alloc()
	case shm.RecFree:
		ev.Free, err = r.Free()
	case shm.RecRealloc:
		ev.Realloc, err = r.Realloc()
	case shm.RecStack:
		ev.Stack, err = r.Stack()
	case shm.RecModule:
		ev.Module, err = r.Module()
	case shm.RecThread:
		ev.Thread, err = r.Thread()
	case shm.RecProcess:
		ev.Process, err = r.Process()
	case shm.RecLost:
		ev.Lost, err = r.Lost()
	default:
		err = fmt.Errorf("unknown record type %d", r.Type)
	}
	return ev, err
}

// result is what a traced run produced.
type result struct {
	Events   []event
	ExitCode int            // -1 if killed by a signal
	Signal   syscall.Signal // 0 if it exited
	Stdout   []byte
	Stderr   []byte
	Dropped  uint64
}

// root is the repository root (this file is analyzer/e2e/harness_test.go).
func root(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test source")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	makeMu   sync.Mutex
	makeDone = map[string]error{}
)

// built runs `make TARGET` once per test binary and returns the path of
// build/NAME.
func built(t testing.TB, target, name string) string {
	t.Helper()
	makeMu.Lock()
	defer makeMu.Unlock()
	dir := root(t)
	err, ok := makeDone[target]
	if !ok {
		if out, merr := exec.Command("make", "-s", "-C", dir, target).CombinedOutput(); merr != nil {
			err = fmt.Errorf("make %s: %v\n%s", target, merr, out)
		}
		makeDone[target] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "build", name)
}

// library builds build/libmemscope.so with make.
func library(t testing.TB) string { return built(t, "build/libmemscope.so", "libmemscope.so") }

// analyzer builds build/memscope-analyze and the library with make.
func analyzer(t testing.TB) string { return built(t, "all", "memscope-analyze") }

// expectPrograms are the testdata programs with a NAME.expect.json.
var expectPrograms = []string{"leaks", "entry", "realloc", "threads", "handoff", "passring", "manystacks", "fork", "forkrace", "exec", "cxx", "dlopen", "crash", "sigsuspend", "signalfd", "exits"}

var (
	binMu    sync.Mutex
	binDir   string
	binBuilt = map[string]string{}
)

// program compiles testdata/NAME.c (or .cpp) with -g -O0 once per test
// binary and returns the executable's path. extra are compiler flags.
func program(t testing.TB, name string, extra ...string) string {
	t.Helper()
	binMu.Lock()
	defer binMu.Unlock()
	key := name + " " + strings.Join(extra, " ")
	if p, ok := binBuilt[key]; ok {
		return p
	}
	if binDir == "" {
		d, err := os.MkdirTemp("", "memscope-e2e-")
		if err != nil {
			t.Fatal(err)
		}
		binDir = d
	}
	src := filepath.Join(root(t), "testdata", name+".c")
	cc := "gcc"
	if _, err := os.Stat(src); err != nil {
		src = filepath.Join(root(t), "testdata", name+".cpp")
		cc = "g++"
	}
	out := filepath.Join(binDir, name)
	if strings.Contains(strings.Join(extra, " "), "-shared") {
		out = filepath.Join(binDir, "lib"+name+".so")
	}
	args := append([]string{"-g", "-O0", "-Wall", "-pthread", "-o", out, src}, extra...)
	if msg, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", cc, strings.Join(args, " "), err, msg)
	}
	binBuilt[key] = out
	return out
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// runOpts adjust a traced run.
type runOpts struct {
	Env     []string // added to the environment
	Dir     string   // working directory
	Stdin   []byte
	Timeout time.Duration
	Ring    shm.Options
	RingDir string // the ring's directory (private, 0700); default a fresh one
}

// traced runs argv under the library with MEMSCOPE_RING pointing at a
// fresh ring, consuming it concurrently, and returns every record.
func traced(t testing.TB, argv []string, o runOpts) *result {
	t.Helper()
	lib := library(t)
	dir := o.RingDir
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.Chmod(dir, 0o700); err != nil { // rings live in private directories
		t.Fatal(err)
	}
	name := "ring"
	if o.RingDir != "" { // shared by several runs: a ring of its own each
		name = fmt.Sprintf("ring.%d", time.Now().UnixNano())
	}
	ring, err := shm.Create(filepath.Join(dir, name), o.Ring)
	if err != nil {
		t.Fatal(err)
	}
	defer ring.Close()
	if o.RingDir != "" {
		defer os.Remove(ring.Path())
	}
	rd, err := ring.NewReader(shm.ReaderOptions{SealAfter: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(cleanEnv(), "LD_PRELOAD="+lib, "MEMSCOPE_RING="+ring.Path())
	cmd.Env = append(cmd.Env, o.Env...)
	cmd.Dir = o.Dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if o.Stdin != nil {
		cmd.Stdin = bytes.NewReader(o.Stdin)
	}
	res := &result{}
	var pollErr error
	consume := func() bool {
		n, err := rd.Poll(func(r shm.Record) error {
			ev, err := decode(r)
			if err != nil {
				return fmt.Errorf("pid %d tid %d: %w", r.Pid, r.Tid, err)
			}
			res.Events = append(res.Events, ev)
			return nil
		})
		if err == nil {
			err = rd.Commit()
		}
		if err != nil && pollErr == nil {
			pollErr = err
		}
		return n > 0
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var waitErr error
loop:
	for {
		select {
		case waitErr = <-done:
			break loop
		default:
			if !consume() {
				time.Sleep(time.Millisecond)
			}
		}
	}
	// Drain: chunks of exited processes are sealed by the Reader.
	deadline := time.Now().Add(5 * time.Second)
	for !rd.Idle() && time.Now().Before(deadline) && pollErr == nil {
		if !consume() {
			time.Sleep(2 * time.Millisecond)
		}
	}
	consume()
	if pollErr != nil {
		t.Fatalf("reading the ring: %v", pollErr)
	}
	if !rd.Idle() {
		t.Fatalf("ring not drained 5 s after %s exited", argv[0])
	}
	res.Dropped = rd.Stats().Dropped
	res.Stdout, res.Stderr = stdout.Bytes(), stderr.Bytes()
	res.ExitCode = exitCode(t, waitErr, &res.Signal)
	return res
}

// bare runs argv without the library.
func bare(t testing.TB, argv []string, o runOpts) *result {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(cleanEnv(), o.Env...)
	cmd.Dir = o.Dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if o.Stdin != nil {
		cmd.Stdin = bytes.NewReader(o.Stdin)
	}
	res := &result{}
	err := cmd.Run()
	res.Stdout, res.Stderr = stdout.Bytes(), stderr.Bytes()
	res.ExitCode = exitCode(t, err, &res.Signal)
	return res
}

func exitCode(t testing.TB, err error, sig *syscall.Signal) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("running: %v", err)
	}
	ws := ee.Sys().(syscall.WaitStatus)
	if ws.Signaled() {
		*sig = ws.Signal()
		return -1
	}
	return ws.ExitStatus()
}

// cleanEnv is the test's environment without anything memscope reads.
//
// Every traced program runs with MEMSCOPE_UNWIND_CHECK=1: the library
// compares each stack it records with libunwind's and aborts on the first
// difference, so every e2e test also checks the unwinder. The analyzer
// keeps no symbol cache (TestSymbolCache tests it): every test resolves
// its frames from the object files.
func cleanEnv() []string {
	env := []string{"MEMSCOPE_UNWIND_CHECK=1", "MEMSCOPE_SYMBOL_CACHE=off"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LD_PRELOAD=") || strings.HasPrefix(kv, "MEMSCOPE_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// ---- queries over a run's events ----

func (r *result) of(pid uint32, typ shm.RecordType) []event {
	var out []event
	for _, ev := range r.Events {
		if ev.Pid == pid && ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// processes returns the PROCESS records in order of appearance.
func (r *result) processes() []shm.Process {
	var out []shm.Process
	for _, ev := range r.Events {
		if ev.Type == shm.RecProcess {
			out = append(out, ev.Process)
		}
	}
	return out
}

// mainPid is the pid of the first PROCESS start record.
func (r *result) mainPid(t testing.TB) uint32 {
	t.Helper()
	for _, p := range r.processes() {
		if p.Event == shm.ProcessStart {
			return p.Pid
		}
	}
	t.Fatal("no PROCESS start record")
	return 0
}

func (r *result) stacks(pid uint32) map[uint64][]uint64 {
	m := map[uint64][]uint64{}
	for _, ev := range r.of(pid, shm.RecStack) {
		m[ev.Stack.ID] = ev.Stack.PCs
	}
	return m
}

// module returns the newest LOAD record of pid whose path ends in suffix.
func (r *result) module(pid uint32, suffix string) (shm.Module, bool) {
	var m shm.Module
	found := false
	for _, ev := range r.of(pid, shm.RecModule) {
		if ev.Module.Event == shm.ModuleLoad && strings.HasSuffix(ev.Module.Path, suffix) {
			m, found = ev.Module, true
		}
	}
	return m, found
}

// srcLoc is one frame as addr2line names it.
type srcLoc struct {
	Function string
	File     string // base name
	Line     int
}

func (l srcLoc) String() string { return fmt.Sprintf("%s %s:%d", l.Function, l.File, l.Line) }

// addr2line resolves return addresses pcs in the object at path loaded
// with bias (pc-1 is looked up: the call instruction).
func addr2line(t testing.TB, path string, bias uint64, pcs []uint64) []srcLoc {
	t.Helper()
	args := []string{"-f", "-C", "-e", path}
	for _, pc := range pcs {
		args = append(args, fmt.Sprintf("%#x", pc-1-bias))
	}
	out, err := exec.Command("addr2line", args...).Output()
	if err != nil {
		t.Fatalf("addr2line: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2*len(pcs) {
		t.Fatalf("addr2line gave %d lines for %d addresses", len(lines), len(pcs))
	}
	locs := make([]srcLoc, len(pcs))
	for i := range pcs {
		fn := lines[2*i]
		fileLine := lines[2*i+1]
		if j := strings.Index(fileLine, " (discriminator"); j >= 0 {
			fileLine = fileLine[:j]
		}
		file, line, _ := strings.Cut(fileLine, ":")
		var n int
		fmt.Sscanf(line, "%d", &n)
		locs[i] = srcLoc{Function: fn, File: filepath.Base(file), Line: n}
	}
	return locs
}

// inModule reports whether pc falls in one of m's segments.
func inModule(m shm.Module, pc uint64) bool {
	for _, s := range m.Segments {
		lo := m.Bias + s.Vaddr
		if pc >= lo && pc < lo+s.Memsz {
			return true
		}
	}
	return false
}

// programFrames resolves the frames of stack pcs that lie in module m
// (the test program), innermost first, stopping at the first frame
// outside it after having entered it.
func programFrames(t testing.TB, m shm.Module, pcs []uint64) []srcLoc {
	t.Helper()
	var mine []uint64
	for _, pc := range pcs {
		if inModule(m, pc) {
			mine = append(mine, pc)
		} else if len(mine) > 0 {
			break
		}
	}
	if len(mine) == 0 {
		return nil
	}
	return addr2line(t, m.Path, m.Bias, mine)
}
