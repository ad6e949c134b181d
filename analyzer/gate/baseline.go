package gate

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// Baseline is what a good run leaked and used, per program, to hold later
// runs to (pytest-memray's --fail-on-increase, for any program).
type Baseline struct {
	Version  int                         `json:"version"`
	Programs map[string]*BaselineProgram `json:"programs"`
}

// BaselineProgram is one program's part of a baseline: its processes
// together (leaks and allocations added up, the largest peak).
type BaselineProgram struct {
	PeakBytes      uint64                   `json:"peak_bytes"`
	Allocations    uint64                   `json:"allocations"`
	BytesAllocated uint64                   `json:"bytes_allocated"`
	LeakedBytes    uint64                   `json:"leaked_bytes"`
	Sites          map[string]*BaselineSite `json:"sites"`
}

// BaselineSite is what one site leaked.
type BaselineSite struct {
	Bytes   uint64 `json:"bytes"`
	Objects uint64 `json:"objects"`
}

// NewBaseline summarizes reports.
func NewBaseline(reports []*Report) *Baseline {
	b := &Baseline{Version: 1, Programs: map[string]*BaselineProgram{}}
	for _, r := range reports {
		p := b.program(r.Name())
		p.PeakBytes = max(p.PeakBytes, r.Totals.PeakBytes)
		p.Allocations += r.Totals.Allocations
		p.BytesAllocated += r.Totals.BytesAllocated
		leaked, _ := r.UnsuppressedLeak()
		p.LeakedBytes += leaked
	}
	for _, s := range LeakSites(reports) {
		b.program(s.Program).Sites[s.Key] = &BaselineSite{Bytes: s.Bytes, Objects: s.Objects}
	}
	return b
}

func (b *Baseline) program(name string) *BaselineProgram {
	p := b.Programs[name]
	if p == nil {
		p = &BaselineProgram{Sites: map[string]*BaselineSite{}}
		b.Programs[name] = p
	}
	return p
}

// Write writes b as indented JSON (encoding/json sorts map keys: the file
// is stable for a review).
func (b *Baseline) Write(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(b)
}

// ReadBaseline reads a baseline file written by Write.
func ReadBaseline(r io.Reader, name string) (*Baseline, error) {
	var b Baseline
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return nil, fmt.Errorf("baseline %s: %w", name, err)
	}
	if b.Version != 1 || b.Programs == nil {
		return nil, fmt.Errorf("baseline %s: not a memscope baseline (version %d)", name, b.Version)
	}
	for name, p := range b.Programs {
		if p == nil {
			p = &BaselineProgram{}
			b.Programs[name] = p
		}
		if p.Sites == nil {
			p.Sites = map[string]*BaselineSite{}
		}
	}
	return &b, nil
}

// Compare holds reports to the baseline: a leak site the baseline does
// not have fails, and so does a site's leak, or a program's peak, that
// grew by more than maxGrowth percent.
func (b *Baseline) Compare(reports []*Report, maxGrowth float64) []Violation {
	var out []Violation
	grew := func(now, then uint64) bool { return float64(now) > float64(then)*(1+maxGrowth/100) }
	now := NewBaseline(reports)
	names := make([]string, 0, len(now.Programs))
	for n := range now.Programs {
		names = append(names, n)
	}
	sort.Strings(names)
	sites := LeakSites(reports)
	for _, name := range names {
		p, base := now.Programs[name], b.Programs[name]
		if base == nil {
			base = &BaselineProgram{Sites: map[string]*BaselineSite{}}
		}
		for _, s := range sites {
			if s.Program != name {
				continue
			}
			bs := base.Sites[s.Key]
			switch {
			case bs == nil:
				out = append(out, Violation{Program: name, Rule: "new leak site", Value: s.Bytes, Unit: "B",
					Message: fmt.Sprintf("a site the baseline does not have leaked %d byte(s) in %d object(s)", s.Bytes, s.Objects), Sites: []*Site{s}})
			case grew(s.Bytes, bs.Bytes):
				out = append(out, Violation{Program: name, Rule: "--max-growth", Value: s.Bytes, Limit: bs.Bytes, Unit: "B",
					Message: fmt.Sprintf("a site's leak grew from %d to %d byte(s) (more than %g%%)", bs.Bytes, s.Bytes, maxGrowth), Sites: []*Site{s}})
			}
		}
		if base.PeakBytes > 0 && grew(p.PeakBytes, base.PeakBytes) {
			out = append(out, Violation{Program: name, Rule: "--max-growth", Value: p.PeakBytes, Limit: base.PeakBytes, Unit: "B",
				Message: fmt.Sprintf("peak heap grew from %d to %d byte(s) (more than %g%%)", base.PeakBytes, p.PeakBytes, maxGrowth)})
		}
	}
	return out
}
