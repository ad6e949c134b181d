package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"memscope/shm"
)

// tool is one way of running a workload.
type tool int

const (
	bare tool = iota
	memscope
	heaptrack
	numTools
)

func (t tool) String() string {
	return [...]string{"bare", "memscope", "heaptrack"}[t]
}

// hwmPollInterval is how often the analyzer's VmHWM is sampled. VmHWM is
// a high-water mark kept by the kernel, so a sample misses only growth in
// the last interval before the analyzer exits.
const hwmPollInterval = 25 * time.Millisecond

// sample is what one timed run of a workload under one tool measured.
type sample struct {
	Seconds float64 `json:"seconds"` // wall clock, fork/exec to reaped, all repetitions
	// CPUSeconds is user+system time of the process started and every
	// descendant it reaped: for memscope, analyzer plus PROG.
	CPUSeconds float64 `json:"cpu_seconds"`
	// WaitMaxRSS is ru_maxrss from wait4: the maximum over the process
	// and the descendants it reaped (so for memscope, max(analyzer, PROG)).
	WaitMaxRSS uint64 `json:"wait4_maxrss_bytes"`
	// AnalyzerHWM is the largest VmHWM of the memscope-analyze process
	// itself (not its children), sampled from /proc/PID/status.
	AnalyzerHWM uint64 `json:"analyzer_vmhwm_bytes,omitempty"`
	// AnalyzerAnon is the largest RssAnon sampled: the analyzer's private
	// memory, without the shared ring (RssShmem) and mapped files.
	AnalyzerAnon uint64 `json:"analyzer_rss_anon_bytes,omitempty"`
	// Reports is the number of leaks.json files memscope wrote;
	// Dropped and Incomplete are summed over them.
	Reports    int   `json:"reports,omitempty"`
	Dropped    int64 `json:"dropped_events"`
	Incomplete int   `json:"incomplete_reports,omitempty"`
	// RingWaitSeconds: time the traced threads waited for space in a full
	// ring, from the line `run` prints about it (all threads added).
	RingWaitSeconds float64 `json:"ring_wait_seconds"`
}

// runner starts the workloads under each tool.
type runner struct {
	analyzer  string // build/memscope-analyze
	library   string // build/libmemscope.so
	heaptrack string // "" when not installed
	tmp       string // scratch directory for reports, removed at the end
	seq       int    // makes every run's output directory unique
}

// run executes w under t, repeat times in a row, and returns the totals.
func (r *runner) run(t tool, w *workload, repeat int) (sample, error) {
	r.seq++
	out := filepath.Join(r.tmp, fmt.Sprintf("%s-%s-%d", w.id, t, r.seq))
	if err := os.Mkdir(out, 0o700); err != nil {
		return sample{}, err
	}
	defer os.RemoveAll(out)

	var total sample
	var drained *drainedRing
	if t == memscope && w.joinRing {
		d, err := newDrainedRing(fmt.Sprint(r.seq), false) // not timed
		if err != nil {
			return total, fmt.Errorf("%s: ring: %w", w.name, err)
		}
		drained = d
		defer func() {
			if drained != nil {
				drained.close()
			}
		}()
	}
	var ringsBefore map[string]bool
	if t == memscope && w.preloadOnly {
		ringsBefore = ringFiles()
	}
	for i := 0; i < repeat; i++ {
		argv, env := append([]string{w.prog}, w.args...), w.env
		switch {
		case t == memscope && w.joinRing:
			env = drained.joinEnv(env, r.library)
		case t == memscope && w.preloadOnly:
			// As `LD_PRELOAD=libmemscope.so PROG`: the library creates the
			// ring and starts a detached `memscope-analyze record`.
			env = append(withoutEnv(withoutEnv(withoutEnv(env, "LD_PRELOAD"), "MEMSCOPE_OUT"), "MEMSCOPE_RING"),
				"LD_PRELOAD="+r.library, "MEMSCOPE_OUT="+out)
		case t == memscope:
			argv = append([]string{r.analyzer, "run", "--out", out, "--", w.prog}, w.args...)
		case t == heaptrack:
			// heaptrack appends the compression suffix (.zst or .gz).
			argv = append([]string{r.heaptrack, "-o", filepath.Join(out, fmt.Sprintf("heaptrack.%d", i)), w.prog}, w.args...)
		}
		limit := time.Duration(0)
		if t == heaptrack {
			limit = heaptrackRunLimit
		}
		s, err := runOnce(argv, env, t == memscope && !w.preloadOnly, limit)
		if err != nil {
			return total, fmt.Errorf("%s under %s: %w", w.name, t, err)
		}
		total.Seconds += s.Seconds
		total.CPUSeconds += s.CPUSeconds
		total.WaitMaxRSS = max(total.WaitMaxRSS, s.WaitMaxRSS)
		total.AnalyzerHWM = max(total.AnalyzerHWM, s.AnalyzerHWM)
		total.AnalyzerAnon = max(total.AnalyzerAnon, s.AnalyzerAnon)
		total.RingWaitSeconds += s.RingWaitSeconds
	}
	switch {
	case t == memscope && w.joinRing:
		dropped, err := drained.close()
		drained = nil
		if err != nil {
			return total, fmt.Errorf("%s: draining the ring: %w", w.name, err)
		}
		total.Dropped = int64(dropped)
	case t == memscope:
		if w.preloadOnly {
			// Not timed: the detached analyzers finish on their own. They
			// outlive their reports by record mode's grace (0.5 s of idle
			// polling): 9 were still running when the row ended, and the
			// next runs shared the cores with them. Each removes its ring
			// as it exits.
			waitForReports(out, repeat, time.Minute)
			waitForRingsGone(ringsBefore, time.Minute)
		}
		if err := readLeakReports(out, &total); err != nil {
			return total, fmt.Errorf("%s under memscope: %w", w.name, err)
		}
		if total.Reports < repeat {
			return total, fmt.Errorf("%s under memscope: %d runs wrote only %d leaks.json reports", w.name, repeat, total.Reports)
		}
	case t == heaptrack:
		files, _ := filepath.Glob(filepath.Join(out, "heaptrack.*"))
		if len(files) < repeat {
			return total, fmt.Errorf("%s under heaptrack: %d runs wrote only %d data files", w.name, repeat, len(files))
		}
	}
	return total, nil
}

