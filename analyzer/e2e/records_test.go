package e2e

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/shm"
)

// allocLike is an ALLOC or REALLOC record reduced to what entry.c fixes.
type allocLike struct {
	Type  shm.RecordType
	Kind  shm.AllocKind
	Size  uint64
	Align uint32
	Old   bool // REALLOC with a non-null old block
	New   bool // REALLOC with a non-null new block
}

// TestEntryPoints checks the record of every entry point of entry.c, in
// order: kind, requested size, requested alignment, the alignment of the
// pointer, and that the failing calls (calloc overflow, posix_memalign
// EINVAL, malloc(SIZE_MAX), reallocarray overflow, free(NULL)) left no
// record. entry.c itself checks errno and exits non-zero if it changed.
func TestEntryPoints(t *testing.T) {
	res := traced(t, []string{program(t, "entry")}, runOpts{})
	require.Equal(t, 0, res.ExitCode, "entry.c failed check %d (errno or alignment)", res.ExitCode)
	pid := res.mainPid(t)
	page := uint32(os.Getpagesize())
	want := []allocLike{
		{Type: shm.RecAlloc, Kind: shm.KindMalloc, Size: 24},
		{Type: shm.RecAlloc, Kind: shm.KindCalloc, Size: 32},
		{Type: shm.RecRealloc, Kind: shm.KindRealloc, Size: 40, New: true},
		{Type: shm.RecRealloc, Kind: shm.KindRealloc, Size: 4000, Old: true, New: true},
		{Type: shm.RecRealloc, Kind: shm.KindReallocarray, Size: 40, New: true},
		{Type: shm.RecRealloc, Kind: shm.KindReallocarray, Size: 80, Old: true, New: true},
		{Type: shm.RecAlloc, Kind: shm.KindPosixMemalign, Size: 100, Align: 64},
		{Type: shm.RecAlloc, Kind: shm.KindAlignedAlloc, Size: 256, Align: 128},
		{Type: shm.RecAlloc, Kind: shm.KindMemalign, Size: 72, Align: 256},
		{Type: shm.RecAlloc, Kind: shm.KindValloc, Size: 100, Align: page},
		{Type: shm.RecAlloc, Kind: shm.KindPvalloc, Size: 100, Align: page},
		{Type: shm.RecAlloc, Kind: shm.KindMalloc, Size: 10},
		{Type: shm.RecAlloc, Kind: shm.KindMemalign, Size: 48, Align: 64},
	}
	var got []allocLike
	frees := 0
	for _, ev := range res.Events {
		if ev.Pid != pid {
			continue
		}
		switch ev.Type {
		case shm.RecAlloc:
			a := ev.Alloc
			got = append(got, allocLike{Type: ev.Type, Kind: a.Kind, Size: a.Size, Align: a.Align})
			if a.Align != 0 {
				assert.Zero(t, a.Ptr%uint64(a.Align), "%v pointer %#x not aligned to %d", a.Kind, a.Ptr, a.Align)
			}
			assert.NotZero(t, a.StackID, "%v without a stack", a.Kind)
		case shm.RecRealloc:
			r := ev.Realloc
			got = append(got, allocLike{Type: ev.Type, Kind: r.Kind, Size: r.Size, Old: r.OldPtr != 0, New: r.NewPtr != 0})
			assert.LessOrEqual(t, r.TSBefore, ev.TS, "REALLOC ts_before after ts")
		case shm.RecFree:
			frees++
		}
	}
	assert.Equal(t, want, got)
	assert.Equal(t, 10, frees, "FREE records (free(NULL) records nothing)")
}

// TestReallocRecords checks realloc(p, 0) (a free: no new block, no stack)
// and realloc(NULL, n) (old 0), and that each REALLOC's new block is the
// next one's old block along the chain.
func TestReallocRecords(t *testing.T) {
	res := traced(t, []string{program(t, "realloc")}, runOpts{})
	require.Equal(t, 0, res.ExitCode)
	var rs []shm.Realloc
	for _, ev := range res.of(res.mainPid(t), shm.RecRealloc) {
		rs = append(rs, ev.Realloc)
	}
	require.Len(t, rs, 8)
	sizes := []uint64{16, 32, 64, 8, 0, 0, 200, 300}
	for i, r := range rs {
		assert.Equal(t, sizes[i], r.Size, "realloc #%d size", i)
	}
	assert.Zero(t, rs[0].OldPtr, "realloc(NULL, 16) has no old block")
	for i := 1; i <= 4; i++ {
		assert.Equal(t, rs[i-1].NewPtr, rs[i].OldPtr, "chain link %d", i)
	}
	assert.Zero(t, rs[4].NewPtr, "realloc(p, 0) frees p")
	assert.Zero(t, rs[4].StackID, "realloc(p, 0) is a free: no stack")
	assert.Zero(t, rs[5].OldPtr, "realloc(NULL, 0)")
	assert.NotZero(t, rs[5].NewPtr, "realloc(NULL, 0) returns a block")
}

