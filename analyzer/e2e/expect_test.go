package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/shm"
)

// The schema of testdata/NAME.expect.json (documented in testdata/README.md).
type expectFile struct {
	Schema  int         `json:"schema"`
	Program string      `json:"program"`
	Sources []string    `json:"sources"`
	Runs    []expectRun `json:"runs"`
}

type expectRun struct {
	Args      []string        `json:"args"`
	Stdout    string          `json:"stdout"`
	Processes []expectProcess `json:"processes"`
	Threads   []expectThread  `json:"threads"`
	Modules   []expectModule  `json:"modules"`
}

type expectProcess struct {
	Role          string        `json:"role"`
	Image         *string       `json:"image"`
	ExitStatus    *int          `json:"exit_status"`
	Signal        *string       `json:"signal"`
	Exact         bool          `json:"exact"`
	Totals        expectTotals  `json:"totals"`
	LeakedBytes   uint64        `json:"leaked_bytes"`
	LeakedObjects uint64        `json:"leaked_objects"`
	Leaks         []expectGroup `json:"leaks"`
}

type expectTotals struct {
	Allocations    uint64  `json:"allocations"`
	Frees          uint64  `json:"frees"`
	BytesAllocated *uint64 `json:"bytes_allocated"`
}

type expectGroup struct {
	Bytes   uint64   `json:"bytes"`
	Objects uint64   `json:"objects"`
	Frames  []srcLoc `json:"frames"`
}

type expectThread struct {
	Name        string `json:"name"`
	Allocations int    `json:"allocations"`
	Frees       int    `json:"frees"`
}

type expectModule struct {
	PathSuffix string   `json:"path_suffix"`
	Events     []string `json:"events"`
}

