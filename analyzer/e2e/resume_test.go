package e2e

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/analyzer/live"
)

// startResumeRun runs testdata/resume.c under `run` (liveRun drives its
// steps) and waits until it is ready.
func startResumeRun(t *testing.T, out, xdg string, env ...string) *liveRun {
	r := startDriven(t, "resume", out, xdg, env)
	r.expect("ready")
	return r
}

// expect reads the next line the program says.
func (r *liveRun) expect(line string) {
	r.t.Helper()
	got, err := r.stdout.ReadString('\n')
	require.NoError(r.t, err)
	require.Equal(r.t, line+"\n", got)
}

// TestResumeAfterAnalyzerCrash: the analyzer of a `run` is killed with
// SIGKILL at five points of testdata/resume.c (before its first step,
// between steps, in the middle of a step's 40000 events); the program
// goes on (and forks a leaking child in step 3); `record --ring` takes
// the ring over, restores the dead analyzer's last checkpoint, replays
// the journal's records since, and writes reports identical to an
// uninterrupted run's, for the program and its child: program, exit
// status, totals, peak, every leak with its frames, and complete; the
// session's index lists both once. Each kill point runs with the
// default checkpoint interval (no checkpoint but the resume's own) and
// with a checkpoint every 4 KiB of records. A run with the journal off
// says it is incomplete, and why.
func TestResumeAfterAnalyzerCrash(t *testing.T) {
	// The uninterrupted run.
	var want resumeReports
	{
		out := t.TempDir()
		r := startResumeRun(t, out, shortTempDir(t))
		for n := 1; n <= 5; n++ {
			r.step(n)
		}
		require.NoError(t, r.stdin.Close())
		require.NoError(t, r.cmd.Wait(), "stderr:\n%s", r.stderr.String())
		want = readResumeReports(t, out)
	}
	// What the program is known to do (testdata/resume.c).
	root, child := want.root, want.child
	require.True(t, root.Complete)
	assert.Equal(t, "resume", filepath.Base(root.Program))
	assert.Equal(t, [2]uint64{51, 16*50 + 32}, [2]uint64{root.DirectObjects, root.DirectBytes}, "direct leaks")
	assert.Equal(t, [2]uint64{99, 99 * 32}, [2]uint64{root.IndirectObjects, root.IndirectBytes}, "indirect leaks")
	assert.Equal(t, [2]uint64{5, 5 * 200}, [2]uint64{root.ReachableObjects, root.ReachableBytes}, "reachable")
	assert.Equal(t, uint64(20000), root.Totals.TemporaryAllocations)
	require.True(t, child.Complete)
	// The child's own 7 and the list it inherited (its head direct).
	assert.Equal(t, [2]uint64{8, 7*24 + 32}, [2]uint64{child.DirectObjects, child.DirectBytes}, "the child's direct leaks")
	assert.Equal(t, [2]uint64{99, 99 * 32}, [2]uint64{child.IndirectObjects, child.IndirectBytes}, "the child's indirect leaks")
	require.NotNil(t, child.ExitStatus)
	assert.Equal(t, 3, *child.ExitStatus)
	require.Len(t, want.index, 2)

	const often = "MEMSCOPE_CHECKPOINT_EVERY=4K"
	for _, tc := range []struct {
		name    string
		before  int  // steps done before the kill
		midStep bool // the next step asked for, not awaited
		applied bool // the kill waits until the analyzer applied step 1's heap
		env     []string
		// offline steps run after the kill, then gap passes before the
		// resume: the ring holds records older than the reorder window.
		offline int
		gap     time.Duration
	}{
		{"before any step", 0, false, false, nil, 0, 0},
		{"after step 1", 1, false, true, nil, 0, 0},
		{"after step 3", 3, false, false, nil, 0, 0},
		{"during step 4", 3, true, false, nil, 0, 0},
		{"after step 5", 5, false, false, nil, 0, 0},
		{"checkpoints/before any step", 0, false, false, []string{often}, 0, 0},
		{"checkpoints/after step 1", 1, false, true, []string{often}, 0, 0},
		{"checkpoints/after step 3", 3, false, false, []string{often}, 0, 0},
		{"checkpoints/during step 4", 3, true, false, []string{often}, 0, 0},
		{"checkpoints/after step 5", 5, false, false, []string{often}, 0, 0},
		{"no journal", 1, false, true, []string{"MEMSCOPE_JOURNAL=off"}, 0, 0},
		{"step 4 while none reads, resumed 1.2 s later", 3, false, false, nil, 1, 1200 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xdg, out := shortTempDir(t), t.TempDir()
			r := startResumeRun(t, out, xdg, tc.env...)
			for n := 1; n <= tc.before; n++ {
				r.step(n)
			}
			next := tc.before + 1
			if tc.applied {
				awaitHeap(t, filepath.Join(xdg, "memscope"), 3000*48)
			}
			if tc.env != nil && tc.env[0] == often && tc.before > 0 {
				// The steps' records may all arrive in the poll the kill
				// interrupts, before any checkpoint: wait for one.
				awaitCheckpoint(t, filepath.Join(xdg, "memscope"))
			}
			if tc.midStep {
				_, err := io.WriteString(r.stdin, "\n")
				require.NoError(t, err)
				time.Sleep(time.Millisecond)
			}
			require.NoError(t, r.cmd.Process.Signal(syscall.SIGKILL))
			r.cmd.Process.Wait() // not cmd.Wait: the program still holds the pipes
			for range tc.offline {
				r.step(next)
				next++
			}
			time.Sleep(tc.gap)

			rings, _ := filepath.Glob(filepath.Join(xdg, "memscope", "*.ring"))
			require.Len(t, rings, 1, "the dead analyzer's ring")
			rec := exec.Command(analyzer(t), "record", "--ring", rings[0], "--out", out)
			rec.Env = append(append(cleanEnv(), "XDG_RUNTIME_DIR="+xdg), tc.env...)
			recErr, err := rec.StderrPipe()
			require.NoError(t, err)
			require.NoError(t, rec.Start())
			t.Cleanup(func() { rec.Process.Kill(); rec.Wait() })
			// Wait until it serves the session (it has taken the ring
			// over): the program must not exit before, as it waits at
			// exit for the leak check of the analyzer of the moment.
			errs := bufio.NewReader(recErr)
			awaitSession(t, filepath.Join(xdg, "memscope"))

			if tc.midStep {
				r.expect(fmt.Sprintf("step %d", next))
				next++
			}
			for n := next; n <= 5; n++ {
				r.step(n)
			}
			require.NoError(t, r.stdin.Close())
			rest, _ := io.ReadAll(errs)
			require.NoError(t, rec.Wait(), "record's stderr:\n%s", rest)
			if tc.env != nil && tc.env[0] != often {
				reps := readReports(t, out)
				require.NotEmpty(t, reps)
				for _, got := range reps {
					assert.False(t, got.Complete)
					require.Len(t, got.Incomplete, 1)
					assert.Contains(t, got.Incomplete[0], "left no journal (MEMSCOPE_JOURNAL=off, or it was dropped): the events it had read are missing")
				}
				return
			}
			if tc.env != nil && tc.before > 0 {
				assert.Contains(t, string(rest), "restored a checkpoint (", "the dead analyzer wrote checkpoints")
			}
			got := readResumeReports(t, out)
			assert.Equal(t, want.index, got.index, "record's stderr:\n%s", rest)
			for _, p := range []struct{ want, got *leaksJSON }{{want.root, got.root}, {want.child, got.child}} {
				assert.Empty(t, p.got.Incomplete)
				w, g := withoutAddresses(p.want), withoutAddresses(p.got)
				w.Pid, w.Ppid, g.Pid, g.Ppid = 0, 0, 0, 0
				assert.Equal(t, w, g, "record's stderr:\n%s", rest)
			}
			left, _ := os.ReadDir(filepath.Join(xdg, "memscope"))
			var names []string
			for _, e := range left {
				names = append(names, e.Name())
			}
			assert.Empty(t, names, "the ring, its journal and its socket are gone")
			assert.False(t, strings.Contains(string(rest), "session socket"), "took the dead analyzer's socket over:\n%s", rest)
		})
	}
}

