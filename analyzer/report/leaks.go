package report

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"

	"memscope/analyzer/engine"
	"memscope/analyzer/reach"
)

// LeakReport is the leak report of one process (DESIGN.md §6): the blocks
// still allocated when it ended, grouped by allocation stack and by the
// leak check's verdict (§6.1).
type LeakReport struct {
	Pid, Ppid uint32
	Program   string
	Exit      engine.ExitStatus
	Complete  bool // false: Incomplete says why
	// Incomplete lists why events of the process are missing, besides
	// dropped events (which Totals.DroppedEvents counts): MarkIncomplete.
	Incomplete []string
	Totals     engine.Totals
	Reach      engine.Reachability

	// LeakedBytes/Objects count direct, indirect and unknown blocks,
	// suppressed ones included.
	LeakedBytes, LeakedObjects uint64
	// UnsuppressedBytes/Objects are what SUMMARY and --fail-on-leak count.
	UnsuppressedBytes, UnsuppressedObjects uint64
	// ByKind adds up the blocks of each kind (suppressed included).
	ByKind [reach.NumKinds]engine.KindCount

	// Leaks lists every group still allocated, reachable ones included:
	// direct, indirect, unknown, then reachable; by bytes descending
	// within a kind.
	Leaks []Leak
	// SuppressionsUsed lists the patterns that matched, in file order.
	SuppressionsUsed []SuppressionUse
}

// Leak is one group: the blocks of one kind allocated from one stack
// (all threads).
type Leak struct {
	StackID    uint64
	Kind       reach.Kind
	Bytes      uint64
	Objects    uint64
	Suppressed bool    // a suppression matched (leak kinds only)
	Frames     []Frame // frames[0]: the caller of the allocator
	firstTS    uint64  // the group's first allocation (symbolization's code generation)
}

// SuppressionUse is a suppression that matched leaks, with what it hid
// (LSan's "Suppressions used" table: objects and bytes).
type SuppressionUse struct {
	Pattern string
	Objects uint64
	Bytes   uint64
}

// MarkIncomplete records that events of the process are missing, and why
// (a sentence without a final period).
func (r *LeakReport) MarkIncomplete(why string) {
	r.Complete = false
	r.Incomplete = append(r.Incomplete, why)
}

// IncompleteReasons are every reason the report is incomplete, dropped
// events first.
func (r *LeakReport) IncompleteReasons() []string {
	var why []string
	if r.Totals.DroppedEvents > 0 {
		why = append(why, fmt.Sprintf("%d event(s) were dropped", r.Totals.DroppedEvents))
	}
	return append(why, r.Incomplete...)
}

// kindOrder is the position of each kind in the report.
var kindOrder = [reach.NumKinds]int{reach.Direct: 0, reach.Indirect: 1, reach.Unknown: 2, reach.Reachable: 3}

// Leaks builds the leak report of p, every group symbolized. supp may be
// nil.
func Leaks(p *engine.Process, syms *Symbols, supp *Suppressions) *LeakReport {
	r := LeakVerdicts(p, syms, supp)
	r.ResolveReachable(p, syms)
	return r
}

// ResolveReachable symbolizes the reachable groups LeakVerdicts left
// without frames: call it before writing the report anywhere.
func (r *LeakReport) ResolveReachable(p *engine.Process, syms *Symbols) {
	for i := range r.Leaks {
		if l := &r.Leaks[i]; l.Frames == nil && l.Kind == reach.Reachable {
			l.Frames = syms.Frames(p, l.StackID, l.firstTS)
		}
	}
	sort.Slice(r.Leaks, func(i, j int) bool { return leakLess(&r.Leaks[i], &r.Leaks[j]) })
}

