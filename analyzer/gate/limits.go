package gate

import "fmt"

// Limits are what check enforces; a zero pointer is no limit.
type Limits struct {
	MaxLeaked      *uint64 // unsuppressed leaked bytes of one process
	MaxLeakPerSite *uint64 // leaked bytes of one site (one stack, all processes of a program)
	MaxPeak        *uint64 // peak heap of one process
	MaxAllocations *uint64 // allocating calls of one process
}

// Violation is a broken limit, with the sites that broke it.
type Violation struct {
	Program string
	Pid     uint32 // 0: the program's processes together
	Rule    string // "--max-leaked", "new leak site", ...
	Value   uint64
	Limit   uint64
	Unit    string // "B" or "" (a count)
	Message string
	Sites   []*Site
}

// Check applies limits to reports.
func Check(reports []*Report, l Limits) []Violation {
	var out []Violation
	sites := LeakSites(reports)
	for _, r := range reports {
		if l.MaxLeaked != nil {
			if b, o := r.UnsuppressedLeak(); b > *l.MaxLeaked || (*l.MaxLeaked == 0 && o > 0) {
				out = append(out, Violation{Program: r.Name(), Pid: r.Pid, Rule: "--max-leaked", Value: b, Limit: *l.MaxLeaked, Unit: "B",
					Message: fmt.Sprintf("leaked %d byte(s) in %d object(s)%s", b, o, notChecked(r)),
					Sites:   LeakSites([]*Report{r})})
			}
		}
		if l.MaxPeak != nil && r.Totals.PeakBytes > *l.MaxPeak {
			out = append(out, Violation{Program: r.Name(), Pid: r.Pid, Rule: "--max-peak", Value: r.Totals.PeakBytes, Limit: *l.MaxPeak, Unit: "B",
				Message: fmt.Sprintf("peak heap %d byte(s)", r.Totals.PeakBytes)})
		}
		if l.MaxAllocations != nil && r.Totals.Allocations > *l.MaxAllocations {
			out = append(out, Violation{Program: r.Name(), Pid: r.Pid, Rule: "--max-allocations", Value: r.Totals.Allocations, Limit: *l.MaxAllocations,
				Message: fmt.Sprintf("%d allocations", r.Totals.Allocations)})
		}
	}
	if l.MaxLeakPerSite != nil {
		for _, s := range sites {
			if s.Bytes > *l.MaxLeakPerSite {
				out = append(out, Violation{Program: s.Program, Rule: "--max-leak-per-site", Value: s.Bytes, Limit: *l.MaxLeakPerSite, Unit: "B",
					Message: fmt.Sprintf("one site leaked %d byte(s) in %d object(s)", s.Bytes, s.Objects), Sites: []*Site{s}})
			}
		}
	}
	return out
}

// notChecked says when a report's leaks are of unknown kind.
func notChecked(r *Report) string {
	if r.Reachability != "" && r.Reachability != "checked" {
		return " (reachability " + r.Reachability + ")"
	}
	return ""
}
