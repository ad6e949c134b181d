package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

	"memscope/analyzer/engine"
)

// RSSSample is a resident-set-size reading of the process (the lead reads
// /proc/PID/statm while it runs), at a CLOCK_MONOTONIC time.
type RSSSample struct {
	TS    uint64
	Bytes uint64
}

// WriteTrace writes p's timeline as Chrome trace JSON (Trace Event Format;
// chrome://tracing and ui.perfetto.dev open it): counter events ("ph":"C")
// "heap" {bytes}, "live objects" {objects} and, when given, "rss" {bytes};
// an instant event at the peak. Timestamps are microseconds since the
// start of the process.
func WriteTrace(w io.Writer, p *engine.Process, rss []RSSSample) error {
	bw := bufio.NewWriter(w)
	name := progName(p)
	nameJSON, _ := json.Marshal(fmt.Sprintf("%s (%d)", name, p.Pid))
	fmt.Fprintf(bw, "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n")
	fmt.Fprintf(bw, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"tid\":0,\"args\":{\"name\":%s}}", p.Pid, nameJSON)
	for _, s := range p.Timeline {
		ts := usSince(p, s.TS)
		fmt.Fprintf(bw, ",\n{\"name\":\"heap\",\"ph\":\"C\",\"ts\":%s,\"pid\":%d,\"tid\":0,\"args\":{\"bytes\":%d}}", ts, p.Pid, s.HeapBytes)
		fmt.Fprintf(bw, ",\n{\"name\":\"live objects\",\"ph\":\"C\",\"ts\":%s,\"pid\":%d,\"tid\":0,\"args\":{\"objects\":%d}}", ts, p.Pid, s.LiveObjects)
	}
	for _, s := range rss {
		fmt.Fprintf(bw, ",\n{\"name\":\"rss\",\"ph\":\"C\",\"ts\":%s,\"pid\":%d,\"tid\":0,\"args\":{\"bytes\":%d}}", usSince(p, s.TS), p.Pid, s.Bytes)
	}
	if p.Totals.PeakBytes > 0 {
		fmt.Fprintf(bw, ",\n{\"name\":\"peak heap %d bytes\",\"ph\":\"i\",\"s\":\"p\",\"ts\":%s,\"pid\":%d,\"tid\":0}", p.Totals.PeakBytes, usSince(p, p.Totals.PeakTS), p.Pid)
	}
	bw.WriteString("\n]}\n")
	return bw.Flush()
}

// usSince formats ts as microseconds since the process start, ns precision.
func usSince(p *engine.Process, ts uint64) string {
	var d uint64
	if ts > p.StartTS {
		d = ts - p.StartTS
	}
	return fmt.Sprintf("%d.%03d", d/1000, d%1000)
}

// progName is the executable's base name (argv[0]'s if the path is unknown).
func progName(p *engine.Process) string {
	for _, s := range []string{p.Exe, p.Argv0} {
		if b := filepath.Base(s); s != "" && b != "/" && b != "." {
			return b
		}
	}
	return "unknown"
}