// TestProcessRecords checks PROCESS start/fork/exec and the pids of the
// chunks: every record of a process is in that process's chunks.
func TestProcessRecords(t *testing.T) {
	bin := program(t, "exec")
	res := traced(t, []string{bin}, runOpts{})
	require.Equal(t, 0, res.ExitCode)
	ps := res.processes()
	require.GreaterOrEqual(t, len(ps), 4)
	start := ps[0]
	assert.Equal(t, shm.ProcessStart, start.Event)
	assert.Equal(t, uint32(os.Getpid()), start.Ppid, "the test started the program")
	assert.Equal(t, bin, start.Exe)
	assert.Equal(t, bin, start.Arg0)
	var fork, exec, sh *shm.Process
	for i := range ps {
		p := &ps[i]
		switch {
		case p.Event == shm.ProcessFork:
			fork = p
		case p.Event == shm.ProcessExec:
			exec = p
		case p.Event == shm.ProcessStart && p.Pid != start.Pid:
			sh = p
		}
	}
	require.NotNil(t, fork, "PROCESS fork")
	require.NotNil(t, exec, "PROCESS exec")
	require.NotNil(t, sh, "PROCESS start of system()'s shell")
	assert.Equal(t, start.Pid, fork.Ppid)
	assert.Equal(t, fork.Pid, exec.Pid, "exec keeps the pid")
	assert.Equal(t, start.Pid, exec.Ppid)
	assert.Equal(t, bin, exec.Exe)
	assert.Equal(t, bin, exec.Arg0)
	assert.Equal(t, start.Pid, sh.Ppid)
	_, ok := res.module(fork.Pid, "/exec")
	assert.True(t, ok, "the fork child describes its modules")
	// exit() writes PROCESS exit with the status, and so does dash's _exit
	// (the library wraps _exit).
	exits := map[uint32][]int32{}
	for _, p := range ps {
		if p.Event == shm.ProcessExit {
			exits[p.Pid] = append(exits[p.Pid], p.Status)
		}
	}
	assert.Equal(t, map[uint32][]int32{start.Pid: {0}, exec.Pid: {3}, sh.Pid: {7}}, exits)
	assert.Equal(t, "sh", sh.Arg0, "system() runs sh -c")
	for _, ev := range res.Events {
		if ev.Type == shm.RecProcess {
			assert.Equal(t, ev.Process.Pid, ev.Pid, "PROCESS record in another process's chunk")
			assert.Equal(t, ev.Pid, ev.Tid, "single-threaded: tid == pid")
		}
	}
}

// TestExitRecords: PROCESS exit carries the status of exit() and of
// _exit (which the library wraps); abort and signals write none.
func TestExitRecords(t *testing.T) {
	for _, tc := range []struct {
		mode string
		want []int32
	}{{"exit", []int32{0}}, {"_exit", []int32{9}}, {"abort", nil}, {"kill", nil}, {"segv", nil}} {
		res := traced(t, []string{program(t, "crash"), tc.mode}, runOpts{})
		var got []int32
		for _, p := range res.processes() {
			if p.Event == shm.ProcessExit {
				got = append(got, p.Status)
			}
		}
		assert.Equal(t, tc.want, got, "crash %s", tc.mode)
	}
}

// TestFollowForkOff: MEMSCOPE_FOLLOW_FORK=0 leaves the fork child (and
// what it execs) untraced, the parent traced.
func TestFollowForkOff(t *testing.T) {
	res := traced(t, []string{program(t, "exec")}, runOpts{Env: []string{"MEMSCOPE_FOLLOW_FORK=0"}})
	require.Equal(t, 0, res.ExitCode)
	main := res.mainPid(t)
	for _, p := range res.processes() {
		assert.NotEqual(t, shm.ProcessFork, p.Event, "fork child traced: %+v", p)
		assert.NotEqual(t, shm.ProcessExec, p.Event, "exec'd child traced: %+v", p)
	}
	st := account(res.Events)[main]
	assert.Equal(t, uint64(1), st.Totals.Allocations)
}

