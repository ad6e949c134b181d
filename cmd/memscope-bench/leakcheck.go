package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"
)

// The leak check's cost (issue 15): how long the program's exit waits for
// its check, from its exit record to its release (the analyzer reaching
// the record, stopping the process, reading the end of its ring, listing
// its live blocks, scanning its memory). The analyzer says it with
// MEMSCOPE_CHECK_TIMING=1; each figure is the median over runs of the
// root process's wait.

// leakCheckWorkload is a program whose exit the check holds.
type leakCheckWorkload struct {
	name string
	argv []string
	goal time.Duration
}

func leakCheckWorkloads(benchDir, python string) []leakCheckWorkload {
	ws := []leakCheckWorkload{{"leak check: ls /", []string{"ls", "/"}, 10 * time.Millisecond}}
	if python != "" {
		ws = append(ws, leakCheckWorkload{"leak check: python3 -c pass", []string{python, "-c", "pass"}, 10 * time.Millisecond})
	}
	ws = append(ws, leakCheckWorkload{"leak check: 1 M blocks, 100 MB", []string{filepath.Join(benchDir, "liveheap"), "1000000", "100"}, 500 * time.Millisecond})
	return ws
}

var heldRE = regexp.MustCompile(`^memscope: leak check of pid (\d+): waited ([0-9.]+[a-zµ]+), held [0-9.]+[a-zµ]+ \(stop ([0-9.]+[a-zµ]+), ring ([0-9.]+[a-zµ]+), blocks ([0-9.]+[a-zµ]+), scan ([0-9.]+[a-zµ]+)`)

// leakCheckRows runs each workload under `memscope-analyze run` and
// reports the median time its root process waited at exit.
func leakCheckRows(analyzer, dir string, ws []leakCheckWorkload, runs int) []row {
	var rows []row
	for _, w := range ws {
		r := row{Workload: w.name, Unit: "ms/run"}
		var held, scan []float64
		for i := 0; i < runs; i++ {
			h, s, err := leakCheckOnce(analyzer, dir, w.argv)
			if err != nil {
				r.Note = err.Error()
				break
			}
			held, scan = append(held, h), append(scan, s)
		}
		if len(held) == runs {
			r.Memscope = ptr(median(held))
			r.Note = fmt.Sprintf("wait at exit (median of %d); of it, scanning %.2f ms", runs, median(scan))
		}
		goal := fmt.Sprintf("wait <= %v", w.goal)
		r.check(goal, func() (bool, bool) {
			if r.Memscope == nil {
				return false, false
			}
			return *r.Memscope <= float64(w.goal)/float64(time.Millisecond), true
		})
		rows = append(rows, r)
		fmt.Fprintf(os.Stderr, "memscope-bench: %s measured\n", w.name)
	}
	return rows
}

// leakCheckOnce returns how long the first process of a run waited for
// its check, and how much of it was the scan, in ms.
func leakCheckOnce(analyzer, dir string, argv []string) (held, scan float64, err error) {
	out, err := os.MkdirTemp(dir, "leakcheck-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(out)
	cmd := exec.Command(analyzer, append([]string{"run", "--out", out, "--"}, argv...)...)
	cmd.Env = append(os.Environ(), "MEMSCOPE_CHECK_TIMING=1")
	b, err := cmd.CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %v", strings.Join(argv, " "), err)
	}
	type check struct {
		pid        int
		held, scan float64
	}
	var checks []check
	for _, line := range strings.Split(string(b), "\n") {
		m := heldRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var c check
		fmt.Sscan(m[1], &c.pid)
		h, err1 := time.ParseDuration(m[2])
		s, err2 := time.ParseDuration(m[6])
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("cannot read %q", line)
		}
		c.held, c.scan = float64(h)/1e6, float64(s)/1e6
		checks = append(checks, c)
	}
	if len(checks) == 0 {
		return 0, 0, fmt.Errorf("%s: no leak check ran", strings.Join(argv, " "))
	}
	// The root process started first: the lowest pid (no wrap in a run).
	sort.Slice(checks, func(i, j int) bool { return checks[i].pid < checks[j].pid })
	return checks[0].held, checks[0].scan, nil
}
