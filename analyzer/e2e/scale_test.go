package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/analyzer/live"
)

// These tests hold memscope to "nothing lost, at any scale": a closed
// stderr, a killed analyzer, hundreds of processes, a thousand threads.

// TestThousandThreads runs testdata/crowd.c: 1000 threads allocating at
// once on 2 cores, then 100000 short threads one after another (issue 18
// §4). However late some events arrive, no event is dropped, every free
// meets its block and every site's counts are the program's own; with
// records stamped by the time-stamp counter (the default where it is
// invariant) and by CLOCK_MONOTONIC.
func TestThousandThreads(t *testing.T) {
	for _, clock := range []string{"tsc", "monotonic"} {
		t.Run(clock, func(t *testing.T) { thousandThreads(t, clock) })
	}
}

func thousandThreads(t *testing.T, clock string) {
	const threads, rounds, shorts = 1000, 100, 100000
	a := analyzeEnv(t, []string{"MEMSCOPE_CLOCK=" + clock}, nil, program(t, "crowd"), fmt.Sprint(threads), fmt.Sprint(rounds), fmt.Sprint(shorts))
	require.Equal(t, 0, a.exitCode, "stderr:\n%s", a.stderr)
	m := a.main(t)
	assert.True(t, m.Complete, "complete")
	assert.Zero(t, m.Totals.DroppedEvents, "dropped events")
	assert.Zero(t, m.LeakedObjects, "leaked objects: everything is kept in kept[]")
	if unknown := regexp.MustCompile(`frees of unknown blocks: (\d+)`).FindStringSubmatch(a.stderr); unknown != nil {
		assert.Equal(t, "0", unknown[1], "frees of unknown blocks")
	}

	// Per site, from the exit profile: [alloc_objects, alloc_space,
	// inuse_objects, inuse_space] summed over the samples whose innermost
	// frame is the site's function.
	type counts struct{ allocObjects, allocBytes, inuseObjects, inuseBytes int64 }
	got := map[string]counts{}
	exit := parseProfile(t, filepath.Join(a.dir, fmt.Sprintf("memscope.crowd.%d.pb.gz", m.Pid)))
	for _, s := range exit.Sample {
		fn := s.Location[0].Line[0].Function.Name
		c := got[fn]
		c.allocObjects += s.Value[0]
		c.allocBytes += s.Value[1]
		c.inuseObjects += s.Value[2]
		c.inuseBytes += s.Value[3]
		got[fn] = c
	}
	// crowd_round: thread n allocates 16*(n%8+1) bytes each round; the
	// 1000 threads cover n%8 = 0..7 125 times each.
	var roundBytes int64
	for n := 0; n < threads; n++ {
		roundBytes += rounds * 16 * int64(n%8+1)
	}
	want := map[string]counts{
		"crowd_round": {threads * rounds, roundBytes, 0, 0},
		"crowd_keep":  {threads, threads * 24, threads, threads * 24},
		"short_round": {shorts, shorts * 40, 0, 0},
	}
	for fn, w := range want {
		assert.Equal(t, w, got[fn], "site %s", fn)
	}

	// The kept blocks are one reachable group of the leak report.
	var kept []string
	for _, l := range m.Leaks {
		if len(l.Frames) > 0 && l.Frames[0].Function == "crowd_keep" {
			kept = append(kept, fmt.Sprintf("%s %d objects %d bytes", l.Kind, l.Objects, l.Bytes))
		}
	}
	assert.Equal(t, []string{fmt.Sprintf("reachable %d objects %d bytes", threads, threads*24)}, kept)
}

// TestClosedStderr: `run ... 2>&1 | true` — the pipe's reader is gone
// before the summary is written. PROG's status must come through and
// every report be written (issue 18's first papercut); a missing --out
// directory is created.
func TestClosedStderr(t *testing.T) {
	out := filepath.Join(t.TempDir(), "new", "reports")
	cmd := exec.Command(analyzer(t), "run", "--out", out, "--", "sh", "-c", "sleep 0.3; exit 7")
	cmd.Env = cleanEnv()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	r.Close() // nobody reads
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Run()
	w.Close()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 7, ee.ExitCode())
	st, err := os.Stat(out)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), st.Mode().Perm())
	// sh's five files (the root's) and the session's index; sleep did not
	// leak, so with the default --reports it is in the index only.
	files, _ := filepath.Glob(filepath.Join(out, "memscope.*"))
	assert.Len(t, files, 6, "%v", files)
	index, _ := filepath.Glob(filepath.Join(out, "memscope.*.index.json"))
	require.Len(t, index, 1)
	b, err := os.ReadFile(index[0])
	require.NoError(t, err)
	var idx struct {
		Processes []struct {
			Program    string   `json:"program"`
			ExitStatus *int     `json:"exit_status"`
			Files      []string `json:"files"`
		} `json:"processes"`
	}
	require.NoError(t, json.Unmarshal(b, &idx))
	require.Len(t, idx.Processes, 2)
}