// LeakVerdicts is Leaks with only the leaked groups symbolized (the
// suppressions match their frames): all the index, the summary line and
// --fail-on-leak need of a process whose files are not written. A bash
// subshell's hundreds of reachable groups took most of its report's time.
func LeakVerdicts(p *engine.Process, syms *Symbols, supp *Suppressions) *LeakReport {
	r := &LeakReport{
		Pid: p.Pid, Ppid: p.Ppid, Program: p.Exe, Exit: p.Exit,
		Complete: p.Totals.DroppedEvents == 0, Totals: p.Totals, Reach: p.Reach,
	}
	if n := p.Totals.UnrecordedCalls; n > 0 {
		r.MarkIncomplete(fmt.Sprintf("%d allocator call(s) made by signal handlers while memscope was recording another call of the same thread were not recorded", n))
	}
	type key struct {
		stack uint64
		kind  reach.Kind
	}
	type group struct {
		bytes, objects, firstTS uint64
	}
	groups := map[key]*group{}
	for _, s := range p.Sites {
		for k, c := range s.ByKind {
			if c.Objects == 0 {
				continue
			}
			gk := key{s.StackID, reach.Kind(k)}
			g := groups[gk]
			if g == nil {
				g = &group{firstTS: s.FirstTS}
				groups[gk] = g
			}
			g.bytes += c.Bytes
			g.objects += c.Objects
			if s.FirstTS < g.firstTS {
				g.firstTS = s.FirstTS
			}
		}
	}
	used := map[string]*SuppressionUse{}
	for gk, g := range groups {
		l := Leak{StackID: gk.stack, Kind: gk.kind, Bytes: g.bytes, Objects: g.objects, firstTS: g.firstTS}
		if l.Kind != reach.Reachable {
			l.Frames = syms.Frames(p, gk.stack, g.firstTS)
		}
		r.ByKind[l.Kind].Objects += l.Objects
		r.ByKind[l.Kind].Bytes += l.Bytes
		if l.Kind.Leaked() {
			if pat, ok := supp.Match(l.Frames); ok {
				l.Suppressed = true
				u := used[pat]
				if u == nil {
					u = &SuppressionUse{Pattern: pat}
					used[pat] = u
				}
				u.Objects += l.Objects
				u.Bytes += l.Bytes
			} else {
				r.UnsuppressedBytes += l.Bytes
				r.UnsuppressedObjects += l.Objects
			}
			r.LeakedBytes += l.Bytes
			r.LeakedObjects += l.Objects
		}
		r.Leaks = append(r.Leaks, l)
	}
	sort.Slice(r.Leaks, func(i, j int) bool { return leakLess(&r.Leaks[i], &r.Leaks[j]) })
	if supp != nil {
		for _, pat := range supp.Patterns {
			if u := used[pat]; u != nil {
				r.SuppressionsUsed = append(r.SuppressionsUsed, *u)
				delete(used, pat)
			}
		}
	}
	return r
}

// leakLess orders by kind (direct, indirect, unknown, reachable), bytes, then objects (both descending), then by the
// frames' addresses, then by stack id: a total, deterministic order.
func leakLess(a, b *Leak) bool {
	if a.Kind != b.Kind {
		return kindOrder[a.Kind] < kindOrder[b.Kind]
	}
	if a.Bytes != b.Bytes {
		return a.Bytes > b.Bytes
	}
	if a.Objects != b.Objects {
		return a.Objects > b.Objects
	}
	for k := 0; k < len(a.Frames) && k < len(b.Frames); k++ {
		if a.Frames[k].Address != b.Frames[k].Address {
			return a.Frames[k].Address < b.Frames[k].Address
		}
	}
	if len(a.Frames) != len(b.Frames) {
		return len(a.Frames) < len(b.Frames)
	}
	return a.StackID < b.StackID
}

// WriteText writes the report in LeakSanitizer's words:
//
//	==PID==memscope: detected memory leaks
//
//	Direct leak of N byte(s) in M object(s) allocated from:
//	    #0 0xADDR in FUNC FILE:LINE
//	    #1 0xADDR in FUNC (MODULE+0xOFF)     function known, no line info
//	    #2 0xADDR (MODULE+0xOFF)             nothing known
//
//	Indirect leak of N byte(s) in M object(s) allocated from:
//	    ...
//
//	still reachable: N byte(s) in M object(s)
//	SUMMARY: memscope: N byte(s) leaked in M allocation(s).
//
// Direct leaks come first, then indirect ones, each by bytes descending.
// When the leak check did not run, a warning says why and every block
// still allocated is listed as "Leak of" (kind unknown). Reachable blocks
// are listed only with showReachable. As in LSan, suppressed leaks are
// not listed; a "Suppressions used" table says what each pattern hid, and
// SUMMARY counts unsuppressed leaks only (the JSON's leaked_bytes and
// leaked_objects include suppressed ones). A warning line follows the
// first one when events were dropped, and one when events arrived late
// (engine package comment).
func (r *LeakReport) WriteText(w io.Writer) error { return r.writeText(w, false) }

