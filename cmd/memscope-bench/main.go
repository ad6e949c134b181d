// Command memscope-bench is `make bench`: it runs allocation workloads
// bare, under memscope (memscope-analyze run) and under heaptrack, in
// alternating rounds, and prints one table of medians and ratios, written
// also to build/bench.json.
//
//	memscope-bench [-runs 5] [-build build] [-only REGEXP] ...
//
// Times are wall clock from fork/exec to reaped, so on a small machine the
// analyzer competing with the program for CPU shows in the figures, as it
// does for users. Each figure is the median of -runs runs; a round runs
// bare, memscope, heaptrack back to back, so slow drift of the machine
// affects all three alike.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "memscope-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	start := time.Now()
	buildDir := flag.String("build", "build", "build directory: memscope-analyze, libmemscope.so, bench/ workloads")
	srcDir := flag.String("src", "testdata/bench", "directory of the workload sources (dicts.py)")
	runs := flag.Int("runs", 5, "timed runs per tool and workload (the median is reported); at least 5 for published figures")
	steady := flag.Duration("steady", 0, "also run the steady-state row for this long (issue 18: 10m): the analyzer's RssAnon growth from a quarter of the run to its end")
	only := flag.String("only", "", "measure only workloads whose id matches this regexp (micro0 micro10 micro40 micro10-check threads1 threads2 threads4 threads-short sizes python build shell startup startup-preload startup-join live leakcheck analyzer)")
	noHeaptrack := flag.Bool("no-heaptrack", false, "do not run heaptrack")
	quick := flag.Bool("quick", false, "the rows to iterate on, in under 2 minutes: micro depth 10, threads 2 and python, 3 runs each (-only and -runs override)")
	startedNs := flag.Int64("started-ns", 0, "Unix time in ns when `make bench` started, so the total includes the build")
	jsonPath := flag.String("json", "", "where to write the JSON table (default BUILD/bench.json)")
	goCmd := flag.String("go", "go", "go command, for the analyzer engine's benchmarks")
	benchtime := flag.String("benchtime", "300ms", "-benchtime of the analyzer engine's benchmarks")
	var sz sizes
	flag.Int64Var(&sz.microPairs, "micro-pairs", 10_000_000, "malloc/free pairs of the micro rows")
	flag.Int64Var(&sz.threadPairs, "thread-pairs", 5_000_000, "malloc/free pairs done by each thread of the threads rows")
	flag.Int64Var(&sz.sizeOps, "size-ops", 2_000_000, "allocations of the sizes row")
	flag.IntVar(&sz.shortThreads, "short-threads", 20_000, "threads of the short threads row, created one after another")
	flag.IntVar(&sz.dicts, "dicts", 200_000, "dicts built by the python row")
	flag.IntVar(&sz.buildFiles, "build-files", 40, "C files of the build row's project")
	flag.IntVar(&sz.shellLoops, "shell-loops", 100, "pipelines (four processes each) of the shell row")
	flag.IntVar(&sz.startupRuns, "startup-runs", 200, "runs of /bin/true per timed batch, bare and memscope")
	flag.IntVar(&sz.startupHeaptrack, "startup-runs-heaptrack", 20, "runs of /bin/true per timed batch under heaptrack (about 0.2 s each)")
	flag.Parse()
	if *startedNs != 0 {
		start = time.Unix(0, *startedNs)
	}
	if *quick {
		if !flagSet("only") {
			*only = "^(micro10|threads2|python)$"
		}
		if !flagSet("runs") {
			*runs = 3
		}
	}
	if *runs < 1 {
		return fmt.Errorf("-runs %d: want at least 1", *runs)
	}
	if *jsonPath == "" {
		*jsonPath = filepath.Join(*buildDir, "bench.json")
	}
	selected := func(string) bool { return true }
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return fmt.Errorf("-only: %w", err)
		}
		selected = re.MatchString
	}

	cpuBefore, cpuErr := readCPUAccount()
	measureStart := time.Now()
	rep := &report{Version: 1, Date: start.UTC().Format(time.RFC3339), CPUs: runtime.NumCPU(), Runs: *runs}
	rep.Host, _ = os.Hostname()
	if *runs < 5 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("only %d runs per figure (-runs): not for publication", *runs))
	}

	analyzer, err := filepath.Abs(filepath.Join(*buildDir, "memscope-analyze"))
	if err != nil {
		return err
	}
	if _, err := os.Stat(analyzer); err != nil {
		return fmt.Errorf("%w (run make first)", err)
	}
	tmp, err := os.MkdirTemp("", "memscope-bench-")
	if err != nil {
		return err
	}
	defer func() {
		// A detached analyzer (startup LD_PRELOAD row) may still be
		// finishing a file: retry briefly rather than leave the directory.
		for i := 0; i < 50 && os.RemoveAll(tmp) != nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}()
	library, err := filepath.Abs(filepath.Join(*buildDir, "libmemscope.so"))
	if err != nil {
		return err
	}
	r := &runner{analyzer: analyzer, library: library, tmp: tmp}
	if !*noHeaptrack {
		if p, err := exec.LookPath("heaptrack"); err == nil {
			r.heaptrack = p
		} else {
			rep.Notes = append(rep.Notes, "heaptrack is not installed: its columns are skipped")
		}
	}

	python, pyNote := findPython()
	if pyNote != "" {
		rep.Notes = append(rep.Notes, pyNote)
	}
	project := filepath.Join(tmp, "project", "src")
	if err := writeProject(project, sz.buildFiles); err != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("build row skipped: %v", err))
		project = ""
	}
	var ws []*workload
	for _, w := range workloads(filepath.Join(*buildDir, "bench"), *srcDir, sz, python, project) {
		if selected(w.id) {
			ws = append(ws, w)
		}
	}

	// Warm-up, not timed: page cache for every binary, and a check that
	// each tool works at all, so a broken one is reported once, not per row.
	var toolErr [numTools]error
	if len(ws) > 0 {
		warm := &workload{id: "warmup", name: "warm-up /bin/true", prog: "/bin/true", env: os.Environ()}
		for t := tool(0); t < numTools; t++ {
			if t == heaptrack && r.heaptrack == "" {
				continue
			}
			if _, err := r.run(t, warm, 1); err != nil {
				toolErr[t] = err
				rep.Errors = append(rep.Errors, err.Error())
			}
		}
	}
	for _, w := range ws {
		if _, err := runOnce(append([]string{w.prog}, w.args...), w.env, false, 0); err != nil {
			w.err[bare] = err
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", w.name, err))
		}
	}

	for _, w := range ws {
		tools := []tool{bare, memscope}
		if r.heaptrack != "" && !w.preloadOnly && !w.joinRing && !w.noHeaptrack {
			tools = append(tools, heaptrack)
		}
		for _, t := range tools {
			if toolErr[t] != nil && w.err[t] == nil {
				w.err[t] = toolErr[t]
			}
		}
		for round := 1; round <= *runs && w.err[bare] == nil; round++ {
			for _, t := range tools {
				if w.err[t] != nil {
					continue
				}
				s, err := r.run(t, w, w.repeats(t))
				if err != nil {
					w.err[t] = err
					rep.Errors = append(rep.Errors, err.Error())
					continue
				}
				w.samples[t] = append(w.samples[t], s)
			}
		}
		fmt.Fprintf(os.Stderr, "memscope-bench: %s measured (%.0f s so far)\n", w.name, time.Since(start).Seconds())
	}

	rep.Rows = buildRows(ws, rep)
	rep.Notes = append(rep.Notes, unsteadyNotes(ws)...)
	if selected("live") {
		fmt.Fprintf(os.Stderr, "memscope-bench: live view\n")
		rep.Rows = append(rep.Rows, liveViewersRow(analyzer, filepath.Join(*buildDir, "bench"), tmp, *runs, sz.microPairs/4))
		rep.Rows = append(rep.Rows, liveSnapshotRows(analyzer, filepath.Join(*buildDir, "bench"), tmp, *runs)...)
	}
	if *steady > 0 {
		fmt.Fprintf(os.Stderr, "memscope-bench: steady state for %v\n", *steady)
		rep.Rows = append(rep.Rows, steadyRow(analyzer, filepath.Join(*buildDir, "bench"), tmp, *steady))
	}
	if selected("leakcheck") {
		rep.Rows = append(rep.Rows, leakCheckRows(analyzer, tmp, leakCheckWorkloads(filepath.Join(*buildDir, "bench"), python), *runs)...)
	}
	if selected("analyzer") {
		// A real program's stream for BenchmarkApplyCaptured: glibc's
		// addresses, four threads freeing in random order.
		capture, err := filepath.Abs(filepath.Join(*buildDir, "churn.records"))
		if err != nil {
			return err
		}
		churn := []string{filepath.Join(*buildDir, "bench", "churn"), "4", "500000", "100000"}
		fmt.Fprintf(os.Stderr, "analyzer engine: capturing the records of %s\n", strings.Join(churn, " "))
		if err := captureRecords(library, capture, churn); err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("analyzer: %v: BenchmarkApplyCaptured skipped", err))
			capture = ""
		}
		fmt.Fprintf(os.Stderr, "analyzer engine: go test -bench (GOMAXPROCS=1, -count %d)\n", *runs)
		metrics, note := runGoBench(*goCmd, *benchtime, *runs, capture)
		rep.GoBench = metrics
		if note != "" {
			rep.Notes = append(rep.Notes, note)
		}
		rep.Rows = append(rep.Rows, analyzerRows(metrics)...)
		if r.heaptrack != "" {
			fmt.Fprintf(os.Stderr, "analyzer: heaptrack's analysis of %s\n", strings.Join(churn, " "))
			rep.Rows = append(rep.Rows, analysisRow(r.heaptrack, tmp, churn, *runs, metrics))
		}
	}
	rep.Notes = append(rep.Notes, methodNotes(r, sz, python)...)
	rep.Notes = append(rep.Notes, droppedSummary(rep.Rows))
	if cpuAfter, err := readCPUAccount(); err == nil && cpuErr == nil {
		rep.OtherCPUSeconds = otherLoad(cpuBefore, cpuAfter)
		wall := time.Since(measureStart).Seconds()
		if cores := rep.OtherCPUSeconds / wall; cores > 0.05 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("WARNING: the machine was not idle: other processes used %.0f CPU-s during the %.0f s of measuring (%.2f of %d cores on average); the figures are disturbed, rerun on a quiet machine", rep.OtherCPUSeconds, wall, cores, runtime.NumCPU()))
		} else {
			rep.Notes = append(rep.Notes, fmt.Sprintf("machine idle apart from the benchmark: other processes used %.1f CPU-s in %.0f s", rep.OtherCPUSeconds, wall))
		}
	}

	rep.TotalSeconds = time.Since(start).Seconds()
	printTable(os.Stdout, rep)
	if err := writeJSON(*jsonPath, rep); err != nil {
		return err
	}
	fmt.Printf("wrote %s\n", *jsonPath)
	return nil
}

