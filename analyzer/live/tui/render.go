package tui

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"

	"memscope/analyzer/live"
)

// View implements tea.Model: the whole screen, fitted to its size.
func (m Model) View() tea.View {
	v := tea.NewView(m.render())
	v.AltScreen = true
	return v
}

func (m Model) render() string {
	w, h := max(m.width, 40), max(m.height, 10)
	var lines []string
	add := func(s string) { lines = append(lines, fit(s, w)) }
	p := m.current()
	switch {
	case m.view == nil && m.err != nil:
		add("memscope live: " + red.Render(m.err.Error()))
	case m.view == nil:
		add("memscope live: waiting for the session...")
	case p == nil:
		add("memscope live: no traced process yet")
	}
	if p == nil {
		return strings.Join(append(lines, fit(footer(), w)), "\n")
	}
	status := "running"
	if !p.Running {
		status = "ended"
		if p.ExitStatus != nil {
			status = fmt.Sprintf("exited %d", *p.ExitStatus)
		}
	}
	title := fmt.Sprintf("memscope live  pid %d %s  %s %s", p.Pid, filepath.Base(p.Program), status, dur(p.AgeNS))
	if m.paused {
		title += "  " + invert.Render(" PAUSED ")
	}
	if m.err != nil {
		title += "  " + red.Render("session: "+m.err.Error())
	}
	add(bold.Render(title))
	allocRate, freeRate := m.rates(p)
	add(fmt.Sprintf("heap %s in %d objects   peak %s at +%s   %s allocs/s  %s frees/s",
		size(p.HeapBytes), p.HeapObjects, size(p.PeakBytes), dur(p.PeakAtNS), count(allocRate), count(freeRate)))
	ring := m.view.Ring
	fill := 0.0
	if ring.CapacityBytes > 0 {
		fill = 100 * float64(ring.UsedBytes) / float64(ring.CapacityBytes)
	}
	lossLine := fmt.Sprintf("ring %.0f%% of %s   dropped %s   late %s   last event %s ago", fill, size(ring.CapacityBytes),
		warnNonZero(p.DroppedEvents+ring.DroppedEvents), warnNonZero(p.LateEvents), dur(p.LagNS))
	if m.view.Output != "" {
		lossLine += "   output: " + m.view.Output
	}
	add(lossLine)
	add("heap " + sparkline(p.Timeline, w-5))
	add(m.processList(w))
	if note := m.selectionNote(); note != "" {
		add(note)
	}
	if !p.Running && p.ByKind != nil {
		for i, line := range verdictLines(p) {
			if i == 0 {
				line = "ended: " + line
			} else {
				line = "       " + line
			}
			add(line)
		}
	}

	rows := m.rows(p)
	header := fmt.Sprintf("%12s %8s %6s %12s %9s %9s  %s", "live bytes", "objects", "%heap", "allocated", "calls", "temporary", m.nameHeader())
	add(invert.Render(fit(markSort(header, m.sortBy), w)))
	room := h - len(lines) - 2
	var stack []string
	if m.expanded && m.selected < len(rows) {
		stack = rows[m.selected].stack
		if len(stack) > room/2 {
			stack = stack[:room/2]
		}
		room -= len(stack) + 1
	}
	sel := min(m.selected, max(len(rows)-1, 0))
	first := 0
	if sel >= room {
		first = sel - room + 1
	}
	for i := first; i < len(rows) && i < first+room; i++ {
		r := rows[i]
		pct := 0.0
		if p.HeapBytes > 0 {
			pct = 100 * float64(r.live) / float64(p.HeapBytes)
		}
		line := fmt.Sprintf("%12d %8d %5.1f%% %12d %9d %9d  %s", r.live, r.objs, pct, r.allocB, r.allocs, r.temps, r.name)
		if i == sel {
			line = invert.Render(fit(line, w))
		}
		add(line)
	}
	if len(rows) == 0 {
		add(dim.Render("  (no allocation site" + m.filterNote() + ")"))
	}
	if stack != nil {
		add(dim.Render("stack of the selected site:"))
		for _, s := range stack {
			add("  " + s)
		}
	}
	for len(lines) < h-1 {
		lines = append(lines, "")
	}
	bottom := footer()
	switch {
	case m.editing:
		bottom = "filter: " + m.filter + "_   (enter to apply, esc to keep)"
	case m.message != "":
		bottom = m.message + "   " + dim.Render("q quit")
	}
	lines = append(lines[:h-1], fit(bottom, w))
	return strings.Join(lines, "\n")
}