// TestThreadRecords checks the THREAD names and that each storm thread's
// records are in chunks owned by its tid.
func TestThreadRecords(t *testing.T) {
	res := traced(t, []string{program(t, "threads")}, runOpts{})
	require.Equal(t, 0, res.ExitCode)
	pid := res.mainPid(t)
	names := map[uint32]string{}
	for _, ev := range res.of(pid, shm.RecThread) {
		assert.Equal(t, ev.Tid, ev.Thread.Tid, "THREAD record written by its own thread")
		names[ev.Thread.Tid] = ev.Thread.Name
	}
	assert.Equal(t, "threads", names[pid])
	var storms []string
	for tid, n := range names {
		if tid != pid {
			storms = append(storms, n)
		}
	}
	assert.ElementsMatch(t, []string{"storm-1", "storm-2", "storm-3", "storm-4", "storm-5", "storm-6", "storm-7", "storm-8"}, storms)
}

// TestModuleRecords: the plugin's LOAD (with its build ID and segments,
// read from the ELF file) and UNLOAD records, and the program's own.
func TestModuleRecords(t *testing.T) {
	bin := program(t, "dlopen")
	plugin := program(t, "plugin", "-shared", "-fPIC")
	res := traced(t, []string{bin, plugin}, runOpts{})
	require.Equal(t, 0, res.ExitCode)
	pid := res.mainPid(t)
	var events []shm.Module
	for _, ev := range res.of(pid, shm.RecModule) {
		if ev.Module.Path == plugin {
			events = append(events, ev.Module)
		}
	}
	require.Len(t, events, 2)
	load, unload := events[0], events[1]
	assert.Equal(t, shm.ModuleLoad, load.Event)
	assert.Equal(t, shm.ModuleUnload, unload.Event)
	assert.Equal(t, load.Bias, unload.Bias)
	assert.Equal(t, load.Segments, unload.Segments)
	f, err := elf.Open(plugin)
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, buildID(t, f), load.BuildID, "build ID")
	assert.Equal(t, load.BuildID, unload.BuildID)
	var loads []shm.Segment
	for _, p := range f.Progs {
		if p.Type == elf.PT_LOAD {
			loads = append(loads, shm.Segment{Vaddr: p.Vaddr, Memsz: p.Memsz, Offset: p.Off, Flags: uint32(p.Flags)})
		}
	}
	assert.Equal(t, loads, load.Segments)
	exe, ok := res.module(pid, "/dlopen")
	require.True(t, ok, "no MODULE record for the program")
	assert.Equal(t, bin, exe.Path)
	for _, lib := range []string{"/libc.so.6", "/libmemscope.so"} {
		_, ok := res.module(pid, lib)
		assert.True(t, ok, "no MODULE record for %s", lib)
	}
}

// fakeAnalyzer compiles a stand-in for memscope-analyze that writes how
// it was started to $MEMSCOPE_TEST_REPORT and removes the ring.
func fakeAnalyzer(t *testing.T, dir string) string {
	src := filepath.Join(dir, "fake.c")
	bin := filepath.Join(dir, "fake-analyzer")
	require.NoError(t, os.WriteFile(src, []byte(`
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	char tmp[4096], path[64], target[256];
	sigset_t mask;
	snprintf(tmp, sizeof tmp, "%s.tmp", getenv("MEMSCOPE_TEST_REPORT"));
	/* Look before opening anything. */
	char fds[2048] = "";
	for (int fd = 0; fd < 1024; fd++) {
		if (fcntl(fd, F_GETFD) < 0)
			continue;
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(path, target, sizeof target - 1);
		target[n < 0 ? 0 : n] = 0;
		if (strncmp(target, "pipe:", 5) == 0)
			target[4] = 0;
		snprintf(fds + strlen(fds), sizeof fds - strlen(fds), "%s%d:%s", fds[0] ? " " : "", fd, target);
	}
	sigprocmask(SIG_SETMASK, NULL, &mask);
	int blocked = 0;
	for (int s = 1; s < 65; s++)
		blocked += sigismember(&mask, s) == 1;
	FILE *f = fopen(tmp, "w");
	fprintf(f, "args:");
	for (int i = 1; i < argc; i++)
		fprintf(f, "%s%s", i == 1 ? " " : " ", argv[i]);
	fprintf(f, "\npreload: %s\n", getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "unset");
	fprintf(f, "ring-env: %s\n", getenv("MEMSCOPE_RING") ? getenv("MEMSCOPE_RING") : "unset");
	fprintf(f, "fds: %s\n", fds);
	fprintf(f, "pid: %d\nsid: %d\n", getpid(), getsid(0));
	fprintf(f, "sigmask: %d\n", blocked);
	fprintf(f, "ring-file: %s\n", argc > 3 && access(argv[3], R_OK) == 0 ? "yes" : "no");
	fclose(f);
	rename(tmp, getenv("MEMSCOPE_TEST_REPORT"));
	if (argc > 3)
		unlink(argv[3]);
	return 0;
}
`), 0o600))
	out, err := exec.Command("gcc", "-O1", "-o", bin, src).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return bin
}

