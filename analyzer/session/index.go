package session

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"

	"memscope/analyzer/engine"
	"memscope/analyzer/report"
)

// Which processes get their five report files (--reports): the index of
// the session lists every process whatever this says.
const (
	ReportsAll     = "all"
	ReportsLeaking = "leaking" // the processes that leaked, and the root
	ReportsRoot    = "root"
)

// IndexEntry is one process in the session's index.
type IndexEntry struct {
	Pid            uint32   `json:"pid"`
	Ppid           uint32   `json:"ppid"`
	Program        string   `json:"program"`
	Argv0          string   `json:"argv0"`
	ExitStatus     *int     `json:"exit_status"`
	Allocations    uint64   `json:"allocations"`
	Frees          uint64   `json:"frees"`
	BytesAllocated uint64   `json:"bytes_allocated"`
	PeakBytes      uint64   `json:"peak_bytes"`
	LeakedBytes    uint64   `json:"leaked_bytes"`   // unsuppressed direct + indirect + unknown
	LeakedObjects  uint64   `json:"leaked_objects"` // the same in objects
	Reachability   string   `json:"reachability"`
	Complete       bool     `json:"complete"`
	Incomplete     []string `json:"incomplete,omitempty"` // why complete is false
	Files          []string `json:"files"`                // empty when --reports left it out
}

// Index is memscope.PROG.PID.index.json: every process of a session.
type Index struct {
	Version   int          `json:"version"`
	Root      uint32       `json:"root"`
	Command   []string     `json:"command,omitempty"`
	Processes []IndexEntry `json:"processes"`
}

func indexEntry(p *engine.Process, leaks *report.LeakReport, files []string) IndexEntry {
	e := IndexEntry{Pid: p.Pid, Ppid: p.Ppid, Program: p.Exe, Argv0: p.Argv0,
		Allocations: p.Totals.Allocations, Frees: p.Totals.Frees, BytesAllocated: p.Totals.BytesAllocated,
		PeakBytes: p.Totals.PeakBytes, LeakedBytes: leaks.UnsuppressedBytes, LeakedObjects: leaks.UnsuppressedObjects,
		Reachability: "checked", Complete: leaks.Complete,
		Incomplete: leaks.IncompleteReasons(), Files: files}
	if code, ok := p.Exit.ShellCode(); ok {
		e.ExitStatus = &code
	}
	if !p.Reach.Checked {
		e.Reachability = "not checked: " + p.Reach.Why()
	}
	if e.Files == nil {
		e.Files = []string{}
	}
	return e
}

// indexOrder lists the processes root first, then by pid: the order
// processes are reported in depends on timing (a fork child's report waits
// for its parent's wait status), and the index must not.
func indexOrder(entries []IndexEntry, root uint32) []IndexEntry {
	sorted := slices.Clone(entries)
	slices.SortStableFunc(sorted, func(a, b IndexEntry) int {
		if (a.Pid == root) != (b.Pid == root) {
			if a.Pid == root {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Pid, b.Pid)
	})
	return sorted
}

// writeIndex writes the session's index beside the reports; it says where.
func (o *outputs) writeIndex(root uint32, command []string) (string, error) {
	if len(o.index) == 0 {
		return "", nil
	}
	idx := Index{Version: 1, Root: root, Command: command, Processes: indexOrder(o.index, root)}
	name := fmt.Sprintf("memscope.session.%d.index.json", root)
	if base, ok := o.bases[root]; ok {
		name = base + ".index.json"
	}
	err := report.WriteFileAtomic(o.cfg.OutDir, name, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(idx)
	})
	return filepath.Join(o.cfg.OutDir, name), err
}