// buildRows turns the samples into table rows, in table order, with the
// goals of issue 5 beside them.
func buildRows(ws []*workload, rep *report) []row {
	byID := map[string]*workload{}
	for _, w := range ws {
		byID[w.id] = w
	}
	var rows []row
	for _, w := range ws {
		r := timeRow(w)
		switch w.id {
		case "micro10":
			r.check("ms/ht <= 0.25", func() (bool, bool) {
				if r.MemscopeOverHeaptrack == nil {
					return false, false
				}
				return *r.MemscopeOverHeaptrack <= 0.25, true
			})
		case "micro10-nojournal":
			// Issue 18: with the journal, at least 90% of the throughput
			// without it (the ratio of the two memscope times).
			with := byID["micro10"]
			goal := "with journal / without >= 0.9"
			var withT *float64
			if with != nil {
				withT = timeRow(with).Memscope
			}
			if withT != nil && r.Memscope != nil {
				goal = fmt.Sprintf("with journal %.2fx of without, >= 0.9", *r.Memscope / *withT)
			}
			r.check(goal, func() (bool, bool) {
				if withT == nil || r.Memscope == nil {
					return false, false
				}
				return *r.Memscope / *withT >= 0.9, true
			})
		case "build", "shell":
			r.check("x bare <= 2", func() (bool, bool) {
				if r.MemscopeRatio == nil {
					return false, false
				}
				return *r.MemscopeRatio <= 2, true
			})
		case "python":
			r.check("x bare <= 1.5", func() (bool, bool) {
				if r.MemscopeRatio == nil {
					return false, false
				}
				return *r.MemscopeRatio <= 1.5, true
			})
		case "startup", "startup-preload", "startup-join":
			// Per-run figures in ms: the batch time over its runs.
			r.Unit = "ms/run"
			for _, p := range []*float64{r.Bare, r.Memscope, r.Heaptrack} {
				if p != nil {
					*p *= 1e3
				}
			}
			goal := "memscope-bare <= +1 ms"
			if r.Memscope != nil && r.Bare != nil {
				goal = fmt.Sprintf("%+.2f ms <= +1 ms", *r.Memscope-*r.Bare)
			}
			r.check(goal, func() (bool, bool) {
				if r.Memscope == nil || r.Bare == nil {
					return false, false
				}
				return *r.Memscope-*r.Bare <= 1, true
			})
		}
		rows = append(rows, r)
		if w.id == "threads4" || (w.id == "threads2" && byID["threads4"] == nil) {
			rows = append(rows, scalingRows(byID)...)
		}
	}
	return rows
}