func buildID(t *testing.T, f *elf.File) []byte {
	s := f.Section(".note.gnu.build-id")
	require.NotNil(t, s)
	b, err := s.Data()
	require.NoError(t, err)
	// namesz, descsz, type, "GNU\0", desc
	return b[16:]
}

// TestDepthZero: MEMSCOPE_DEPTH=0 records no stacks.
func TestDepthZero(t *testing.T) {
	res := traced(t, []string{program(t, "leaks")}, runOpts{Env: []string{"MEMSCOPE_DEPTH=0"}})
	require.Equal(t, 0, res.ExitCode)
	pid := res.mainPid(t)
	assert.Empty(t, res.of(pid, shm.RecStack))
	allocs := res.of(pid, shm.RecAlloc)
	require.Len(t, allocs, 6)
	for _, ev := range allocs {
		assert.Zero(t, ev.Alloc.StackID)
	}
}

// TestStackDepth: MEMSCOPE_DEPTH=2 cuts stacks at 2 frames, flagged
// truncated, and keeps the innermost ones.
func TestStackDepth(t *testing.T) {
	bin := program(t, "leaks")
	res := traced(t, []string{bin}, runOpts{Env: []string{"MEMSCOPE_DEPTH=2"}})
	require.Equal(t, 0, res.ExitCode)
	pid := res.mainPid(t)
	m, ok := res.module(pid, "/leaks")
	require.True(t, ok)
	found := false
	for _, ev := range res.of(pid, shm.RecStack) {
		assert.LessOrEqual(t, len(ev.Stack.PCs), 2)
		locs := addr2line(t, m.Path, m.Bias, ev.Stack.PCs)
		if locs[0].Function == "level3" {
			found = true
			assert.Equal(t, "level2", locs[1].Function)
			assert.Equal(t, uint32(shm.FlagTruncated), ev.Flags&shm.FlagTruncated)
		}
	}
	assert.True(t, found, "no stack starting in level3")
}

// TestStacksOncePerProcess: each STACK id is written once per process.
// (threads.c has fewer stacks than the stack table's first region holds:
// two threads inserting one stack while the table grows may each write
// it, preload/slots.c T4, which testdata/manystacks.c exercises.)
func TestStacksOncePerProcess(t *testing.T) {
	res := traced(t, []string{program(t, "threads")}, runOpts{})
	require.Equal(t, 0, res.ExitCode)
	seen := map[[2]uint64]int{}
	used := map[uint64]bool{}
	for _, ev := range res.Events {
		switch ev.Type {
		case shm.RecStack:
			seen[[2]uint64{uint64(ev.Pid), ev.Stack.ID}]++
		case shm.RecAlloc:
			used[ev.Alloc.StackID] = true
		}
	}
	for k, n := range seen {
		assert.Equal(t, 1, n, "stack %x written %d times in pid %d", k[1], n, k[0])
	}
	for id := range used {
		assert.Equal(t, 1, seen[[2]uint64{uint64(res.mainPid(t)), id}], "stack %x used but not written", id)
	}
}

// TestInvalidEnv: a bad value gives one stderr line naming the variable,
// and the default is used.
func TestInvalidEnv(t *testing.T) {
	for _, kv := range []string{"MEMSCOPE_DEPTH=lots", "MEMSCOPE_DEPTH=300", "MEMSCOPE_MODE=fast", "MEMSCOPE_FOLLOW_FORK=yes", "MEMSCOPE_CLOCK=hpet"} {
		t.Run(kv, func(t *testing.T) {
			res := traced(t, []string{program(t, "leaks")}, runOpts{Env: []string{kv}})
			require.Equal(t, 0, res.ExitCode)
			name, _, _ := strings.Cut(kv, "=")
			lines := strings.Split(strings.TrimSuffix(string(res.Stderr), "\n"), "\n")
			require.Len(t, lines, 1, "stderr: %q", res.Stderr)
			assert.True(t, strings.HasPrefix(lines[0], "memscope: "+kv+" is invalid"), "stderr: %q", lines[0])
			assert.Contains(t, lines[0], name)
			st := account(res.Events)[res.mainPid(t)]
			assert.Equal(t, uint64(6), st.Totals.Allocations)
		})
	}
}

