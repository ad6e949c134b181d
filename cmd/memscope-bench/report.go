package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode/utf8"
)

// row is one line of the table, and one element of bench.json's rows.
type row struct {
	Workload string `json:"workload"`
	// Unit of Bare, Memscope and Heaptrack: "s" (wall time of one run),
	// "ms/run" (startup: batch time / runs in the batch), "x" (thread
	// scaling), "events/s" or "B/live block" (analyzer engine),
	// "calls/cpu-s" (analysis compared with heaptrack's).
	Unit      string   `json:"unit"`
	Bare      *float64 `json:"bare,omitempty"`
	Memscope  *float64 `json:"memscope,omitempty"`
	Heaptrack *float64 `json:"heaptrack,omitempty"`
	// Ratios of the medians.
	MemscopeRatio         *float64 `json:"memscope_over_bare,omitempty"`
	HeaptrackRatio        *float64 `json:"heaptrack_over_bare,omitempty"`
	MemscopeOverHeaptrack *float64 `json:"memscope_over_heaptrack,omitempty"`
	// AnalyzerPeakRSS is the median over runs of memscope-analyze's own
	// peak VmHWM (the ring's pages it has touched included).
	AnalyzerPeakRSS *uint64 `json:"analyzer_peak_rss_bytes,omitempty"`
	// AnalyzerPeakAnon: the same for the largest RssAnon sampled.
	AnalyzerPeakAnon *uint64 `json:"analyzer_peak_rss_anon_bytes,omitempty"`
	// RingWait is the traced threads' wait for ring space over the
	// program's time under memscope (all memscope runs of the row added).
	RingWait *float64 `json:"ring_wait_share,omitempty"`
	// DroppedEvents is summed over every memscope run of the row.
	DroppedEvents     *int64 `json:"dropped_events,omitempty"`
	IncompleteReports int    `json:"incomplete_reports,omitempty"`
	Goal              string `json:"goal,omitempty"`
	GoalMet           *bool  `json:"goal_met,omitempty"`
	Note              string `json:"note,omitempty"`

	Samples map[string][]sample `json:"samples,omitempty"`
}

func ptr[T any](v T) *T { return &v }

// medianSeconds is the median wall time of one execution of w under t,
// or nil when t was not run or failed.
func medianSeconds(w *workload, t tool) *float64 {
	if w.err[t] != nil || len(w.samples[t]) == 0 {
		return nil
	}
	var v []float64
	for _, s := range w.samples[t] {
		v = append(v, s.Seconds/float64(w.repeats(t)))
	}
	return ptr(median(v))
}

// maxBareSpread is how far apart a row's bare runs may be before its
// ratios are called disturbed. The CPU accounting of the other
// processes does not see a host that runs this machine slower for a
// while: on 2026-12-07 the bare micro runs took 67 ms or 125 ms, from one
// row to the next and within one, with nothing else running here.
const maxBareSpread = 1.25

// unsteadyNotes warns of the rows whose bare runs' slowest took more
// than maxBareSpread times their fastest: the machine's speed changed
// while the row ran, and its ratios compare runs made at two speeds.
func unsteadyNotes(ws []*workload) []string {
	var notes []string
	for _, w := range ws {
		if w.err[bare] != nil || len(w.samples[bare]) < 2 {
			continue
		}
		lo, hi := w.samples[bare][0].Seconds, w.samples[bare][0].Seconds
		for _, s := range w.samples[bare][1:] {
			lo, hi = min(lo, s.Seconds), max(hi, s.Seconds)
		}
		if lo > 0 && hi/lo > maxBareSpread {
			per := float64(w.repeats(bare))
			notes = append(notes, fmt.Sprintf("WARNING: %s: the bare runs took %s to %s: the machine's speed changed during the row; its ratios are disturbed, rerun it",
				w.name, fmtRun(lo/per), fmtRun(hi/per)))
		}
	}
	return notes
}

// fmtRun formats the time of one run.
func fmtRun(sec float64) string {
	if sec < 0.01 {
		return fmt.Sprintf("%.2f ms", sec*1e3)
	}
	return fmtValue(&sec, "s")
}

func ratio(a, b *float64) *float64 {
	if a == nil || b == nil || *b == 0 {
		return nil
	}
	return ptr(*a / *b)
}

// timeRow turns the samples of w into a row of times.
func timeRow(w *workload) row {
	r := row{Workload: w.name, Unit: "s", Samples: map[string][]sample{}}
	r.Bare = medianSeconds(w, bare)
	r.Memscope = medianSeconds(w, memscope)
	r.Heaptrack = medianSeconds(w, heaptrack)
	r.MemscopeRatio = ratio(r.Memscope, r.Bare)
	r.HeaptrackRatio = ratio(r.Heaptrack, r.Bare)
	r.MemscopeOverHeaptrack = ratio(r.Memscope, r.Heaptrack)
	for t := tool(0); t < numTools; t++ {
		if len(w.samples[t]) > 0 {
			r.Samples[t.String()] = w.samples[t]
		}
	}
	var notes []string
	for t := tool(0); t < numTools; t++ {
		if w.err[t] != nil {
			notes = append(notes, fmt.Sprintf("%s failed", t))
		}
	}
	if ms := w.samples[memscope]; len(ms) > 0 && w.err[memscope] == nil {
		var hwm, anon []float64
		var dropped int64
		var wait, runTime float64
		for _, s := range ms {
			wait += s.RingWaitSeconds
			runTime += s.Seconds
			hwm = append(hwm, float64(s.AnalyzerHWM))
			anon = append(anon, float64(s.AnalyzerAnon))
			dropped += s.Dropped
			r.IncompleteReports += s.Incomplete
		}
		if !w.preloadOnly && !w.joinRing { // no analyzer of ours to watch
			r.AnalyzerPeakRSS = ptr(uint64(median(hwm)))
			r.AnalyzerPeakAnon = ptr(uint64(median(anon)))
		}
		r.DroppedEvents = ptr(dropped)
		if !w.joinRing && !w.preloadOnly && runTime > 0 {
			r.RingWait = ptr(wait / runTime)
		}
		if dropped != 0 || r.IncompleteReports != 0 {
			notes = append(notes, fmt.Sprintf("%d dropped events, %d incomplete reports", dropped, r.IncompleteReports))
		}
	}
	r.Note = strings.Join(notes, "; ")
	return r
}

