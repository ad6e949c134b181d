package e2e

import (
	"bufio"
	"context"
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
// goes on; `record --ring` takes the ring over, replays the dead
// analyzer's journal and writes reports identical to an uninterrupted
// run's: program, totals, peak, every leak with its frames, and
// complete. A run with the journal off says it is incomplete, and why.
func TestResumeAfterAnalyzerCrash(t *testing.T) {
	// The uninterrupted run.
	want := func() *leaksJSON {
		out := t.TempDir()
		r := startResumeRun(t, out, shortTempDir(t))
		for n := 1; n <= 5; n++ {
			r.step(n)
		}
		require.NoError(t, r.stdin.Close())
		require.NoError(t, r.cmd.Wait(), "stderr:\n%s", r.stderr.String())
		reps := readReports(t, out)
		require.Len(t, reps, 1)
		return reps[0]
	}()
	// What the program is known to do (testdata/resume.c).
	require.True(t, want.Complete)
	assert.Equal(t, "resume", filepath.Base(want.Program))
	assert.Equal(t, [2]uint64{51, 16*50 + 32}, [2]uint64{want.DirectObjects, want.DirectBytes}, "direct leaks")
	assert.Equal(t, [2]uint64{99, 99 * 32}, [2]uint64{want.IndirectObjects, want.IndirectBytes}, "indirect leaks")
	assert.Equal(t, [2]uint64{5, 5 * 200}, [2]uint64{want.ReachableObjects, want.ReachableBytes}, "reachable")
	assert.Equal(t, uint64(20000), want.Totals.TemporaryAllocations)

	for _, tc := range []struct {
		name    string
		before  int  // steps done before the kill
		midStep bool // the next step asked for, not awaited
		applied bool // the kill waits until the analyzer applied step 1's heap
		env     []string
	}{
		{"before any step", 0, false, false, nil},
		{"after step 1", 1, false, true, nil},
		{"after step 3", 3, false, false, nil},
		{"during step 4", 3, true, false, nil},
		{"after step 5", 5, false, false, nil},
		{"no journal", 1, false, true, []string{"MEMSCOPE_JOURNAL=off"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			xdg, out := shortTempDir(t), t.TempDir()
			r := startResumeRun(t, t.TempDir(), xdg, tc.env...)
			for n := 1; n <= tc.before; n++ {
				r.step(n)
			}
			next := tc.before + 1
			if tc.applied {
				awaitHeap(t, filepath.Join(xdg, "memscope"), 3000*48)
			}
			if tc.midStep {
				_, err := io.WriteString(r.stdin, "\n")
				require.NoError(t, err)
				time.Sleep(time.Millisecond)
			}
			require.NoError(t, r.cmd.Process.Signal(syscall.SIGKILL))
			r.cmd.Process.Wait() // not cmd.Wait: the program still holds the pipes

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
			reps := readReports(t, out)
			require.Len(t, reps, 1, "record's stderr:\n%s", rest)
			got := reps[0]
			if tc.env != nil {
				assert.False(t, got.Complete)
				require.Len(t, got.Incomplete, 1)
				assert.Contains(t, got.Incomplete[0], "left no journal (MEMSCOPE_JOURNAL=off, or it was dropped): the events it had read are missing")
				return
			}
			assert.Empty(t, got.Incomplete)
			got.Pid, got.Ppid = want.Pid, want.Ppid
			assert.Equal(t, withoutAddresses(want), withoutAddresses(got), "record's stderr:\n%s", rest)
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