// WriteTextReachable is WriteText listing reachable blocks too
// (--show-reachable).
func (r *LeakReport) WriteTextReachable(w io.Writer) error { return r.writeText(w, true) }

func (r *LeakReport) writeText(w io.Writer, showReachable bool) error {
	bw := bufio.NewWriter(w)
	if r.UnsuppressedObjects > 0 {
		fmt.Fprintf(bw, "==%d==memscope: detected memory leaks\n", r.Pid)
	} else {
		fmt.Fprintf(bw, "==%d==memscope: no leaks detected\n", r.Pid)
	}
	if !r.Reach.Checked {
		fmt.Fprintf(bw, "==%d==WARNING: memscope: reachability not checked: %s; every block still allocated is listed as a leak.\n", r.Pid, r.Reach.Why())
	}
	if r.Totals.DroppedEvents > 0 {
		fmt.Fprintf(bw, "==%d==WARNING: memscope: %d event(s) were dropped; this report is incomplete.\n", r.Pid, r.Totals.DroppedEvents)
	}
	for _, why := range r.Incomplete {
		fmt.Fprintf(bw, "==%d==WARNING: memscope: this report is incomplete: %s.\n", r.Pid, why)
	}
	if r.Totals.LateEvents > 0 {
		fmt.Fprintf(bw, "==%d==WARNING: memscope: %d event(s) were applied out of time order (a thread stalled longer than the reorder window); leaks and totals are exact, the peak may count blocks freed meanwhile.\n", r.Pid, r.Totals.LateEvents)
	}
	for _, l := range r.Leaks {
		if l.Suppressed || (l.Kind == reach.Reachable && !showReachable) {
			continue
		}
		fmt.Fprintf(bw, "\n%s of %d byte(s) in %d object(s) allocated from:\n", kindTitle(l.Kind), l.Bytes, l.Objects)
		if len(l.Frames) == 0 {
			bw.WriteString("    <empty stack>\n")
		}
		for i, f := range l.Frames {
			fmt.Fprintf(bw, "    #%d %s\n", i, frameText(f))
		}
	}
	bw.WriteString("\n")
	if len(r.SuppressionsUsed) > 0 {
		bw.WriteString("-----------------------------------------------------\n")
		bw.WriteString("Suppressions used:\n")
		bw.WriteString("  count      bytes template\n")
		for _, u := range r.SuppressionsUsed {
			fmt.Fprintf(bw, "%7d %10d %s\n", u.Objects, u.Bytes, u.Pattern)
		}
		bw.WriteString("-----------------------------------------------------\n\n")
	}
	if r.Reach.Checked {
		c := r.ByKind[reach.Reachable]
		fmt.Fprintf(bw, "still reachable: %d byte(s) in %d object(s)\n", c.Bytes, c.Objects)
	}
	fmt.Fprintf(bw, "SUMMARY: memscope: %d byte(s) leaked in %d allocation(s).\n", r.UnsuppressedBytes, r.UnsuppressedObjects)
	return bw.Flush()
}

// kindTitle is how the text report names a group of kind k.
func kindTitle(k reach.Kind) string {
	switch k {
	case reach.Direct:
		return "Direct leak"
	case reach.Indirect:
		return "Indirect leak"
	case reach.Reachable:
		return "Reachable block"
	}
	return "Leak"
}

