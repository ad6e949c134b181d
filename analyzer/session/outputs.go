package session

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/pprof/profile"

	"memscope/analyzer/engine"
	"memscope/analyzer/report"
	"memscope/analyzer/symbolize"
)

// outputs writes the files of DESIGN.md §1 for each process that ends,
// sharing one symbol cache across the run.
type outputs struct {
	cfg   Config
	index []IndexEntry
	bases map[uint32]string // pid -> memscope.PROG.PID
	root  uint32            // the session's first process (0: not known yet)
	quiet int               // processes whose summary was not printed
	// quietPeaks are their peaks, for the summary's line of largest peaks.
	quietPeaks []report.ProcessPeak
	loud       int                  // leaking processes whose summary was printed
	syms       *report.Symbols      // the report writer's (reportWriter)
	supp       *report.Suppressions // read-only once parsed: the leak checker reads it too
	dropped    func() uint64        // events dropped in the ring, attributed or not
	profiles   report.ProfileWriter // its compressor, reused from file to file
	reported   uint64               // dropped events attributed to the processes reported so far
	// missing says what of the ring an analyzer that is gone read and
	// this one could not replay (startJournal); "": nothing.
	missing string
}

func newOutputs(cfg Config, dropped func() uint64) (*outputs, error) {
	o := &outputs{cfg: cfg, syms: report.NewSymbols(symbolize.New(symbolize.Options{CacheDir: cfg.SymbolCache})), dropped: dropped, bases: map[uint32]string{}}
	if cfg.Suppressions != "" {
		s, err := report.ParseSuppressions(strings.NewReader(cfg.Suppressions), cfg.SuppressionsName)
		if err != nil {
			return nil, err
		}
		o.supp = s
	}
	return o, nil
}

// summaryLargestPeaks is how many of the processes not summarized the
// summary names for their peaks.
const summaryLargestPeaks = 3

// maxLoudSummaries bounds the processes other than the root whose summary
// is printed (those that leaked, first ended first).
const maxLoudSummaries = 5

// writeWarnings says, once per module and after every report, why some
// frames are degraded, with the debug packages to install (one dpkg-query
// for them all: 0.15 s a call, one per module per process before).
func (o *outputs) writeWarnings() {
	if len(o.syms.Warnings) == 0 {
		return
	}
	pkgs := report.DebugPackages(o.syms.Warnings, o.cfg.SymbolCache)
	for _, w := range o.syms.Warnings {
		fmt.Fprintf(o.cfg.Stderr, "memscope: warning: %s\n", w.Text(pkgs))
	}
}

// finishSummary ends the session's summary: the processes not summarized
// and where the index is.
func (o *outputs) finishSummary(indexPath string) {
	if o.quiet > 0 {
		what := "none leaking"
		if o.loud >= maxLoudSummaries {
			what = "leaking or not"
		}
		fmt.Fprintf(o.cfg.Stderr, "memscope: %d more process(es), %s: every process is in %s\n", o.quiet, what, indexPath)
		report.WriteLargestPeaks(o.cfg.Stderr, o.quietPeaks, summaryLargestPeaks)
	}
}

// write produces every report of p and its summary. A file that cannot be
// written is said on stderr; the others are still written.
func (o *outputs) write(p *engine.Process) ProcessResult {
	// The reachable groups are symbolized only for a process whose
	// files or summary are written (resolve).
	leaks := report.LeakVerdicts(p, o.syms, o.supp)
	resolved := false
	resolve := func() {
		if !resolved {
			resolved = true
			leaks.ResolveReachable(p, o.syms)
		}
	}
	o.reported += p.Totals.DroppedEvents
	if total := o.dropped(); total > o.reported && leaks.Complete {
		// Events a producer dropped and never got to attribute (it died
		// before writing its LOST record) may have been this process's.
		leaks.MarkIncomplete(fmt.Sprintf("%d dropped event(s) in the ring could not be attributed to a process and may have been this one's", total-o.reported))
	}
	if o.missing != "" {
		leaks.MarkIncomplete(o.missing)
	}
	writeText := leaks.WriteText
	if o.cfg.ShowReachable {
		writeText = leaks.WriteTextReachable
	}
	base := report.FileBase(p)
	opts := report.ProfileOptions{TimeNanos: time.Now().UnixNano()}
	var atExit, atPeak *profile.Profile // built once for both files
	writeProfile := func(w io.Writer, which **profile.Profile) error {
		if atExit == nil {
			atExit, atPeak = report.Profiles(p, o.syms, opts)
		}
		return o.profiles.Write(w, *which)
	}
	files := []struct {
		suffix string
		write  func(io.Writer) error
	}{
		{".pb.gz", func(w io.Writer) error { return writeProfile(w, &atExit) }},
		{".peak.pb.gz", func(w io.Writer) error { return writeProfile(w, &atPeak) }},
		{".leaks.txt", writeText},
		{".leaks.json", leaks.WriteJSON},
		{".trace.json", func(w io.Writer) error { return report.WriteTrace(w, p, nil) }},
	}
	res := ProcessResult{
		Pid:          p.Pid,
		Program:      p.Exe,
		LeakedBytes:  leaks.LeakedBytes,
		Unsuppressed: leaks.UnsuppressedObjects > 0,

		UnsuppressedBytes:   leaks.UnsuppressedBytes,
		UnsuppressedObjects: leaks.UnsuppressedObjects,
		Checked:             p.Reach.Checked,
	}
	if o.root == 0 {
		o.root = p.Pid
	}
	o.bases[p.Pid] = base
	isRoot, leaking := p.Pid == o.root, leaks.UnsuppressedObjects > 0
	if o.cfg.Reports == "" || o.cfg.Reports == ReportsAll || isRoot || (o.cfg.Reports == ReportsLeaking && leaking) {
		resolve()
		for _, f := range files {
			name := base + f.suffix
			if err := report.WriteFileAtomic(o.cfg.OutDir, name, f.write); err != nil {
				fmt.Fprintf(o.cfg.Stderr, "memscope: cannot write %s: %v\n", filepath.Join(o.cfg.OutDir, name), err)
				continue
			}
			res.Files = append(res.Files, filepath.Join(o.cfg.OutDir, name))
		}
	}
	o.index = append(o.index, indexEntry(p, leaks, res.Files))
	// One screen of summary however many processes: the root in full,
	// the first few that leaked, then one line for the rest (session end).
	if !isRoot && (!leaking || o.loud >= maxLoudSummaries) {
		o.quiet++
		o.quietPeaks = append(o.quietPeaks, report.PeakOf(p))
		return res
	}
	if !isRoot {
		o.loud++
	}
	resolve()
	if err := report.WriteSummary(o.cfg.Stderr, p, leaks, res.Files); err != nil {
		fmt.Fprintf(o.cfg.Stderr, "memscope: summary: %v\n", err)
	}
	return res
}