// resumeReports are a run of testdata/resume.c's reports: the program's,
// its child's, and the session's index, its pids and file names
// replaced by the processes' roles.
type resumeReports struct {
	root, child *leaksJSON
	index       []map[string]any
}

func readResumeReports(t *testing.T, out string) resumeReports {
	t.Helper()
	var r resumeReports
	reps := readReports(t, out)
	require.Len(t, reps, 2, "the program's and its child's")
	for i, p := range reps {
		if o := reps[1-i]; o.Ppid == p.Pid {
			r.root, r.child = p, o
		}
	}
	require.NotNil(t, r.root, "no report is the other's parent")
	index, _ := filepath.Glob(filepath.Join(out, "memscope.*.index.json"))
	require.Len(t, index, 1)
	b, err := os.ReadFile(index[0])
	require.NoError(t, err)
	var idx struct {
		Processes []map[string]any `json:"processes"`
	}
	require.NoError(t, json.Unmarshal(b, &idx))
	role := map[float64]string{float64(r.root.Pid): "root", float64(r.child.Pid): "child", float64(r.root.Ppid): "analyzer"}
	for _, p := range idx.Processes {
		p["pid"], p["ppid"] = role[p["pid"].(float64)], role[p["ppid"].(float64)]
		files, _ := p["files"].([]any)
		for i, f := range files {
			name := filepath.Base(f.(string))
			files[i] = strings.NewReplacer(fmt.Sprint(r.root.Pid), "ROOT", fmt.Sprint(r.child.Pid), "CHILD").Replace(name)
		}
	}
	r.index = idx.Processes
	return r
}

