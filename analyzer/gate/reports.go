// Package gate judges finished leak reports for CI: limits on what leaked
// and how much memory a run took (check), a baseline of a good run to
// compare later runs with, and the per-site difference between two runs
// (diff), in formats CI systems show natively (SARIF, GitHub workflow
// annotations, CSV).
//
// It reads the files memscope-analyze writes (leaks.json, and the pprof
// profiles beside it for diff), not the analyzer's state, so it judges
// reports from any run, on any machine.
//
// Sites are matched across runs by their symbolized frames (function and
// file base name, innermost first), not by address or line: a rebuild or
// an edit elsewhere in a file does not break the match.
package gate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Report is one process's leaks.json (DESIGN.md §6, §6.1).
type Report struct {
	Path         string `json:"-"` // the file it was read from
	Version      int    `json:"version"`
	Pid          uint32 `json:"pid"`
	Ppid         uint32 `json:"ppid"`
	Program      string `json:"program"`
	ExitStatus   *int   `json:"exit_status"`
	Complete     bool   `json:"complete"`
	Reachability string `json:"reachability"`
	Totals       struct {
		Allocations    uint64 `json:"allocations"`
		Frees          uint64 `json:"frees"`
		BytesAllocated uint64 `json:"bytes_allocated"`
		PeakBytes      uint64 `json:"peak_bytes"`
	} `json:"totals"`
	LeakedBytes   uint64  `json:"leaked_bytes"`
	LeakedObjects uint64  `json:"leaked_objects"`
	Leaks         []Group `json:"leaks"`
}

// Group is one group of a report: blocks of one kind from one stack.
type Group struct {
	Kind       string  `json:"kind"`
	Bytes      uint64  `json:"bytes"`
	Objects    uint64  `json:"objects"`
	Suppressed bool    `json:"suppressed"`
	Frames     []Frame `json:"frames"`
}

// Frame is a symbolized frame of a group's stack.
type Frame struct {
	Address  string `json:"address"`
	Function string `json:"function"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	Module   string `json:"module"`
}

// Leaked reports whether the group counts as a leak (not reachable, not
// suppressed): what the gate judges.
func (g *Group) Leaked() bool { return g.Kind != "reachable" && !g.Suppressed }

// Name is the program's base name, how runs are matched.
func (r *Report) Name() string { return filepath.Base(r.Program) }

// UnsuppressedLeak adds up the group's leaks that count.
func (r *Report) UnsuppressedLeak() (bytes, objects uint64) {
	for i := range r.Leaks {
		if g := &r.Leaks[i]; g.Leaked() {
			bytes += g.Bytes
			objects += g.Objects
		}
	}
	return bytes, objects
}

// Load reads reports: each argument a leaks.json file, or a directory
// whose memscope.*.leaks.json files are all read. Reports come ordered by
// program name, then pid.
func Load(args []string) ([]*Report, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("no report given: name leaks.json files or a directory of reports")
	}
	var out []*Report
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, fmt.Errorf("report %s: %w", a, err)
		}
		files := []string{a}
		if st.IsDir() {
			files, err = filepath.Glob(filepath.Join(a, "memscope.*.leaks.json"))
			if err != nil {
				return nil, err
			}
			if len(files) == 0 {
				return nil, fmt.Errorf("report directory %s holds no memscope.*.leaks.json", a)
			}
		}
		for _, f := range files {
			r, err := readReport(f)
			if err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Name() != out[j].Name() {
			return out[i].Name() < out[j].Name()
		}
		return out[i].Pid < out[j].Pid
	})
	return out, nil
}

func readReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("report %s: %w", path, err)
	}
	return ParseReport(b, path)
}

// ParseReport reads the text of a leaks.json (path names it in errors).
func ParseReport(b []byte, path string) (*Report, error) {
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("report %s: not a memscope leaks.json: %w", path, err)
	}
	if r.Version != 1 || r.Program == "" {
		return nil, fmt.Errorf("report %s: not a memscope leaks.json (version %d, program %q)", path, r.Version, r.Program)
	}
	r.Path = path
	return &r, nil
}

// SiteKey names a stack across runs: function and file base name of each
// frame, innermost first; a frame with no function is its module's base
// name.
func SiteKey(frames []Frame) string {
	parts := make([]string, 0, len(frames))
	for _, f := range frames {
		switch {
		case f.Function != "" && f.File != "":
			parts = append(parts, f.Function+"@"+filepath.Base(f.File))
		case f.Function != "":
			parts = append(parts, f.Function+"@"+filepath.Base(f.Module))
		default:
			parts = append(parts, "?@"+filepath.Base(f.Module))
		}
	}
	return strings.Join(parts, " <- ")
}

// UserFrame is the frame a leak is shown at: the first with a source
// file that is not in a system library (the caller of malloc is often
// libc or libstdc++); the first frame if none.
func UserFrame(frames []Frame) (Frame, bool) {
	for _, f := range frames {
		if f.File != "" && f.Line > 0 && !systemModule(f.Module) && !strings.HasPrefix(f.File, "../") {
			return f, true
		}
	}
	if len(frames) > 0 {
		return frames[0], false
	}
	return Frame{}, false
}

func systemModule(m string) bool {
	for _, p := range []string{"/lib/", "/lib64/", "/usr/lib/", "/usr/lib64/", "/usr/libexec/"} {
		if strings.HasPrefix(m, p) {
			return true
		}
	}
	return strings.HasSuffix(m, "/libmemscope.so")
}