func (l *srcLoc) UnmarshalJSON(b []byte) error {
	var v struct {
		Function string `json:"function"`
		File     string `json:"file"`
		Line     int    `json:"line"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*l = srcLoc{Function: v.Function, File: v.File, Line: v.Line}
	return nil
}

func loadExpect(t *testing.T, name string) expectFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root(t), "testdata", name+".expect.json"))
	require.NoError(t, err)
	var e expectFile
	require.NoError(t, json.Unmarshal(b, &e), "testdata/%s.expect.json", name)
	require.Equal(t, 1, e.Schema)
	return e
}

var signalNames = map[string]syscall.Signal{
	"SIGABRT": syscall.SIGABRT, "SIGKILL": syscall.SIGKILL, "SIGSEGV": syscall.SIGSEGV,
}

// TestExpectations runs every testdata program under the library and
// checks the records, replayed with the counting rules of DESIGN §6,
// against testdata/NAME.expect.json.
func TestExpectations(t *testing.T) {
	for _, name := range expectPrograms {
		t.Run(name, func(t *testing.T) {
			exp := loadExpect(t, name)
			bin := program(t, name)
			for _, run := range exp.Runs {
				args := run.Args
				if name == "dlopen" {
					args = []string{program(t, "plugin", "-shared", "-fPIC")}
				}
				t.Run(strings.Join(append([]string{"args"}, run.Args...), "_"), func(t *testing.T) {
					// handoff and passring pass blocks between threads that
					// yield while they wait: with the unwind check on and
					// make test's other packages on both cores they took
					// 21 s (the default limit is 20).
					res := traced(t, append([]string{bin}, args...), runOpts{Timeout: 2 * time.Minute})
					checkRun(t, bin, run, res)
				})
			}
		})
	}
}

func checkRun(t *testing.T, bin string, run expectRun, res *result) {
	require.Zero(t, res.Dropped, "dropped events")
	assert.Equal(t, run.Stdout, string(res.Stdout), "stdout")
	assert.Empty(t, string(res.Stderr), "stderr")
	main := run.Processes[0]
	if main.Signal != nil {
		assert.Equal(t, signalNames[*main.Signal], res.Signal, "signal")
	} else {
		assert.Equal(t, *main.ExitStatus, res.ExitCode, "exit status")
	}
	states := account(res.Events)
	stacks := map[uint64][]uint64{}
	for _, ev := range res.Events {
		if ev.Type == shm.RecStack {
			stacks[ev.Stack.ID] = ev.Stack.PCs
		}
	}
	mainPid := res.mainPid(t)
	for _, p := range run.Processes {
		pid := findProcess(t, res, mainPid, p.Role)
		st := states[pid]
		require.NotNil(t, st, "no state for %s (pid %d)", p.Role, pid)
		if p.Image != nil {
			assert.Equal(t, *p.Image, filepath.Base(st.Image), "%s: image", p.Role)
		}
		if !p.Exact {
			assert.NotZero(t, st.Totals.Allocations, "%s: no allocation recorded", p.Role)
			continue
		}
		assert.Equal(t, p.Totals.Allocations, st.Totals.Allocations, "%s: allocations", p.Role)
		assert.Equal(t, p.Totals.Frees, st.Totals.Frees, "%s: frees", p.Role)
		if p.Totals.BytesAllocated != nil {
			assert.Equal(t, *p.Totals.BytesAllocated, st.Totals.BytesAllocated, "%s: bytes allocated", p.Role)
		}
		assert.Zero(t, st.Totals.UnknownFrees, "%s: frees of unknown blocks", p.Role)
		mods := programModules(res, pid, bin)
		var got []string
		for _, g := range st.leaks() {
			got = append(got, groupString(g.Bytes, g.Objects, framesIn(t, mods, stacks[g.Stack])))
		}
		var want []string
		for _, g := range p.Leaks {
			want = append(want, groupString(g.Bytes, g.Objects, g.Frames))
		}
		sort.Strings(got)
		sort.Strings(want)
		assert.Equal(t, want, got, "%s: leak groups", p.Role)
	}
	for _, th := range run.Threads {
		checkThread(t, res, mainPid, th)
	}
	for _, m := range run.Modules {
		var events []string
		for _, ev := range res.of(mainPid, shm.RecModule) {
			if strings.HasSuffix(ev.Module.Path, m.PathSuffix) {
				events = append(events, map[shm.ModuleEvent]string{shm.ModuleLoad: "load", shm.ModuleUnload: "unload"}[ev.Module.Event])
			}
		}
		assert.Equal(t, m.Events, events, "MODULE records of %s", m.PathSuffix)
	}
}

func groupString(bytes, objects uint64, frames []srcLoc) string {
	var fs []string
	for _, f := range frames {
		fs = append(fs, f.String())
	}
	return fmt.Sprintf("%d bytes in %d objects at [%s]", bytes, objects, strings.Join(fs, " <- "))
}

// findProcess maps an expectation role to a pid.
func findProcess(t *testing.T, res *result, mainPid uint32, role string) uint32 {
	t.Helper()
	switch role {
	case "main":
		return mainPid
	case "fork child", "fork child after exec":
		want := shm.ProcessFork
		if role == "fork child after exec" {
			want = shm.ProcessExec
		}
		for _, p := range res.processes() {
			if p.Event == want && (want == shm.ProcessExec || p.Ppid == mainPid) {
				return p.Pid
			}
		}
	case "system() shell":
		for _, p := range res.processes() {
			if p.Event == shm.ProcessStart && p.Pid != mainPid && p.Ppid == mainPid {
				return p.Pid
			}
		}
	}
	t.Fatalf("no process for role %q in %+v", role, res.processes())
	return 0
}

// programModules returns the newest LOAD records of pid for the program
// and any object loaded from the program's directory (the plugin).
func programModules(res *result, pid uint32, bin string) []shm.Module {
	dir := filepath.Dir(bin)
	latest := map[string]shm.Module{}
	for _, ev := range res.of(pid, shm.RecModule) {
		if ev.Module.Event == shm.ModuleLoad && filepath.Dir(ev.Module.Path) == dir {
			latest[ev.Module.Path] = ev.Module
		}
	}
	var out []shm.Module
	for _, m := range latest {
		out = append(out, m)
	}
	return out
}

// framesIn resolves the innermost run of frames of pcs that lie in the
// program's modules.
func framesIn(t *testing.T, mods []shm.Module, pcs []uint64) []srcLoc {
	var out []srcLoc
	entered := false
	for _, pc := range pcs {
		var m *shm.Module
		for i := range mods {
			if inModule(mods[i], pc) {
				m = &mods[i]
			}
		}
		if m == nil {
			if entered {
				break
			}
			continue
		}
		entered = true
		out = append(out, addr2line(t, m.Path, m.Bias, []uint64{pc})...)
	}
	return out
}

func checkThread(t *testing.T, res *result, pid uint32, th expectThread) {
	t.Helper()
	var tid uint32
	for _, ev := range res.of(pid, shm.RecThread) {
		if ev.Thread.Name == th.Name {
			tid = ev.Thread.Tid
		}
	}
	require.NotZero(t, tid, "no THREAD record named %q", th.Name)
	allocs, frees := 0, 0
	for _, ev := range res.Events {
		if ev.Pid != pid || ev.Tid != tid {
			continue
		}
		switch ev.Type {
		case shm.RecAlloc:
			allocs++
		case shm.RecFree:
			frees++
		}
	}
	assert.Equal(t, th.Allocations, allocs, "thread %s allocations", th.Name)
	assert.Equal(t, th.Frees, frees, "thread %s frees", th.Name)
}