// TestFileDescriptorsUnchanged: the library holds no file descriptor in
// the program: its first open() gets the descriptor it gets without the
// library (it got 5 instead of 3 when libunwind was set up at start). libunwind
// keeps a pipe open once it is set up, so it is set up only for a stack
// that needs it (fdnum's never do); the unwind check mode uses libunwind
// for every stack, so it is off here.
func TestFileDescriptorsUnchanged(t *testing.T) {
	bin := program(t, "fdnum")
	// Untraced, it says which descriptor is free first here (3, unless
	// whatever runs the tests leaked one to us).
	bare, err := exec.Command(bin).Output()
	require.NoError(t, err)
	require.NotEmpty(t, bare)
	res := traced(t, []string{bin}, runOpts{Env: []string{"MEMSCOPE_UNWIND_CHECK=0"}})
	require.Equal(t, 0, res.ExitCode, "stderr: %s", res.Stderr)
	assert.Equal(t, string(bare), string(res.Stdout), "traced")
	st := account(res.Events)[res.mainPid(t)]
	require.NotNil(t, st)
	assert.Equal(t, uint64(4), st.Totals.Allocations)
	assert.Equal(t, uint64(4), st.Totals.Frees)

	// A library whose constructor allocates (libselinux does, in ls,
	// sed, tar): the loader's start code below it has no CFI, and its
	// stacks need no libunwind either.
	ctor := program(t, "ctoralloc", "-shared", "-fPIC")
	bareCmd := exec.Command(bin)
	bareCmd.Env = append(os.Environ(), "LD_PRELOAD="+ctor)
	bare, err = bareCmd.Output()
	require.NoError(t, err)
	preload := "LD_PRELOAD=" + library(t) + ":" + ctor
	res = traced(t, []string{bin}, runOpts{Env: []string{preload, "MEMSCOPE_UNWIND_CHECK=0"}})
	require.Equal(t, 0, res.ExitCode, "stderr: %s", res.Stderr)
	assert.Equal(t, string(bare), string(res.Stdout), "traced, with a constructor allocating")
	st = account(res.Events)[res.mainPid(t)]
	require.NotNil(t, st)
	assert.Equal(t, uint64(6), st.Totals.Allocations)
	assert.Equal(t, uint64(5), st.Totals.Frees)
}

// TestConstructorStacks: the stacks of a preloaded library's constructor
// end in the loader's start code, which has no CFI; under the check mode
// every one of them is libunwind's, and the kept block's stack starts at
// the constructor's line.
func TestConstructorStacks(t *testing.T) {
	bin := program(t, "fdnum")
	ctor := program(t, "ctoralloc", "-shared", "-fPIC")
	res := traced(t, []string{bin}, runOpts{Env: []string{"LD_PRELOAD=" + library(t) + ":" + ctor}})
	require.Equal(t, 0, res.ExitCode, "stderr: %s", res.Stderr)
	require.Empty(t, string(res.Stderr))
	mainPid := res.mainPid(t)
	st := account(res.Events)[mainPid]
	require.NotNil(t, st)
	stacks := map[uint64][]uint64{}
	for _, ev := range res.Events {
		if ev.Type == shm.RecStack {
			stacks[ev.Stack.ID] = ev.Stack.PCs
		}
	}
	mods := programModules(res, mainPid, ctor)
	var got []string
	for _, g := range st.leaks() {
		got = append(got, groupString(g.Bytes, g.Objects, framesIn(t, mods, stacks[g.Stack])))
	}
	want := groupString(40, 1, []srcLoc{{Function: "ctor_alloc", File: "ctoralloc.c", Line: sourceLine(t, "ctoralloc.c", "ctor_block")}})
	assert.Contains(t, got, want)
}