// check fills in a goal and whether the measured value meets it.
func (r *row) check(goal string, met func() (bool, bool)) {
	r.Goal = goal
	if ok, known := met(); known {
		r.GoalMet = ptr(ok)
	}
}

// report is the whole of bench.json.
type report struct {
	Version      int      `json:"version"`
	Date         string   `json:"date"`
	Host         string   `json:"host"`
	CPUs         int      `json:"cpus"`
	Runs         int      `json:"runs"`
	Rows         []row    `json:"rows"`
	Notes        []string `json:"notes"`
	TotalSeconds float64  `json:"total_seconds"`
	// OtherCPUSeconds is CPU time used by processes that are not the
	// benchmark's while it measured (from /proc/stat): noise.
	OtherCPUSeconds float64  `json:"other_cpu_seconds"`
	Errors          []string `json:"errors,omitempty"`
	// GoBench holds every metric of the engine's Go benchmarks.
	GoBench []benchMetric `json:"go_bench,omitempty"`
}

func fmtValue(v *float64, unit string) string {
	if v == nil {
		return "-"
	}
	switch unit {
	case "s":
		if *v < 1 {
			return fmt.Sprintf("%.0f ms", *v*1e3)
		}
		return fmt.Sprintf("%.2f s", *v)
	case "ms/run":
		return fmt.Sprintf("%.2f ms", *v)
	case "x":
		return fmt.Sprintf("%.2fx", *v)
	case "events/s", "calls/cpu-s":
		return fmt.Sprintf("%.1f M/s", *v/1e6)
	case "B/live block":
		return fmt.Sprintf("%.1f B", *v)
	case "ns/live block":
		return fmt.Sprintf("%.1f ns", *v)
	}
	return fmt.Sprintf("%.3g %s", *v, unit)
}

func fmtRatio(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2fx", *v)
}

func fmtRSS(r row) string {
	if r.AnalyzerPeakRSS == nil {
		return "-"
	}
	mib := func(v uint64) float64 { return float64(v) / (1 << 20) }
	if r.AnalyzerPeakAnon == nil {
		return fmt.Sprintf("%.0f MiB", mib(*r.AnalyzerPeakRSS))
	}
	return fmt.Sprintf("%.0f MiB (%.0f)", mib(*r.AnalyzerPeakRSS), mib(*r.AnalyzerPeakAnon))
}

func fmtWait(r row) string {
	if r.RingWait == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", *r.RingWait*100)
}

func fmtDropped(r row) string {
	if r.DroppedEvents == nil {
		return "-"
	}
	if r.IncompleteReports > 0 {
		return fmt.Sprintf("%d (%d incomplete)", *r.DroppedEvents, r.IncompleteReports)
	}
	return fmt.Sprint(*r.DroppedEvents)
}

func fmtGoal(r row) string {
	if r.Goal == "" {
		return ""
	}
	switch {
	case r.GoalMet == nil:
		return r.Goal + " (n/a)"
	case *r.GoalMet:
		return r.Goal + " ok"
	default:
		return r.Goal + " MISSED"
	}
}

// printTable writes the one table, then its notes. The workload and goal
// columns are left-aligned, the figures right-aligned.
func printTable(w io.Writer, rep *report) {
	lines := [][]string{{"workload", "bare", "memscope", "ms/bare", "heaptrack", "ht/bare", "ms/ht", "analyzer RSS (anon)", "ring wait", "dropped", "goal"}}
	for _, r := range rep.Rows {
		lines = append(lines, []string{r.Workload,
			fmtValue(r.Bare, r.Unit), fmtValue(r.Memscope, r.Unit), fmtRatio(r.MemscopeRatio),
			fmtValue(r.Heaptrack, r.Unit), fmtRatio(r.HeaptrackRatio), fmtRatio(r.MemscopeOverHeaptrack),
			fmtRSS(r), fmtWait(r), fmtDropped(r), fmtGoal(r)})
	}
	width := make([]int, len(lines[0]))
	for _, l := range lines {
		for i, c := range l {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	last := len(width) - 1
	for _, l := range lines {
		var b strings.Builder
		for i, c := range l {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			switch i {
			case 0:
				b.WriteString(c + pad)
			case last:
				b.WriteString("  " + c)
			default:
				b.WriteString("  " + pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	fmt.Fprintln(w)
	for _, r := range rep.Rows {
		if r.Note != "" {
			fmt.Fprintf(w, "  %s: %s\n", r.Workload, r.Note)
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "  - %s\n", n)
	}
	for _, e := range rep.Errors {
		fmt.Fprintf(w, "ERROR %s\n", e)
	}
	fmt.Fprintf(w, "total time of make bench: %.0f s\n", rep.TotalSeconds)
}

// writeJSON writes rep to path through a temporary file and a rename, so
// a reader never sees half a file.
func writeJSON(path string, rep *report) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".bench-*.json")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// median of v (mean of the middle two for an even count); 0 when empty.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
