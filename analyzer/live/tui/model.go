// Package tui is `memscope-analyze live`'s terminal view of a session: a
// client of the session's socket (the same whether the session runs in
// this process or was attached to), refreshed about once a second, drawn
// with Charm's bubbletea v2 and lipgloss v2.
package tui

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"

	"memscope/analyzer/live"
)

// Source is where the view gets its state and snapshots from.
type Source interface {
	State(ctx context.Context) (*live.View, error)
	Snapshot(ctx context.Context, pid uint32) ([]byte, error)
}

// Options configure the view.
type Options struct {
	Refresh time.Duration // default 1 s
	// SaveSnapshot writes a snapshot of pid and says where (key s).
	SaveSnapshot func(pid uint32, program string, data []byte) (string, error)
	// Finished, if set, is closed when the session's program has ended
	// and its reports are written (live -- PROG); the view then shows the
	// final state until q.
	Finished <-chan struct{}
}

// Columns the table sorts by (keys 1-6).
const (
	colLive = iota
	colObjects
	colAllocBytes
	colAllocs
	colTemps
	colName
	numCols
)

var colNames = [numCols]string{"live bytes", "objects", "allocated", "calls", "temporary", "function"}

type stateMsg struct {
	v   *live.View
	err error
	at  time.Time
}

type tickMsg time.Time

type snapMsg struct {
	text string
}

type finishedMsg struct{}

// Model is the view's state.
type Model struct {
	src  Source
	opts Options

	view     *live.View
	prev     *live.View // the state before, for rates
	prevAt   time.Time
	at       time.Time
	err      error
	paused   bool
	finished bool
	message  string

	proc       int    // index into the processes
	procPid    uint32 // the pid at proc: the index follows it from state to state
	sortBy     int
	cumulative bool
	filter     string
	editing    bool // typing the filter
	thread     int  // 0: all threads; else index+1 into the process's threads
	selected   int
	expanded   bool

	width, height int
}

// New returns the model of a view of src.
func New(src Source, opts Options) Model {
	if opts.Refresh == 0 {
		opts.Refresh = time.Second
	}
	return Model{src: src, opts: opts, width: 80, height: 24}
}

// Init implements tea.Model.
func (m Model) Init() tea.Cmd {
	cmds := []tea.Cmd{m.fetch()}
	if m.opts.Finished != nil {
		ch := m.opts.Finished
		cmds = append(cmds, func() tea.Msg { <-ch; return finishedMsg{} })
	}
	return tea.Batch(cmds...)
}

func (m Model) fetch() tea.Cmd {
	src := m.src
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		v, err := src.State(ctx)
		return stateMsg{v, err, time.Now()}
	}
}

func (m Model) tick() tea.Cmd {
	return tea.Tick(m.opts.Refresh, func(t time.Time) tea.Msg { return tickMsg(t) })
}

// Update implements tea.Model.
func (m Model) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case tea.WindowSizeMsg:
		m.width, m.height = msg.Width, msg.Height
	case stateMsg:
		if msg.err != nil {
			m.err = msg.err
		} else if !m.paused {
			m.err = nil
			m.prev, m.prevAt = m.view, m.at
			m.view, m.at = msg.v, msg.at
			m.clampProc()
		}
		if m.finished {
			return m, nil // the session is over: nothing more to fetch
		}
		return m, m.tick()
	case tickMsg:
		return m, m.fetch()
	case finishedMsg:
		m.finished = true
		return m, m.fetch()
	case snapMsg:
		m.message = msg.text
	case tea.KeyPressMsg:
		return m.key(msg)
	}
	return m, nil
}

func (m Model) key(k tea.KeyPressMsg) (tea.Model, tea.Cmd) {
	s := k.String()
	if m.editing {
		switch s {
		case "enter", "esc":
			m.editing = false
		case "backspace":
			if m.filter != "" {
				m.filter = m.filter[:len(m.filter)-1]
			}
		default:
			if len(k.Text) > 0 {
				m.filter += k.Text
			}
		}
		m.selected = 0
		return m, nil
	}
	switch s {
	case "q", "ctrl+c":
		return m, tea.Quit
	case "p":
		m.paused = !m.paused
	case "1", "2", "3", "4", "5", "6":
		m.sortBy = int(s[0] - '1')
	case "c":
		m.cumulative = !m.cumulative
		m.selected = 0
	case "/":
		m.editing, m.filter = true, ""
	case "t":
		if p := m.current(); p != nil {
			m.thread = (m.thread + 1) % (len(p.Threads) + 1)
		}
	case "tab", "]":
		if m.view != nil && len(m.view.Processes) > 0 {
			m.selectProc((m.proc + 1) % len(m.view.Processes))
		}
	case "shift+tab", "[":
		if m.view != nil && len(m.view.Processes) > 0 {
			m.selectProc((m.proc + len(m.view.Processes) - 1) % len(m.view.Processes))
		}
	case "down", "j":
		m.selected++
	case "up", "k":
		if m.selected > 0 {
			m.selected--
		}
	case "enter":
		m.expanded = !m.expanded
	case "s":
		if p := m.current(); p != nil && m.opts.SaveSnapshot != nil {
			return m, m.snapshot(p.Pid, p.Program)
		}
	}
	return m, nil
}

