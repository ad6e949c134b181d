package gate

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/google/pprof/profile"
)

// SiteStats is what one site of a program did in one run: leaked at
// exit (from leaks.json), allocated over the run (the exit profile's
// alloc_*), live at the peak (the peak profile's inuse_space).
type SiteStats struct {
	LeakedBytes   uint64 `json:"leaked_bytes"`
	LeakedObjects uint64 `json:"leaked_objects"`
	AllocBytes    uint64 `json:"alloc_bytes"`
	AllocObjects  uint64 `json:"alloc_objects"`
	PeakBytes     uint64 `json:"peak_bytes"`
}

// DiffRow is one site in either run.
type DiffRow struct {
	Program  string    `json:"program"`
	Site     string    `json:"site"`
	Function string    `json:"function"`
	File     string    `json:"file"`
	Line     int       `json:"line"`
	Old      SiteStats `json:"old"`
	New      SiteStats `json:"new"`
}

// Diff compares two runs per site: the rows where anything changed, the
// largest change in leaked bytes first, then in allocated bytes, then in
// peak bytes.
func Diff(old, new []*Report) ([]DiffRow, error) {
	rows := map[[2]string]*DiffRow{}
	var order []*DiffRow
	row := func(program string, frames []Frame) *DiffRow {
		k := [2]string{program, SiteKey(frames)}
		r := rows[k]
		if r == nil {
			f, _ := UserFrame(frames)
			r = &DiffRow{Program: program, Site: k[1], Function: f.Function, File: f.File, Line: f.Line}
			rows[k] = r
			order = append(order, r)
		}
		return r
	}
	for side, reports := range [][]*Report{old, new} {
		pick := func(r *DiffRow) *SiteStats {
			if side == 0 {
				return &r.Old
			}
			return &r.New
		}
		for _, rep := range reports {
			for i := range rep.Leaks {
				g := &rep.Leaks[i]
				if !g.Leaked() {
					continue
				}
				st := pick(row(rep.Name(), g.Frames))
				st.LeakedBytes += g.Bytes
				st.LeakedObjects += g.Objects
			}
			base := strings.TrimSuffix(rep.Path, ".leaks.json")
			if err := eachSample(base+".pb.gz", func(frames []Frame, v []int64) {
				st := pick(row(rep.Name(), frames))
				st.AllocObjects += uint64(v[0])
				st.AllocBytes += uint64(v[1])
			}); err != nil {
				return nil, err
			}
			if err := eachSample(base+".peak.pb.gz", func(frames []Frame, v []int64) {
				pick(row(rep.Name(), frames)).PeakBytes += uint64(v[3])
			}); err != nil {
				return nil, err
			}
		}
	}
	var out []DiffRow
	for _, r := range order {
		if r.Old != r.New {
			out = append(out, *r)
		}
	}
	abs := func(a, b uint64) uint64 {
		if a > b {
			return a - b
		}
		return b - a
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := &out[i], &out[j]
		if d1, d2 := abs(a.Old.LeakedBytes, a.New.LeakedBytes), abs(b.Old.LeakedBytes, b.New.LeakedBytes); d1 != d2 {
			return d1 > d2
		}
		if d1, d2 := abs(a.Old.AllocBytes, a.New.AllocBytes), abs(b.Old.AllocBytes, b.New.AllocBytes); d1 != d2 {
			return d1 > d2
		}
		return abs(a.Old.PeakBytes, a.New.PeakBytes) > abs(b.Old.PeakBytes, b.New.PeakBytes)
	})
	return out, nil
}

// eachSample calls fn for every sample of a memscope profile, with its
// frames innermost first (inlined ones expanded) and its four values. A
// missing profile is no error (reports copied without their profiles).
func eachSample(path string, fn func(frames []Frame, values []int64)) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("profile %s: %w", path, err)
	}
	defer f.Close()
	p, err := profile.Parse(f)
	if err != nil {
		return fmt.Errorf("profile %s: %w", path, err)
	}
	if len(p.SampleType) != 4 {
		return fmt.Errorf("profile %s: %d sample types, a memscope profile has 4", path, len(p.SampleType))
	}
	for _, s := range p.Sample {
		var frames []Frame
		for _, loc := range s.Location {
			module := ""
			if loc.Mapping != nil {
				module = loc.Mapping.File
			}
			if len(loc.Line) == 0 {
				frames = append(frames, Frame{Module: module})
			}
			for _, l := range loc.Line {
				fr := Frame{Module: module, Line: int(l.Line)}
				if l.Function != nil {
					fr.Function, fr.File = l.Function.Name, l.Function.Filename
				}
				frames = append(frames, fr)
			}
		}
		fn(frames, s.Value)
	}
	return nil
}

// WriteDiffText writes the rows as an aligned table.
func WriteDiffText(w io.Writer, rows []DiffRow) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "memscope diff: no site changed")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "program\tsite\tleaked bytes\tleaked objects\tallocated bytes\tallocations\tpeak bytes")
	for _, r := range rows {
		site := r.Function
		if r.File != "" {
			site = fmt.Sprintf("%s %s:%d", r.Function, r.File, r.Line)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Program, site,
			change(r.Old.LeakedBytes, r.New.LeakedBytes), change(r.Old.LeakedObjects, r.New.LeakedObjects),
			change(r.Old.AllocBytes, r.New.AllocBytes), change(r.Old.AllocObjects, r.New.AllocObjects),
			change(r.Old.PeakBytes, r.New.PeakBytes))
	}
	return tw.Flush()
}

// change writes "old -> new (+d)", or the value alone when it did not change.
func change(a, b uint64) string {
	if a == b {
		return fmt.Sprint(a)
	}
	if b > a {
		return fmt.Sprintf("%d -> %d (+%d)", a, b, b-a)
	}
	return fmt.Sprintf("%d -> %d (-%d)", a, b, a-b)
}

// WriteDiffJSON writes the rows as JSON.
func WriteDiffJSON(w io.Writer, rows []DiffRow) error {
	if rows == nil {
		rows = []DiffRow{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(struct {
		Sites []DiffRow `json:"sites"`
	}{rows})
}