// withoutAddresses is r with its frames' addresses cleared (each run maps
// its modules elsewhere).
func withoutAddresses(r *leaksJSON) leaksJSON {
	c := *r
	c.Leaks = append(c.Leaks[:0:0], r.Leaks...)
	for i := range c.Leaks {
		c.Leaks[i].Frames = append(c.Leaks[i].Frames[:0:0], r.Leaks[i].Frames...)
		for j := range c.Leaks[i].Frames {
			c.Leaks[i].Frames[j].Address = ""
		}
	}
	return c
}

// shortTempDir is a temporary directory with a short path: session
// sockets live in it, and a socket's path has at most 107 bytes.
func shortTempDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "ms")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// awaitHeap waits until the session in dir has applied a heap of
// heapBytes for testdata/resume.
func awaitHeap(t *testing.T, dir string, heapBytes uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		socks, _ := live.Sockets(dir)
		for _, s := range socks {
			cl, err := live.Dial(s)
			if err != nil {
				continue
			}
			if v, err := cl.State(context.Background()); err == nil {
				for _, p := range v.Processes {
					if filepath.Base(p.Program) == "resume" && p.HeapBytes == heapBytes {
						return
					}
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the session in %s never applied a heap of %d B", dir, heapBytes)
}

// awaitCheckpoint waits until the journal of the ring in dir holds a
// checkpoint: its header's flags (a u32 at offset 28, analyzer/journal's
// file format) have flagCheckpoint (0x2).
func awaitCheckpoint(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		journals, _ := filepath.Glob(filepath.Join(dir, "*.ring.journal"))
		for _, j := range journals {
			if b, err := os.ReadFile(j); err == nil && len(b) >= 32 && binary.LittleEndian.Uint32(b[28:])&0x2 != 0 {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no journal in %s holds a checkpoint", dir)
}

// awaitSession waits until a session in dir answers on its socket.
func awaitSession(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		socks, _ := live.Sockets(dir)
		for _, s := range socks {
			if cl, err := live.Dial(s); err == nil {
				_, err = cl.State(context.Background())
				if err == nil {
					return
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no session answers in %s", dir)
}
