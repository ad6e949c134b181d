package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The steady-state row (issue 18 §4): a program with a constant live heap
// and constant churn runs under `memscope-analyze run` for a long time
// (-steady, 10 minutes for the figure); the analyzer's private
// memory (RssAnon) must stop growing after warm-up: at the end it is
// within 5% of what it was at a quarter of the run. It is off by default:
// it takes as long as it measures.

// steadyRow runs churn (one thread, 100000 live blocks, random frees)
// under the analyzer for d and reports the growth of the analyzer's
// RssAnon from d/4 to d, in percent.
func steadyRow(analyzer, benchDir, dir string, d time.Duration) row {
	r := row{Workload: fmt.Sprintf("steady: churn 1 thread, %v", d), Unit: "% growth"}
	r.Goal = "<= 5% growth"
	warm, end, err := steadyOnce(analyzer, benchDir, dir, d)
	if err != nil {
		r.Note = err.Error()
		r.check(r.Goal, func() (bool, bool) { return false, false })
		return r
	}
	growth := 100 * (float64(end) - float64(warm)) / float64(warm)
	r.Memscope = ptr(growth)
	r.Note = fmt.Sprintf("analyzer RssAnon %.1f MiB at %v (after warm-up), %.1f MiB at %v", float64(warm)/(1<<20), d/4, float64(end)/(1<<20), d)
	r.check(r.Goal, func() (bool, bool) { return growth <= 5, true })
	return r
}

// steadyOnce returns the analyzer's RssAnon at d/4 and at d.
func steadyOnce(analyzer, benchDir, dir string, d time.Duration) (warm, end uint64, err error) {
	out, err := os.MkdirTemp(dir, "steady-")
	if err != nil {
		return 0, 0, err
	}
	// More operations than any run lasts: the program is stopped at d.
	cmd := exec.Command(analyzer, "run", "--out", out, "--", filepath.Join(benchDir, "churn"), "1", "4000000000000", "100000")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	pid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	defer func() {
		if !exited {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-done
		}
	}()
	procDir, err := unix.Open("/proc/"+strconv.Itoa(pid), unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(procDir)
	anonAt := func(at time.Duration) (uint64, error) {
		time.Sleep(time.Until(started.Add(at)))
		st, ok := readStatus(procDir)
		if !ok || st.anon == 0 {
			return 0, fmt.Errorf("steady: cannot read the analyzer's RssAnon at %v", at)
		}
		return st.anon, nil
	}
	if warm, err = anonAt(d / 4); err != nil {
		return 0, 0, err
	}
	if end, err = anonAt(d); err != nil {
		return 0, 0, err
	}
	// Stop the program (the analyzer passes SIGTERM on) and let the
	// analyzer write its reports.
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-done:
		exited = true
	case <-time.After(time.Minute):
		return 0, 0, fmt.Errorf("steady: the analyzer did not finish within a minute of SIGTERM")
	}
	if files, _ := filepath.Glob(filepath.Join(out, "memscope.churn.*.leaks.json")); len(files) == 0 {
		return 0, 0, fmt.Errorf("steady: no report written in %s", out)
	}
	return warm, end, nil
}