// heaptrackRunLimit bounds one heaptrack run. heaptrack 1.4 can deadlock
// in a forked child at exit (heaptrack_stop waits for a mutex its
// parent's writer thread held at the fork; seen in the shell row, where
// bash forks subshells): the row's heaptrack column is then left out
// instead of the benchmark hanging.
const heaptrackRunLimit = 2 * time.Minute

// waitForReports waits until dir holds n leaks.json and n trace.json
// files (the analyzer writes the timeline last), or timeout.
func waitForReports(dir string, n int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		leaks, _ := filepath.Glob(filepath.Join(dir, "memscope.*.leaks.json"))
		traces, _ := filepath.Glob(filepath.Join(dir, "memscope.*.trace.json"))
		if len(leaks) >= n && len(traces) >= n {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ringFiles lists the ring files in the default ring directory, where a
// bare LD_PRELOAD's library creates its ring.
func ringFiles() map[string]bool {
	out := map[string]bool{}
	dir, err := shm.DefaultDir()
	if err != nil {
		return out
	}
	names, _ := filepath.Glob(filepath.Join(dir, "ring.*"))
	for _, n := range names {
		out[n] = true
	}
	return out
}

// waitForRingsGone waits until no ring file is there that before did not
// list (their analyzers have exited), or for timeout.
func waitForRingsGone(before map[string]bool, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		left := false
		for n := range ringFiles() {
			if !before[n] {
				left = true
				break
			}
		}
		if !left {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runOnce starts argv with stdout on /dev/null and stderr in a scratch
// file, kept for error messages, and times it from fork/exec to reaped.
// With pollAnalyzer it samples the started process's own VmHWM while it
// runs.
//
// stderr is a file, not a pipe: with a pipe, Wait would also wait for
// every process that inherited it to close it, such as the detached
// analyzer a bare LD_PRELOAD starts, and time that too.
//
// A limit > 0 kills the run's process group when it takes longer.
func runOnce(argv, env []string, pollAnalyzer bool, limit time.Duration) (sample, error) {
	stderr, err := os.CreateTemp("", "memscope-bench-stderr-")
	if err != nil {
		return sample{}, err
	}
	os.Remove(stderr.Name())
	defer stderr.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stderr = stderr // stdin and stdout: /dev/null
	if limit > 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{}, err
	}
	if limit > 0 {
		pgid := cmd.Process.Pid
		timer := time.AfterFunc(limit, func() { _ = syscall.Kill(-pgid, syscall.SIGKILL) })
		defer timer.Stop()
	}
	var hwm, anon uint64
	var poll sync.WaitGroup
	stop := make(chan struct{})
	if pollAnalyzer {
		// A directory fd on /proc/PID pins this very process: once it is
		// reaped, opening status through it fails instead of reading a
		// process that reused the PID.
		dir, err := unix.Open("/proc/"+strconv.Itoa(cmd.Process.Pid), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			poll.Add(1)
			go func() {
				defer poll.Done()
				defer unix.Close(dir)
				tick := time.NewTicker(hwmPollInterval)
				defer tick.Stop()
				for {
					if st, ok := readStatus(dir); ok {
						hwm = max(hwm, st.hwm)
						anon = max(anon, st.anon)
					}
					select {
					case <-stop:
						return
					case <-tick.C:
					}
				}
			}()
		}
	}
	err = cmd.Wait()
	elapsed := time.Since(start)
	close(stop)
	poll.Wait()

	s := sample{Seconds: elapsed.Seconds(), AnalyzerHWM: hwm, AnalyzerAnon: anon,
		RingWaitSeconds: ringWait(fileTail(stderr, 64<<10)).Seconds()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.CPUSeconds = tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
		s.WaitMaxRSS = uint64(ru.Maxrss) * 1024
	}
	if err != nil {
		if limit > 0 && elapsed >= limit {
			err = fmt.Errorf("killed after %v (hung)", limit)
		}
		return s, fmt.Errorf("%s: %v; stderr ends with:\n%s", strings.Join(argv, " "), err, fileTail(stderr, 4096))
	}
	return s, nil
}

// ringWait reads the wait in `run`'s line "memscope: traced threads
// waited DURATION in all for ring space ..." (report.WriteRingWait); 0
// when there is none.
func ringWait(stderr string) time.Duration {
	const prefix = "memscope: traced threads waited "
	for _, line := range strings.Split(stderr, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			if d, err := time.ParseDuration(strings.SplitN(rest, " ", 2)[0]); err == nil {
				return d
			}
		}
	}
	return 0
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// procStatus is what the benchmark reads of /proc/PID/status.
type procStatus struct{ hwm, anon uint64 }

// readStatus reads status under a /proc/PID directory fd. A zombie has
// no Vm lines.
func readStatus(procDir int) (procStatus, bool) {
	fd, err := unix.Openat(procDir, "status", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return procStatus{}, false
	}
	defer unix.Close(fd)
	var buf [4096]byte
	n, err := unix.Read(fd, buf[:])
	if err != nil || n <= 0 {
		return procStatus{}, false
	}
	return parseStatus(buf[:n])
}

// parseStatus extracts VmHWM and RssAnon (in bytes); ok needs VmHWM.
func parseStatus(status []byte) (procStatus, bool) {
	var st procStatus
	var ok bool
	for _, line := range bytes.Split(status, []byte("\n")) {
		key, rest, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue
		}
		var dst *uint64
		switch string(key) {
		case "VmHWM":
			dst = &st.hwm
		case "RssAnon":
			dst = &st.anon
		default:
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return procStatus{}, false
		}
		kb, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			return procStatus{}, false
		}
		*dst = kb * 1024
		if dst == &st.hwm {
			ok = true
		}
	}
	return st, ok
}

// leakTotals is the part of memscope's leaks.json (DESIGN.md §6) the
// benchmark checks.
type leakTotals struct {
	Complete *bool `json:"complete"`
	Totals   *struct {
		DroppedEvents *int64 `json:"dropped_events"`
	} `json:"totals"`
}

// readLeakReports adds up dropped events over every leaks.json in dir.
func readLeakReports(dir string, s *sample) error {
	files, err := filepath.Glob(filepath.Join(dir, "memscope.*.leaks.json"))
	if err != nil {
		return err
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		var lt leakTotals
		if err := json.Unmarshal(data, &lt); err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(f), err)
		}
		if lt.Totals == nil || lt.Totals.DroppedEvents == nil || lt.Complete == nil {
			return fmt.Errorf("%s: no totals.dropped_events or complete field", filepath.Base(f))
		}
		s.Reports++
		s.Dropped += *lt.Totals.DroppedEvents
		if !*lt.Complete {
			s.Incomplete++
		}
	}
	return nil
}

// fileTail returns the last n bytes of f.
func fileTail(f *os.File, n int64) string {
	st, err := f.Stat()
	if err != nil {
		return err.Error()
	}
	off := max(st.Size()-n, 0)
	buf := make([]byte, st.Size()-off)
	k, _ := f.ReadAt(buf, off)
	return string(buf[:k])
}
