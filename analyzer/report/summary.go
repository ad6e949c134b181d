package report

import (
	"bufio"
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"memscope/analyzer/engine"
	"memscope/analyzer/reach"
)

// SummaryTopLeaks is how many leak sites the summary lists.
const SummaryTopLeaks = 5

// WriteSummary writes the one-screen summary of a process for stderr:
// exit status, totals, peak, leaks (top sites), dropped events, files.
func WriteSummary(w io.Writer, p *engine.Process, leaks *LeakReport, files []string) error {
	bw := bufio.NewWriter(w)
	t := p.Totals
	status := "exit status unknown"
	switch {
	case !p.Exit.Known:
	case p.Exit.Signal != 0:
		status = fmt.Sprintf("killed by signal %d", p.Exit.Signal)
	default:
		status = fmt.Sprintf("exited with status %d", p.Exit.Code)
	}
	fmt.Fprintf(bw, "memscope: pid %d (%s) %s\n", p.Pid, progName(p), status)
	fmt.Fprintf(bw, "  heap usage: %d allocs, %d frees, %s allocated, %d temporary\n", t.Allocations, t.Frees, humanBytes(t.BytesAllocated), t.TemporaryAllocations)
	fmt.Fprintf(bw, "  peak heap:  %s in %d objects at +%s\n", humanBytes(t.PeakBytes), t.PeakObjects, relTime(p, t.PeakTS))
	if leaks != nil {
		fmt.Fprintf(bw, "  leaked:     %s in %d objects", humanBytes(leaks.LeakedBytes), leaks.LeakedObjects)
		if leaks.Reach.Checked {
			d, i := leaks.ByKind[reach.Direct], leaks.ByKind[reach.Indirect]
			fmt.Fprintf(bw, " (direct %d B in %d, indirect %d B in %d)", d.Bytes, d.Objects, i.Bytes, i.Objects)
		}
		if sb, so := leaks.LeakedBytes-leaks.UnsuppressedBytes, leaks.LeakedObjects-leaks.UnsuppressedObjects; so > 0 {
			fmt.Fprintf(bw, " (%s in %d objects suppressed)", humanBytes(sb), so)
		}
		bw.WriteString("\n")
		if leaks.Reach.Checked {
			c := leaks.ByKind[reach.Reachable]
			fmt.Fprintf(bw, "  still reachable: %s in %d objects (not leaks)\n", humanBytes(c.Bytes), c.Objects)
		} else {
			fmt.Fprintf(bw, "  reachability not checked: %s\n", leaks.Reach.Why())
		}
		n := 0
		for _, l := range leaks.Leaks {
			if l.Suppressed || !l.Kind.Leaked() {
				continue
			}
			if n == SummaryTopLeaks {
				fmt.Fprintf(bw, "    ... see the leak report\n")
				break
			}
			where := "<empty stack>"
			if len(l.Frames) > 0 {
				where = frameText(l.Frames[0])
			}
			fmt.Fprintf(bw, "    %s: %s in %d objects from %s\n", l.Kind, humanBytes(l.Bytes), l.Objects, where)
			n++
		}
	}
	if t.DroppedEvents > 0 {
		fmt.Fprintf(bw, "  WARNING: %d events dropped: the results are incomplete\n", t.DroppedEvents)
	} else {
		fmt.Fprintf(bw, "  dropped events: 0\n")
	}
	if leaks != nil {
		for _, why := range leaks.Incomplete {
			fmt.Fprintf(bw, "  WARNING: incomplete: %s\n", why)
		}
	}
	if t.UnknownFrees > 0 || t.LateEvents > 0 {
		fmt.Fprintf(bw, "  frees of unknown blocks: %d, late events: %d\n", t.UnknownFrees, t.LateEvents)
	}
	for _, f := range files {
		fmt.Fprintf(bw, "  wrote %s\n", f)
	}
	return bw.Flush()
}

// ProcessPeak is a process in the summary's line of largest peaks.
type ProcessPeak struct {
	Pid       uint32
	Program   string // base name
	PeakBytes uint64
}

// PeakOf is p's entry in the line of largest peaks.
func PeakOf(p *engine.Process) ProcessPeak {
	return ProcessPeak{Pid: p.Pid, Program: progName(p), PeakBytes: p.Totals.PeakBytes}
}

// WriteLargestPeaks writes, for the processes a session did not summarize,
// one line naming the n with the largest peaks, largest first (none when
// procs is empty): a build's memory hog is found without the index.
func WriteLargestPeaks(w io.Writer, procs []ProcessPeak, n int) error {
	if len(procs) == 0 || n <= 0 {
		return nil
	}
	procs = slices.Clone(procs)
	slices.SortStableFunc(procs, func(a, b ProcessPeak) int { return cmp.Compare(b.PeakBytes, a.PeakBytes) })
	var line strings.Builder
	line.WriteString("memscope: largest peaks among them:")
	for i, p := range procs[:min(n, len(procs))] {
		if i > 0 {
			line.WriteString(",")
		}
		fmt.Fprintf(&line, " pid %d (%s) %s", p.Pid, p.Program, shortBytes(p.PeakBytes))
	}
	line.WriteString("\n")
	_, err := io.WriteString(w, line.String())
	return err
}

// WriteRingWait says how long traced threads waited for space in a full
// ring, the time the recording added to the program beyond its own cost.
func WriteRingWait(w io.Writer, waits uint64, wait time.Duration, ringBytes uint64) error {
	_, err := fmt.Fprintf(w, "memscope: traced threads waited %v in all for ring space (the ring was full %d time(s)); a ring larger than %s (--ring-size) lets them run on\n",
		wait.Round(time.Microsecond), waits, shortBytes(ringBytes))
	return err
}

// humanBytes is shortBytes with the exact count: "1.5 KiB (1536 bytes)".
func humanBytes(n uint64) string {
	if n < 1024 {
		return shortBytes(n)
	}
	return fmt.Sprintf("%s (%d bytes)", shortBytes(n), n)
}

// shortBytes is n in B, KiB, MiB...: "1.5 KiB".
func shortBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func relTime(p *engine.Process, ts uint64) time.Duration {
	if ts < p.StartTS {
		return 0
	}
	return time.Duration(ts - p.StartTS)
}