func frameText(f Frame) string {
	where := "(<unknown module>)"
	if f.Module != "" {
		where = fmt.Sprintf("(%s+%#x)", f.Module, f.Offset)
	}
	switch {
	case f.Function == "":
		return fmt.Sprintf("%#x %s", f.Address, where)
	case f.File == "":
		return fmt.Sprintf("%#x in %s %s", f.Address, f.Function, where)
	case f.Line == 0:
		return fmt.Sprintf("%#x in %s %s", f.Address, f.Function, f.File)
	}
	return fmt.Sprintf("%#x in %s %s:%d", f.Address, f.Function, f.File, f.Line)
}

// WriteJSON writes the report as one line of JSON (DESIGN.md §6). Every
// group still allocated is listed with its "kind" (reachable ones too),
// suppressed leaks with "suppressed": true; exit_status is
// the exit code, 128+N for a process killed by signal N, null if unknown.
// The fields are in the schema's order; strings are escaped as
// encoding/json escapes them without HTML escaping (jsonwrite.go).
func (r *LeakReport) WriteJSON(w io.Writer) error {
	var j jsonWriter
	j.b = append(j.b, `{"version":1,"pid":`...)
	j.uint(uint64(r.Pid))
	j.field("ppid")
	j.uint(uint64(r.Ppid))
	j.field("program")
	j.str(r.Program)
	j.field("exit_status")
	if code, ok := r.Exit.ShellCode(); ok {
		j.int(int64(code))
	} else {
		j.b = append(j.b, "null"...)
	}
	j.field("complete")
	j.bool(r.Complete)
	if why := r.IncompleteReasons(); len(why) > 0 {
		j.field("incomplete")
		j.b = append(j.b, '[')
		for i, s := range why {
			j.comma(i)
			j.str(s)
		}
		j.b = append(j.b, ']')
	}
	t := &r.Totals
	j.field("totals")
	j.b = append(j.b, '{')
	for i, f := range [...]struct {
		name string
		v    uint64
	}{
		{"allocations", t.Allocations}, {"frees", t.Frees}, {"bytes_allocated", t.BytesAllocated},
		{"peak_bytes", t.PeakBytes}, {"temporary_allocations", t.TemporaryAllocations},
		{"dropped_events", t.DroppedEvents}, {"unrecorded_calls", t.UnrecordedCalls},
		{"unknown_frees", t.UnknownFrees}, {"late_events", t.LateEvents},
	} {
		j.comma(i)
		j.key(f.name)
		j.uint(f.v)
	}
	j.b = append(j.b, '}')
	j.field("leaked_bytes")
	j.uint(r.LeakedBytes)
	j.field("leaked_objects")
	j.uint(r.LeakedObjects)
	j.field("reachability")
	if r.Reach.Checked {
		j.str("checked")
	} else {
		j.str("not checked: " + r.Reach.Why())
	}
	for _, k := range [...]struct {
		name string
		kind reach.Kind
	}{{"direct", reach.Direct}, {"indirect", reach.Indirect}, {"reachable", reach.Reachable}} {
		j.field(k.name + "_bytes")
		j.uint(r.ByKind[k.kind].Bytes)
		j.field(k.name + "_objects")
		j.uint(r.ByKind[k.kind].Objects)
	}
	j.field("leaks")
	j.b = append(j.b, '[')
	for i, l := range r.Leaks {
		j.comma(i)
		j.b = append(j.b, `{"kind":`...)
		j.str(l.Kind.String())
		j.field("bytes")
		j.uint(l.Bytes)
		j.field("objects")
		j.uint(l.Objects)
		j.field("suppressed")
		j.bool(l.Suppressed)
		j.field("frames")
		j.b = append(j.b, '[')
		for i, f := range l.Frames {
			j.comma(i)
			j.b = append(j.b, `{"address":"0x`...)
			j.b = strconv.AppendUint(j.b, f.Address, 16)
			j.b = append(j.b, '"')
			j.field("function")
			j.str(f.Function)
			j.field("file")
			j.str(f.File)
			j.field("line")
			j.int(int64(f.Line))
			j.field("module")
			j.str(f.Module)
			j.b = append(j.b, '}')
		}
		j.b = append(j.b, "]}"...)
	}
	j.b = append(j.b, "]}\n"...)
	_, err := w.Write(j.b)
	return err
}