// scalingRows: with every thread doing the same work, throughput with N
// threads over throughput with 1 is N*time(1)/time(N).
func scalingRows(byID map[string]*workload) []row {
	one := byID["threads1"]
	if one == nil {
		return nil
	}
	var rows []row
	for _, n := range []int{2, 4} {
		w := byID[fmt.Sprintf("threads%d", n)]
		if w == nil {
			continue
		}
		r := row{Workload: fmt.Sprintf("scaling %d/1 thr", n), Unit: "x"}
		scale := func(t tool) *float64 {
			t1, tn := medianSeconds(one, t), medianSeconds(w, t)
			if t1 == nil || tn == nil || *tn == 0 {
				return nil
			}
			return ptr(float64(n) * *t1 / *tn)
		}
		r.Bare, r.Memscope, r.Heaptrack = scale(bare), scale(memscope), scale(heaptrack)
		if n == 2 {
			r.check("memscope >= 1.7x", func() (bool, bool) {
				if r.Memscope == nil {
					return false, false
				}
				return *r.Memscope >= 1.7, true
			})
		}
		rows = append(rows, r)
	}
	return rows
}

// analyzerRows picks the events/s and bytes-per-live-block metrics out of
// the engine's benchmarks; n/a rows when there are none.
func analyzerRows(metrics []benchMetric) []row {
	var rows []row
	for _, m := range metrics {
		if strings.HasPrefix(m.Benchmark, "BenchmarkCheckpoint") {
			// A journal checkpoint (issue 18): its size and speed per live
			// block, reported, no goal.
			v := m.Median
			switch {
			case strings.HasPrefix(m.Unit, "B/"):
				rows = append(rows, row{Workload: "checkpoint size, " + m.Benchmark, Unit: "B/live block", Memscope: ptr(v)})
			case strings.HasSuffix(m.Unit, "ns/liveblock"):
				what, _, _ := strings.Cut(m.Unit, "-")
				rows = append(rows, row{Workload: "checkpoint " + what + ", " + m.Benchmark, Unit: "ns/live block", Memscope: ptr(v)})
			}
			continue
		}
		if v, ok := eventsPerSecond(m); ok {
			r := row{Workload: "analyzer " + m.Benchmark, Unit: "events/s", Memscope: ptr(v)}
			r.check(">= 20 M events/s", func() (bool, bool) { return v >= 20e6, true })
			rows = append(rows, r)
		}
		if v, ok := bytesPerLiveBlock(m); ok {
			r := row{Workload: "analyzer " + m.Benchmark, Unit: "B/live block", Memscope: ptr(v)}
			r.check("<= 48 B/live block", func() (bool, bool) { return v <= 48, true })
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		rows = append(rows,
			row{Workload: "analyzer events/s", Unit: "events/s", Goal: ">= 20 M events/s", Note: "n/a: no engine benchmark reports events/s"},
			row{Workload: "analyzer B/live block", Unit: "B/live block", Goal: "<= 48 B/live block", Note: "n/a: no engine benchmark reports bytes per live block"})
	}
	return rows
}

// analysisRow compares the analysis of one program's heap calls: the
// engine replaying its captured records (BenchmarkApplyCaptured's
// Mcalls/cpu-s) against heaptrack_interpret + heaptrack_print on
// heaptrack's trace of the same program. Both in calls per CPU second.
func analysisRow(heaptrack, dir string, argv []string, runs int, metrics []benchMetric) row {
	r := row{Workload: "analysis of churn 4 thr", Unit: "calls/cpu-s"}
	for _, m := range metrics {
		if m.Benchmark == "BenchmarkApplyCaptured" && m.Unit == "Mcalls/cpu-s" {
			r.Memscope = ptr(m.Median * 1e6)
		}
	}
	rate, calls, err := heaptrackAnalysis(heaptrack, dir, argv, runs)
	if err != nil {
		r.Note = "heaptrack: " + err.Error()
	} else {
		r.Heaptrack = ptr(rate)
		r.Note = fmt.Sprintf("%d calls; heaptrack: heaptrack_interpret + heaptrack_print CPU; memscope: engine (decode, order, state); ms/ht > 1: memscope faster", calls)
	}
	if r.Memscope != nil && r.Heaptrack != nil {
		r.MemscopeOverHeaptrack = ptr(*r.Memscope / *r.Heaptrack)
	}
	r.check("faster than heaptrack", func() (bool, bool) {
		if r.MemscopeOverHeaptrack == nil {
			return false, false
		}
		return *r.MemscopeOverHeaptrack > 1, true
	})
	return r
}

func droppedSummary(rows []row) string {
	var measured, bad int
	for _, r := range rows {
		if r.DroppedEvents == nil {
			continue
		}
		measured++
		if *r.DroppedEvents != 0 || r.IncompleteReports != 0 {
			bad++
		}
	}
	switch {
	case measured == 0:
		return "goal 0 dropped events in every row: n/a (no memscope row measured)"
	case bad == 0:
		return fmt.Sprintf("goal 0 dropped events in every row: ok (%d rows, every report complete)", measured)
	default:
		return fmt.Sprintf("goal 0 dropped events in every row: MISSED in %d of %d rows", bad, measured)
	}
}

// methodNotes say how the figures were obtained.
func methodNotes(r *runner, sz sizes, python string) []string {
	notes := []string{
		"times: wall clock from fork/exec to reaped, median over runs; ratios are ratios of the medians",
		"memscope = `memscope-analyze run --out TMP -- PROG`: includes the analyzer's start, its CPU competing with PROG on these cores, and writing every report",
		fmt.Sprintf("micro: %d malloc(32)/free pairs, one thread (the unwind check row: a tenth of them); threads: %d pairs per thread, scaling = N*t(1)/t(N)", sz.microPairs, sz.threadPairs),
		fmt.Sprintf("short threads: %d threads in sequence, each one malloc(40)/free", sz.shortThreads),
		fmt.Sprintf("sizes: %d allocations, 8 B..1 MiB, 25%% kept alive in a 4096-slot pool", sz.sizeOps),
		fmt.Sprintf("startup: per-run time of a batch of %d /bin/true (heaptrack: batch of %d); startup LD_PRELOAD: `LD_PRELOAD=libmemscope.so /bin/true`, the library starting its own detached analyzer, whose work is not timed (only its CPU competing); startup join ring: LD_PRELOAD with MEMSCOPE_RING naming a ring this benchmark drains (the library's own cost)", sz.startupRuns, sz.startupHeaptrack),
		fmt.Sprintf("analyzer RSS: VmHWM of the memscope-analyze process itself (its children excluded; the shared ring's pages it touched, up to the ring size, included), sampled every %v from /proc/PID/status, median over runs; (anon): largest RssAnon sampled, its private memory; growth in the last %v before exit can be missed", hwmPollInterval, hwmPollInterval),
	}
	if python != "" {
		notes = append(notes, fmt.Sprintf("python: %s testdata/bench/dicts.py %d with PYTHONMALLOC=malloc", python, sz.dicts))
	}
	if r.heaptrack != "" {
		notes = append(notes, "heaptrack = `heaptrack -o TMP PROG`: includes heaptrack_interpret and compressing its data file, as heaptrack users experience it")
	}
	return notes
}

// flagSet reports whether the command line set the flag name.
func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
