package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// heaptrackAnalysis measures how fast heaptrack analyses the heap calls
// of argv, for comparison with the engine's BenchmarkApplyCaptured on the
// same program. heaptrack splits its analysis in two: heaptrack_interpret
// pairs each free with its allocation (its pointer map) and interns the
// traces; heaptrack_print computes totals, peak and leaks. Each of runs
// runs records the program raw (heaptrack --raw), then times both tools
// on that trace, their CPU time (user + system) summed.
//
// It returns the median of allocation and free calls per CPU second,
// counting the trace's "+" and "-" lines (heaptrack's own counts, which
// DESIGN.md §6's totals follow), and the number of calls.
func heaptrackAnalysis(heaptrack, dir string, argv []string, runs int) (callsPerSec float64, calls int64, err error) {
	interpret, err := heaptrackInterpreter(heaptrack)
	if err != nil {
		return 0, 0, err
	}
	printer, err := exec.LookPath("heaptrack_print")
	if err != nil {
		return 0, 0, fmt.Errorf("heaptrack_print: %w", err)
	}
	prefix := filepath.Join(dir, "heaptrack-analysis")
	raw, interpreted := prefix+".raw", prefix+".interpreted"
	// heaptrack_interpret reads stdin and writes stdout: a shell sets
	// them up and execs it, so the CPU measured is the interpreter's.
	interpretArgv := []string{"sh", "-c", `exec "$0" < "$1" > "$2"`, interpret, raw, interpreted}
	// Every report off: totals, peak and leaks are still computed.
	printArgv := []string{printer, "-f", interpreted, "-p", "0", "-a", "0", "-T", "0", "-l", "0"}
	var rates []float64
	for i := 0; i < runs; i++ {
		// A new recording each run: heaptrack_interpret's time depends on
		// where the program's heap landed (0.75 to 2.8 s for six
		// recordings of one program on the project's VM).
		for _, old := range []string{raw, raw + ".zst", raw + ".gz"} {
			os.Remove(old)
		}
		if _, err := runOnce(append([]string{heaptrack, "--raw", "-o", prefix}, argv...), os.Environ(), false, heaptrackRunLimit); err != nil {
			return 0, 0, err
		}
		if calls, err = unpackRawTrace(raw); err != nil {
			return 0, 0, err
		}
		if calls == 0 {
			return 0, 0, fmt.Errorf("heaptrack trace %s: no allocation or free", raw)
		}
		in, err := runOnce(interpretArgv, os.Environ(), false, 0)
		if err != nil {
			return 0, 0, err
		}
		pr, err := runOnce(printArgv, os.Environ(), false, 0)
		if err != nil {
			return 0, 0, err
		}
		rates = append(rates, float64(calls)/(in.CPUSeconds+pr.CPUSeconds))
	}
	return median(rates), calls, nil
}

// heaptrackInterpreter finds heaptrack_interpret where the heaptrack
// script looks for it: ../lib/heaptrack/libexec beside the script.
func heaptrackInterpreter(heaptrack string) (string, error) {
	script, err := filepath.EvalSymlinks(heaptrack)
	if err != nil {
		return "", err
	}
	p := filepath.Join(filepath.Dir(script), "..", "lib", "heaptrack", "libexec", "heaptrack_interpret")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("heaptrack_interpret: %w", err)
	}
	return p, nil
}

// unpackRawTrace finds the raw trace heaptrack wrote for prefix
// (prefix.raw.zst, .raw.gz or .raw), writes it uncompressed to
// prefix.raw, and counts its allocations and frees.
func unpackRawTrace(raw string) (calls int64, err error) {
	var r io.Reader
	switch {
	case exists(raw + ".zst"):
		out, err := exec.Command("zstd", "-dcq", raw+".zst").Output()
		if err != nil {
			return 0, fmt.Errorf("zstd -d %s.zst: %w", raw, err)
		}
		r = bytes.NewReader(out)
	case exists(raw + ".gz"):
		f, err := os.Open(raw + ".gz")
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if r, err = gzip.NewReader(f); err != nil {
			return 0, fmt.Errorf("%s.gz: %w", raw, err)
		}
	case exists(raw):
		f, err := os.Open(raw)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		r = f
	default:
		return 0, fmt.Errorf("heaptrack wrote no raw trace %s[.zst|.gz]", raw)
	}
	tmp := raw + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp)
	w := bufio.NewWriterSize(out, 1<<20)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<24)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) > 1 && (line[0] == '+' || line[0] == '-') && line[1] == ' ' {
			calls++
		}
		w.Write(line)
		w.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		out.Close()
		return 0, fmt.Errorf("heaptrack trace %s: %w", raw, err)
	}
	if err := w.Flush(); err != nil {
		out.Close()
		return 0, err
	}
	if err := out.Close(); err != nil {
		return 0, err
	}
	return calls, os.Rename(tmp, raw)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