// verdictLines say what an ended process leaked, as the summary does.
func verdictLines(p *live.ProcView) []string {
	d, i, u, r := p.ByKind["direct"], p.ByKind["indirect"], p.ByKind["unknown"], p.ByKind["reachable"]
	lines := []string{fmt.Sprintf("leaked: %s in %d objects (direct %d B in %d, indirect %d B in %d)",
		size(d.Bytes+i.Bytes+u.Bytes), d.Objects+i.Objects+u.Objects, d.Bytes, d.Objects, i.Bytes, i.Objects)}
	if p.Reachability == "checked" {
		lines = append(lines, fmt.Sprintf("still reachable: %s in %d objects (not leaks)", size(r.Bytes), r.Objects))
	} else {
		lines = append(lines, "reachability "+p.Reachability)
	}
	return lines
}

func footer() string {
	return "q quit  p pause  s snapshot  1-6 sort  c own/total  / filter  t thread  tab process  enter stack"
}

func (m Model) nameHeader() string {
	if m.cumulative {
		return "function file (total)"
	}
	return "function file:line (own)"
}

// selectionNote says which sites the table shows, when not all.
func (m Model) selectionNote() string {
	var parts []string
	if m.filter != "" {
		parts = append(parts, fmt.Sprintf("matching %q", m.filter))
	}
	if p := m.current(); p != nil && m.thread > 0 && m.thread <= len(p.Threads) {
		t := p.Threads[m.thread-1]
		parts = append(parts, fmt.Sprintf("thread %d %s", t.Tid, t.Name))
	}
	if len(parts) == 0 {
		return ""
	}
	return "showing sites " + strings.Join(parts, ", ")
}

func (m Model) filterNote() string {
	if m.filter == "" {
		return ""
	}
	return fmt.Sprintf(" matching %q", m.filter)
}

// markSort puts a marker before the header of the sort column.
func markSort(header string, col int) string {
	name := colNames[col]
	if col == colName {
		name = "function"
	}
	if i := strings.Index(header, name); i >= 0 {
		if i > 0 && header[i-1] == ' ' {
			return header[:i-1] + "▼" + header[i:]
		}
	}
	return header
}

func (m Model) processList(w int) string {
	var parts []string
	for i, p := range m.view.Processes {
		s := fmt.Sprintf("%d %s", p.Pid, filepath.Base(p.Program))
		if !p.Running {
			if p.ExitStatus != nil {
				s += fmt.Sprintf(" (exit %d)", *p.ExitStatus)
			} else {
				s += " (ended)"
			}
		}
		if i == m.proc {
			s = invert.Render("[" + s + "]")
		}
		parts = append(parts, s)
	}
	return fit("processes: "+strings.Join(parts, "  "), w)
}

// rates are allocations and frees per second between the last two states.
func (m Model) rates(p *live.ProcView) (allocs, frees float64) {
	if m.prev == nil || !m.at.After(m.prevAt) {
		return 0, 0
	}
	for _, q := range m.prev.Processes {
		if q.Pid == p.Pid {
			dt := m.at.Sub(m.prevAt).Seconds()
			return float64(p.Allocations-min(q.Allocations, p.Allocations)) / dt, float64(p.Frees-min(q.Frees, p.Frees)) / dt
		}
	}
	return 0, 0
}

var sparks = []rune("▁▂▃▄▅▆▇█")

// sparkline draws the heap over time in at most width cells.
func sparkline(points [][2]uint64, width int) string {
	if len(points) == 0 || width <= 0 {
		return ""
	}
	var top uint64
	for _, p := range points {
		top = max(top, p[1])
	}
	step := (len(points) + width - 1) / width
	var b strings.Builder
	for i := 0; i < len(points); i += step {
		var v uint64
		for j := i; j < i+step && j < len(points); j++ {
			v = max(v, points[j][1])
		}
		k := 0
		if top > 0 {
			k = int(float64(v) / float64(top) * float64(len(sparks)-1))
		}
		b.WriteRune(sparks[k])
	}
	return b.String()
}

func warnNonZero(n uint64) string {
	if n == 0 {
		return "0"
	}
	return red.Render(fmt.Sprint(n))
}

func size(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func count(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func dur(ns uint64) string {
	d := time.Duration(ns)
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

// fit cuts s to w columns (styled strings are left whole: they are short).
func fit(s string, w int) string {
	if strings.Contains(s, "\x1b") {
		return s
	}
	r := []rune(s)
	if len(r) > w {
		return string(r[:w])
	}
	return s
}