// TestBadRing: a MEMSCOPE_RING that is not a ring: one line, then the
// program runs untraced and unchanged.
func TestBadRing(t *testing.T) {
	lib := library(t)
	dir := t.TempDir()
	notRing := filepath.Join(dir, "not-a-ring")
	require.NoError(t, os.WriteFile(notRing, bytes.Repeat([]byte{1}, 8192), 0o600))
	for _, ring := range []string{notRing, filepath.Join(dir, "missing")} {
		res := bare(t, []string{program(t, "signalfd")}, runOpts{Env: []string{"LD_PRELOAD=" + lib, "MEMSCOPE_RING=" + ring}})
		assert.Equal(t, 0, res.ExitCode)
		assert.Equal(t, "got SIGTERM\n", string(res.Stdout))
		assert.Equal(t, 1, strings.Count(string(res.Stderr), "\n"), "stderr: %q", res.Stderr)
		assert.True(t, strings.HasPrefix(string(res.Stderr), "memscope: MEMSCOPE_RING="+ring+": "), "stderr: %q", res.Stderr)
	}
}

// TestBareModeNoAnalyzer: without MEMSCOPE_RING and no analyzer to be
// found: one line, then pass-through; no ring left behind.
func TestBareModeNoAnalyzer(t *testing.T) {
	// A copy of the library in a directory without memscope-analyze.
	libDir := t.TempDir()
	lib := filepath.Join(libDir, "libmemscope.so")
	b, err := os.ReadFile(library(t))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(lib, b, 0o755))
	for _, tc := range []struct {
		name string
		env  []string
		say  string
	}{
		{"MEMSCOPE_ANALYZER", []string{"MEMSCOPE_ANALYZER=" + filepath.Join(libDir, "nope")}, "memscope: MEMSCOPE_ANALYZER=" + filepath.Join(libDir, "nope") + " is not an executable file; not tracing\n"},
		{"nowhere", nil, "memscope: cannot find memscope-analyze beside libmemscope.so or on PATH (set MEMSCOPE_ANALYZER); not tracing\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xdg := t.TempDir()
			env := append([]string{"LD_PRELOAD=" + lib, "XDG_RUNTIME_DIR=" + xdg, "PATH=/usr/bin:/bin"}, tc.env...)
			res := bare(t, []string{program(t, "signalfd")}, runOpts{Env: env})
			assert.Equal(t, 0, res.ExitCode)
			assert.Equal(t, "got SIGTERM\n", string(res.Stdout))
			assert.Equal(t, tc.say, string(res.Stderr))
			left, err := os.ReadDir(filepath.Join(xdg, "memscope"))
			require.NoError(t, err)
			assert.Empty(t, left, "ring left behind")
		})
	}
}

// TestBareModeDetached starts a stand-in analyzer (a script that writes
// what it was given) in bare mode under sigsuspend.c, which fails if the
// program sees any child but its own, and checks how the analyzer was
// started: arguments, environment without LD_PRELOAD, stdin on /dev/null,
// no fd but 0-2, not a child of the program, its own session.
func TestBareModeDetached(t *testing.T) {
	lib := library(t)
	xdg := t.TempDir()
	report := filepath.Join(xdg, "report")
	script := fakeAnalyzer(t, xdg)
	res := bare(t, []string{program(t, "sigsuspend")}, runOpts{Env: []string{
		"LD_PRELOAD=" + lib, "XDG_RUNTIME_DIR=" + xdg, "MEMSCOPE_ANALYZER=" + script, "MEMSCOPE_TEST_REPORT=" + report,
	}})
	require.Equal(t, 0, res.ExitCode, "stderr: %s", res.Stderr)
	assert.Equal(t, "child 4\n", string(res.Stdout))
	assert.Empty(t, string(res.Stderr))
	var b []byte
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var err error
		if b, err = os.ReadFile(report); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.NotNil(t, b, "the analyzer never ran")
	rep := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		rep[k] = v
	}
	ringDir := filepath.Join(xdg, "memscope")
	assert.True(t, strings.HasPrefix(rep["args"], "record --ring "+ringDir+"/ring."), "args %q", rep["args"])
	assert.Equal(t, "unset", rep["preload"])
	assert.Equal(t, "unset", rep["ring-env"])
	assert.Equal(t, "0:/dev/null 1:/dev/null 2:pipe", rep["fds"], "open fds: stdin and stdout on /dev/null, stderr shared")
	assert.Equal(t, "yes", rep["ring-file"])
	assert.Equal(t, rep["pid"], rep["sid"], "the analyzer leads its own session")
	assert.Equal(t, "0", rep["sigmask"], "signal mask")
	st, err := os.Stat(ringDir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), st.Mode().Perm())
}
