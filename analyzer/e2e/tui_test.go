package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tmuxView is `memscope-analyze live -- phases` in an 80x24 tmux pane,
// with phases' stdin a fifo the test writes to.
type tmuxView struct {
	t       *testing.T
	session string
	fifo    *os.File
	out     string
}

func startTmuxView(t *testing.T) *tmuxView {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux is not installed")
	}
	dir := t.TempDir()
	v := &tmuxView{t: t, session: fmt.Sprintf("memscope-e2e-%d", os.Getpid()), out: filepath.Join(dir, "out")}
	require.NoError(t, os.Mkdir(v.out, 0o755))
	fifo := filepath.Join(dir, "in")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	// O_RDWR: opening the writing end does not wait for the reader.
	v.fifo, err = os.OpenFile(fifo, os.O_RDWR, 0)
	require.NoError(t, err)
	xdg := filepath.Join(dir, "xdg")
	require.NoError(t, os.Mkdir(xdg, 0o700))
	// sh runs phases as its child: two processes to switch between.
	cmd := fmt.Sprintf("cd %s && env -u LD_PRELOAD XDG_RUNTIME_DIR=%s %s live --out %s -- sh -c '%s; true' < %s; echo VIEW-EXITED $?; sleep 60",
		v.out, xdg, analyzer(t), v.out, program(t, "phases"), fifo)
	out, err := exec.Command(tmux, "new-session", "-d", "-s", v.session, "-x", "80", "-y", "24", cmd).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Cleanup(func() {
		exec.Command(tmux, "kill-session", "-t", v.session).Run()
		v.fifo.Close()
	})
	return v
}

func (v *tmuxView) screen() string {
	out, err := exec.Command("tmux", "capture-pane", "-p", "-t", v.session).Output()
	require.NoError(v.t, err)
	return string(out)
}

func (v *tmuxView) keys(keys ...string) {
	out, err := exec.Command("tmux", append([]string{"send-keys", "-t", v.session}, keys...)...).CombinedOutput()
	require.NoError(v.t, err, "%s", out)
}

// await waits until every want is on the screen.
func (v *tmuxView) await(want ...string) string {
	deadline := time.Now().Add(20 * time.Second)
	var s string
	for time.Now().Before(deadline) {
		s = v.screen()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(s, w)
		}
		if ok {
			return s
		}
		time.Sleep(50 * time.Millisecond)
	}
	v.t.Fatalf("the screen never showed %q; it shows:\n%s", want, s)
	return ""
}

// step runs the next step of phases.c and waits for its word in the
// captured output file.
func (v *tmuxView) step(n int) {
	_, err := v.fifo.WriteString("\n")
	require.NoError(v.t, err)
	path := filepath.Join(v.out, "memscope.sh.output.txt")
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), fmt.Sprintf("step %d\n", n)) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	v.t.Fatalf("phases never said step %d", n)
}

// row returns the table line of a function (its first on the screen).
func row(screen, function string) string {
	for _, line := range strings.Split(screen, "\n") {
		if strings.Contains(line, " "+function+" ") && strings.Contains(line, "%") {
			return line
		}
	}
	return ""
}

// firstRow is the first line of the table.
func firstRow(screen string) string {
	lines := strings.Split(screen, "\n")
	for i, l := range lines {
		if strings.Contains(l, "live bytes") && i+1 < len(lines) {
			return lines[i+1]
		}
	}
	return ""
}