// TestOrphanedRingGC: an analyzer killed with SIGKILL leaves its ring
// and journal; its program goes on unharmed and ends; ps lists the ring
// as orphaned; gc replays the journal, writes the reports of the whole
// run and removes the ring and its journal.
func TestOrphanedRingGC(t *testing.T) {
	r := startLive(t)
	r.step(1)
	p := r.await(10000)
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGKILL))
	r.cmd.Process.Wait() // not cmd.Wait: the program still holds the output pipes
	r.step(2)            // the program still runs, untraced from here on
	require.NoError(t, r.stdin.Close())
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", p.Pid)); err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	out, errText, code := r.cli("ps")
	require.Equal(t, 0, code, errText)
	assert.Contains(t, out, "orphaned ring ")
	assert.Contains(t, out, "memscope-analyze record --ring ")

	// A file of unwind rules as libmemscope.so leaves them (its content
	// is not gc's business), and a symbolic link named like one.
	rules := filepath.Join(r.xdg, "memscope", ".rules-0123abcd")
	require.NoError(t, os.WriteFile(rules, make([]byte, 2048), 0o600))
	link := filepath.Join(r.xdg, "memscope", ".rules-link")
	require.NoError(t, os.Symlink(rules, link))

	reports := t.TempDir()
	_, errText, code = r.cli("gc", "--out", reports)
	require.Equal(t, 0, code, errText)
	assert.Contains(t, errText, "memscope gc: removed ")
	_, err := os.Stat(rules)
	assert.True(t, os.IsNotExist(err), "gc removes the files of rules: %v", err)
	_, err = os.Lstat(link)
	assert.NoError(t, err, "gc leaves what is not a regular file")
	assert.Regexp(t, `memscope gc: removed [1-9][0-9]* file\(s\) of unwind rules \([0-9]+ KiB\)`, errText)
	// The dead analyzer's journal and the ring hold every event: the
	// reports are complete (testdata/phases.c's steps 1 and 2: 10 blocks
	// of 1000 B and 5 of 4000 B, none freed), but for the leak check,
	// which needed an analyzer when the program exited.
	files, _ := filepath.Glob(filepath.Join(reports, fmt.Sprintf("memscope.*.%d.*", p.Pid)))
	assert.Len(t, files, 5, "the ring's reports; gc said:\n%s", errText)
	seen := 0
	for _, r := range readReports(t, reports) {
		if r.Pid != p.Pid {
			continue
		}
		seen++
		assert.True(t, r.Complete, "complete: %q", r.Incomplete)
		assert.Equal(t, "phases", filepath.Base(r.Program))
		assert.Equal(t, [3]uint64{15, 0, 30000}, [3]uint64{r.Totals.Allocations, r.Totals.Frees, r.Totals.BytesAllocated})
		assert.Equal(t, [2]uint64{15, 30000}, [2]uint64{r.LeakedObjects, r.LeakedBytes}, "every block still allocated, of unknown kind")
		assert.True(t, strings.HasPrefix(r.Reachability, "not checked"), "reachability %q", r.Reachability)
	}
	assert.Equal(t, 1, seen, "leaks.json of pid %d", p.Pid)
	left, _ := live.Rings(filepath.Join(r.xdg, "memscope"))
	assert.Empty(t, left)
	journals, _ := filepath.Glob(filepath.Join(r.xdg, "memscope", "*.journal*"))
	assert.Empty(t, journals)
}

// TestManyProcesses: a shell loop of 300 short processes. The session's
// index lists every one of them; only the root (which did not leak
// either) gets report files by default; the summary stays one screen.
func TestManyProcesses(t *testing.T) {
	out := t.TempDir()
	// Four of them allocate a known block: 3, 5, 1 and 4 MiB.
	peak := program(t, "peak")
	script := "for i in $(seq 300); do /bin/true; done; for k in 3072 5120 1024 4096; do " + peak + " $k; done"
	cmd := exec.Command(analyzer(t), "run", "--out", out, "--", "bash", "-c", script)
	cmd.Env = cleanEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Run(), "stderr:\n%s", stderr.String())
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	assert.LessOrEqual(t, len(lines), 24, "one screen:\n%s", stderr.String())
	assert.Regexp(t, `^memscope: 30\d more process\(es\), none leaking: every process is in .*\.index\.json$`, lines[len(lines)-2])
	assert.Regexp(t, `^memscope: largest peaks among them: pid \d+ \(peak\) 5\.0 MiB, pid \d+ \(peak\) 4\.0 MiB, pid \d+ \(peak\) 3\.0 MiB$`, lines[len(lines)-1])

	index, _ := filepath.Glob(filepath.Join(out, "memscope.bash.*.index.json"))
	require.Len(t, index, 1)
	b, err := os.ReadFile(index[0])
	require.NoError(t, err)
	var idx struct {
		Root      uint32 `json:"root"`
		Processes []struct {
			Pid        uint32   `json:"pid"`
			Program    string   `json:"program"`
			ExitStatus *int     `json:"exit_status"`
			Files      []string `json:"files"`
		} `json:"processes"`
	}
	require.NoError(t, json.Unmarshal(b, &idx))
	trues, withFiles := 0, 0
	for _, p := range idx.Processes {
		if filepath.Base(p.Program) == "true" {
			trues++
			if assert.NotNil(t, p.ExitStatus) {
				assert.Equal(t, 0, *p.ExitStatus)
			}
		}
		if len(p.Files) > 0 {
			withFiles++
			assert.Equal(t, idx.Root, p.Pid, "only the root has files")
		}
	}
	assert.Equal(t, 300, trues, "every /bin/true is in the index")
	assert.Equal(t, 1, withFiles)
	files, _ := filepath.Glob(filepath.Join(out, "memscope.*"))
	assert.Len(t, files, 6, "the root's five files and the index")
}