func (m Model) snapshot(pid uint32, program string) tea.Cmd {
	src, save := m.src, m.opts.SaveSnapshot
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		data, err := src.Snapshot(ctx, pid)
		if err == nil {
			var path string
			if path, err = save(pid, program, data); err == nil {
				return snapMsg{"snapshot written to " + path}
			}
		}
		return snapMsg{"snapshot failed: " + err.Error()}
	}
}

// clampProc keeps the view on the process it was showing (the list
// reorders as processes end).
func (m *Model) clampProc() {
	if m.view == nil || len(m.view.Processes) == 0 {
		m.proc = 0
		return
	}
	for i, p := range m.view.Processes {
		if m.procPid != 0 && p.Pid == m.procPid {
			m.proc = i
			return
		}
	}
	if m.proc >= len(m.view.Processes) {
		m.proc = len(m.view.Processes) - 1
	}
	m.procPid = m.view.Processes[m.proc].Pid
}

func (m *Model) selectProc(i int) {
	m.proc = i
	m.procPid = m.view.Processes[i].Pid
	m.thread, m.selected = 0, 0
}

func (m Model) current() *live.ProcView {
	if m.view == nil || m.proc >= len(m.view.Processes) {
		return nil
	}
	return &m.view.Processes[m.proc]
}

// row is one line of the table: a site (flat) or a function (cumulative).
type row struct {
	name       string // function file:line
	live, objs uint64
	allocB     uint64
	allocs     uint64
	temps      uint64
	stack      []string
}

func (m Model) rows(p *live.ProcView) []row {
	var tid uint32
	if m.thread > 0 && m.thread <= len(p.Threads) {
		tid = p.Threads[m.thread-1].Tid
	}
	byName := map[string]*row{}
	var out []*row
	add := func(name string, s *live.SiteView, stack []string) {
		r := byName[name]
		if r == nil || !m.cumulative {
			r = &row{name: name, stack: stack}
			if m.cumulative {
				byName[name] = r
			}
			out = append(out, r)
		}
		r.live += s.LiveBytes
		r.objs += s.LiveObjects
		r.allocB += s.AllocBytes
		r.allocs += s.Allocs
		r.temps += s.Temporaries
	}
	for i := range p.Sites {
		s := &p.Sites[i]
		if tid != 0 && s.Tid != tid {
			continue
		}
		var stack []string
		for _, f := range s.Stack {
			stack = append(stack, frameName(f.Function, f.File, f.Line))
		}
		if m.filter != "" && !strings.Contains(strings.Join(stack, "\n"), m.filter) {
			continue
		}
		if !m.cumulative {
			add(frameName(s.Function, s.File, s.Line), s, stack)
			continue
		}
		// Total: every function on the stack, once per site.
		seen := map[string]bool{}
		for _, f := range s.Stack {
			name := frameName(f.Function, f.File, 0)
			if !seen[name] {
				seen[name] = true
				add(name, s, nil)
			}
		}
	}
	key := func(r *row) uint64 {
		switch m.sortBy {
		case colObjects:
			return r.objs
		case colAllocBytes:
			return r.allocB
		case colAllocs:
			return r.allocs
		case colTemps:
			return r.temps
		}
		return r.live
	}
	sort.SliceStable(out, func(i, j int) bool {
		if m.sortBy == colName {
			return out[i].name < out[j].name
		}
		if a, b := key(out[i]), key(out[j]); a != b {
			return a > b
		}
		return out[i].name < out[j].name
	})
	rows := make([]row, len(out))
	for i, r := range out {
		rows[i] = *r
	}
	return rows
}

func frameName(fn, file string, line int) string {
	if fn == "" {
		fn = "??"
	}
	if file == "" {
		return fn
	}
	base := file
	if i := strings.LastIndexByte(file, '/'); i >= 0 {
		base = file[i+1:]
	}
	if line > 0 {
		return fmt.Sprintf("%s %s:%d", fn, base, line)
	}
	return fmt.Sprintf("%s %s", fn, base)
}

var (
	red    = lipgloss.NewStyle().Foreground(lipgloss.Color("9")).Bold(true)
	bold   = lipgloss.NewStyle().Bold(true)
	dim    = lipgloss.NewStyle().Faint(true)
	invert = lipgloss.NewStyle().Reverse(true)
)
