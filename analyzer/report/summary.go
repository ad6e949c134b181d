package report

import (
	"bufio"
	"fmt"
	"io"
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

func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB (%d bytes)", float64(n)/float64(div), "KMGTPE"[exp], n)
}

func relTime(p *engine.Process, ts uint64) time.Duration {
	if ts < p.StartTS {
		return 0
	}
	return time.Duration(ts - p.StartTS)
}
