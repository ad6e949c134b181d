package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// enginePkg holds the analyzer engine's Go benchmarks, which report
// events/s and bytes per live block through b.ReportMetric.
const enginePkg = "./analyzer/engine/"

// benchMetric is one custom metric of one Go benchmark, over -count runs.
type benchMetric struct {
	Benchmark string    `json:"benchmark"`
	Unit      string    `json:"unit"`
	Values    []float64 `json:"values"`
	Median    float64   `json:"median"`
}

// benchLine matches "BenchmarkName-2   1234   5678 ns/op   9.5 unit ...".
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// parseGoBench collects every value/unit pair of every benchmark line in
// go test -bench output, keyed by benchmark and unit, in first-seen order.
func parseGoBench(out string) []benchMetric {
	var metrics []benchMetric
	index := map[[2]string]int{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			key := [2]string{m[1], f[i+1]}
			j, ok := index[key]
			if !ok {
				j = len(metrics)
				index[key] = j
				metrics = append(metrics, benchMetric{Benchmark: m[1], Unit: f[i+1]})
			}
			metrics[j].Values = append(metrics[j].Values, v)
		}
	}
	for i := range metrics {
		metrics[i].Median = median(metrics[i].Values)
	}
	return metrics
}

// hasBenchmarks reports whether dir has a Benchmark function in a test file.
func hasBenchmarks(dir string) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
	re := regexp.MustCompile(`(?m)^func Benchmark\w*\(b \*testing\.B\)`)
	for _, f := range files {
		if data, err := os.ReadFile(f); err == nil && re.Match(data) {
			return true
		}
	}
	return false
}

// runGoBench runs the engine's benchmarks on one core (GOMAXPROCS=1) and
// returns their metrics, or a note saying why not. A short discovery pass
// (-count 1, 100ms) finds the benchmarks that report events/s or bytes
// per live block; only those are then run count times, so scratch
// benchmarks in the package do not eat the time budget.
//
// capture, if not "", is a file of recorded records for the benchmarks
// that replay one (MEMSCOPE_CAPTURE).
func runGoBench(goCmd, benchtime string, count int, capture string) ([]benchMetric, string) {
	if !hasBenchmarks(enginePkg) {
		return nil, "analyzer: no Benchmark functions in " + enginePkg + " yet: n/a"
	}
	discovery, note := goTestBench(goCmd, ".", "100ms", 1, capture)
	if note != "" {
		return discovery, note
	}
	seen := map[string]bool{}
	var names []string
	for _, m := range discovery {
		_, ev := eventsPerSecond(m)
		_, lb := bytesPerLiveBlock(m)
		top, _, _ := strings.Cut(m.Benchmark, "/")
		if (ev || lb) && !seen[top] {
			seen[top] = true
			names = append(names, regexp.QuoteMeta(top))
		}
	}
	if len(names) == 0 {
		return nil, "analyzer: no engine benchmark reports events/s or bytes per live block: n/a"
	}
	return goTestBench(goCmd, "^("+strings.Join(names, "|")+")$", benchtime, count, capture)
}

func goTestBench(goCmd, pattern, benchtime string, count int, capture string) ([]benchMetric, string) {
	cmd := exec.Command(goCmd, "test", "-run", "^$", "-bench", pattern, "-benchtime", benchtime,
		"-count", strconv.Itoa(count), "-cpu", "1", enginePkg)
	cmd.Env = append(withoutEnv(os.Environ(), "MEMSCOPE_CAPTURE"), "MEMSCOPE_CAPTURE="+capture)
	out, err := cmd.CombinedOutput()
	metrics := parseGoBench(string(out))
	if err != nil {
		tail := string(out)
		if len(tail) > 800 {
			tail = tail[len(tail)-800:]
		}
		return metrics, fmt.Sprintf("analyzer: go test -bench %s failed (%v): %s", enginePkg, err, strings.TrimSpace(tail))
	}
	if len(metrics) == 0 {
		return nil, "analyzer: go test -bench printed no benchmark lines: n/a"
	}
	return metrics, ""
}

// eventsPerSecond converts an events/s or records/s metric (optionally
// with a k or M prefix: Mevents/s, Mrecords/s) to events per second; ok is
// false for other units. A record is counted as one event, though a
// realloc record carries two: records/s understates events/s.
func eventsPerSecond(m benchMetric) (float64, bool) {
	u := strings.ToLower(m.Unit)
	for _, base := range []string{"events/s", "records/s"} {
		switch u {
		case base:
			return m.Median, true
		case "k" + base:
			return m.Median * 1e3, true
		case "m" + base:
			return m.Median * 1e6, true
		}
	}
	return 0, false
}

// bytesPerLiveBlock recognises a bytes-per-live-block metric (B/live,
// B/live-block, bytes/live_block, ...).
func bytesPerLiveBlock(m benchMetric) (float64, bool) {
	u := strings.ToLower(m.Unit)
	if !strings.Contains(u, "live") {
		return 0, false
	}
	if strings.HasPrefix(u, "b/") || strings.HasPrefix(u, "bytes/") {
		return m.Median, true
	}
	return 0, false
}