func TestLiveTUI(t *testing.T) {
	v := startTmuxView(t)
	v.step(1)
	// The view starts on the first process, sh (dash here); tab goes to
	// phases.
	s := v.await("phases", "processes: [")
	assert.Regexp(t, `processes: \[\d+ \w+\]  \d+ phases`, s)
	v.keys("Tab")
	s = v.await("heap 9.8 KiB in 10 objects", "grow_a phases.c:")
	assert.Regexp(t, `processes: \d+ \w+  \[\d+ phases\]`, s)
	assert.Regexp(t, `^\s+10000\s+10\s+100\.0%\s+10000\s+10\s+0\s+grow_a phases\.c:\d+`, row(s, "grow_a"))
	assert.Contains(t, s, "output: /") // the path, cut at 80 columns
	assert.Contains(t, s, "q quit  p pause  s snapshot  1-6 sort")

	v.step(2)
	s = v.await("heap 29.3 KiB in 15 objects")
	assert.Regexp(t, `^\s+20000\s+5\s+66\.7%\s+20000\s+5\s+0\s+grow_b phases\.c:\d+`, firstRow(s))
	assert.Regexp(t, `^\s+10000\s+10\s+33\.3%`, row(s, "grow_a"))

	v.keys("2") // sort by objects: grow_a (10) before grow_b (5)
	s = v.await("▼objects")
	assert.Contains(t, firstRow(s), "grow_a")

	v.keys("/", "g", "r", "o", "w", "_", "b", "Enter")
	s = v.await(`matching "grow_b"`)
	assert.Contains(t, firstRow(s), "grow_b")
	assert.Empty(t, row(s, "grow_a"), "filtered out")

	v.keys("s") // a snapshot of the running program
	s = v.await("snapshot written to ")
	snaps, _ := filepath.Glob(filepath.Join(v.out, "memscope.phases.*.snapshot-*.pb.gz"))
	require.Len(t, snaps, 1)
	parseProfile(t, snaps[0])

	v.step(3)
	v.await("heap 19.5 KiB in 5 objects")

	require.NoError(t, v.fifo.Close()) // end of input: phases exits
	s = v.await("phases  exited 0", "ended: leaked: 0 B in 0 objects (direct 0 B in 0, indirect 0 B in 0)")
	assert.Contains(t, s, "still reachable: 19.5 KiB in 5 objects (not leaks)")
	v.keys("q")
	v.await("VIEW-EXITED 0")
	// As with run: the root's reports (sh's: phases did not leak) and the index.
	reports, _ := filepath.Glob(filepath.Join(v.out, "memscope.*.leaks.json"))
	assert.Len(t, reports, 1)
	index, _ := filepath.Glob(filepath.Join(v.out, "memscope.*.index.json"))
	assert.Len(t, index, 1)
}

// TestLiveAttach: viewers come and go while the program runs, one of them
// killed with SIGKILL; the session and its reports do not notice.
func TestLiveAttach(t *testing.T) {
	r := startLive(t)
	r.step(1)
	p := r.await(10000)
	// Two viewers at once, then one of them killed and one leaving, then
	// a viewer again.
	both := make([]*exec.Cmd, 2)
	for i := range both {
		both[i] = exec.Command(analyzer(t), "live", "--attach", fmt.Sprint(p.Pid))
		both[i].Env = append(cleanEnv(), "XDG_RUNTIME_DIR="+r.xdg)
		out, err := both[i].StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, both[i].Start())
		line, err := bufio.NewReader(out).ReadString('\n')
		require.NoError(t, err)
		assert.Contains(t, line, "heap 10000 B in 10 objects")
	}
	for _, c := range both {
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
	}
	for i := 0; i < 2; i++ { // attach, leave, attach again
		cmd := exec.Command(analyzer(t), "live", "--attach", fmt.Sprint(p.Pid))
		cmd.Env = append(cleanEnv(), "XDG_RUNTIME_DIR="+r.xdg)
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		line, err := bufio.NewReader(out).ReadString('\n')
		require.NoError(t, err)
		assert.Contains(t, line, fmt.Sprintf("pid %d phases: heap 10000 B in 10 objects, peak 10000 B, 10 allocs, 0 frees", p.Pid))
		if i == 0 {
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		} else {
			require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
		}
		cmd.Wait()
	}
	r.step(2)
	r.await(30000)
	require.NoError(t, r.stdin.Close())
	require.NoError(t, r.cmd.Wait(), "stderr:\n%s", r.stderr.String())
	assert.NotContains(t, r.stderr.String(), "warning")
	// The reports are those of a run nobody watched (testdata/phases.c's
	// comment, ended after step 2: 15 allocations, no free, 30000 B still
	// held by its globals).
	reports := readReports(t, r.out)
	require.Len(t, reports, 1)
	m := reports[0]
	assert.True(t, m.Complete)
	assert.Equal(t, uint64(15), m.Totals.Allocations)
	assert.Equal(t, uint64(0), m.Totals.Frees)
	assert.Equal(t, uint64(30000), m.Totals.BytesAllocated)
	assert.Equal(t, uint64(0), m.LeakedBytes)
	assert.Equal(t, uint64(30000), m.ReachableBytes)
}
