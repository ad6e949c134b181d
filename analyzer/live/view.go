package live

import (
	"sort"

	"memscope/analyzer/engine"
	"memscope/analyzer/reach"
	"memscope/analyzer/report"
)

// View is the state as a viewer gets it from the socket (JSON): per
// process, totals and the top sites, symbolized.
type View struct {
	Version       int        `json:"version"`
	AnalyzerPid   int        `json:"analyzer_pid"`
	Command       []string   `json:"command,omitempty"`
	Output        string     `json:"output,omitempty"`
	UptimeNS      int64      `json:"uptime_ns"`
	Ring          RingView   `json:"ring"`
	EventsApplied uint64     `json:"events_applied"`
	PublishNS     int64      `json:"publish_ns"`     // the consumer's time to publish this state
	MaxPublishNS  int64      `json:"max_publish_ns"` // the longest so far
	Processes     []ProcView `json:"processes"`
}

// RingView is the ring's fill and losses.
type RingView struct {
	Path          string `json:"path"`
	CapacityBytes uint64 `json:"capacity_bytes"`
	UsedBytes     uint64 `json:"used_bytes"` // chunks reserved and not yet consumed
	DroppedEvents uint64 `json:"dropped_events"`
}

// ProcView is one process of a View.
type ProcView struct {
	Pid            uint32       `json:"pid"`
	Ppid           uint32       `json:"ppid"`
	Program        string       `json:"program"`
	Running        bool         `json:"running"`
	ExitStatus     *int         `json:"exit_status"`
	HeapBytes      uint64       `json:"heap_bytes"`
	HeapObjects    uint64       `json:"heap_objects"`
	PeakBytes      uint64       `json:"peak_bytes"`
	PeakAtNS       uint64       `json:"peak_at_ns"` // since the process started
	Allocations    uint64       `json:"allocations"`
	Frees          uint64       `json:"frees"`
	BytesAllocated uint64       `json:"bytes_allocated"`
	Temporary      uint64       `json:"temporary_allocations"`
	DroppedEvents  uint64       `json:"dropped_events"`
	LateEvents     uint64       `json:"late_events"`
	LagNS          uint64       `json:"lag_ns"`
	AgeNS          uint64       `json:"age_ns"`   // since the process started
	Timeline       [][2]uint64  `json:"timeline"` // [ns since start, heap bytes], at most timelinePoints
	Threads        []ThreadView `json:"threads"`
	Sites          []SiteView   `json:"sites"` // by live bytes, at most MaxSites
	SiteCount      int          `json:"site_count"`
	// Once the process has ended: the leak check's verdicts (bytes and
	// objects by kind) and whether it ran.
	Reachability string                      `json:"reachability,omitempty"`
	ByKind       map[string]engine.KindCount `json:"by_kind,omitempty"`
}

// ThreadView names a thread.
type ThreadView struct {
	Tid  uint32 `json:"tid"`
	Name string `json:"name"`
}

// SiteView is one allocation site: a stack in a thread.
type SiteView struct {
	Function    string         `json:"function"`
	File        string         `json:"file"`
	Line        int            `json:"line"`
	Tid         uint32         `json:"tid"`
	LiveBytes   uint64         `json:"live_bytes"`
	LiveObjects uint64         `json:"live_objects"`
	AllocBytes  uint64         `json:"alloc_bytes"`
	Allocs      uint64         `json:"allocs"`
	Temporaries uint64         `json:"temporaries"`
	Stack       []report.Frame `json:"stack"`
}

// MaxSites bounds the sites of a process in a View.
const MaxSites = 200

// timelinePoints bounds a process's timeline in a View.
const timelinePoints = 120

// BuildView turns a published state into what viewers get. syms must not
// be used by another goroutine meanwhile (the server holds a lock).
func BuildView(s *State, syms *report.Symbols, analyzerPid int) View {
	v := View{Version: 1, AnalyzerPid: analyzerPid, Command: s.Command, Output: s.Output,
		UptimeNS: s.Time.Sub(s.Started).Nanoseconds(), EventsApplied: s.EventsApplied,
		PublishNS: s.PublishNS, MaxPublishNS: s.MaxPublishNS,
		Ring: RingView{Path: s.Ring.Path, CapacityBytes: uint64(s.Ring.ChunkCount) * uint64(s.Ring.ChunkSize),
			UsedBytes:     (s.Ring.ReserveHead - s.Ring.LastReadTo) * uint64(s.Ring.ChunkSize),
			DroppedEvents: s.Ring.DroppedEvents}}
	for i := range s.Procs {
		v.Processes = append(v.Processes, procView(s, &s.Procs[i], syms))
	}
	if v.Processes == nil {
		v.Processes = []ProcView{}
	}
	return v
}

func procView(s *State, p *Proc, syms *report.Symbols) ProcView {
	t := p.Totals
	pv := ProcView{Pid: p.Pid, Ppid: p.Ppid, Program: p.Exe, Running: p.Running,
		HeapBytes: t.LiveBytes, HeapObjects: t.LiveObjects, PeakBytes: t.PeakBytes,
		Allocations: t.Allocations, Frees: t.Frees, BytesAllocated: t.BytesAllocated,
		Temporary: t.TemporaryAllocations, DroppedEvents: t.DroppedEvents, LateEvents: t.LateEvents,
		SiteCount: len(p.Sites)}
	if pv.Program == "" {
		pv.Program = p.Argv0
	}
	if code, ok := p.Exit.ShellCode(); ok && !p.Running {
		pv.ExitStatus = &code
	}
	if !p.Running {
		pv.Reachability = "checked"
		if !p.Reach.Checked {
			pv.Reachability = "not checked: " + p.Reach.Why()
		}
		pv.ByKind = map[string]engine.KindCount{}
		for _, st := range p.Sites {
			for k, c := range st.ByKind {
				n := pv.ByKind[reach.Kind(k).String()]
				n.Objects += c.Objects
				n.Bytes += c.Bytes
				pv.ByKind[reach.Kind(k).String()] = n
			}
		}
	}
	if t.PeakTS > p.StartTS {
		pv.PeakAtNS = t.PeakTS - p.StartTS
	}
	if p.Running && s.NowNS > p.SeenNS && p.SeenNS != 0 {
		pv.LagNS = s.NowNS - p.SeenNS
	}
	end := p.EndTS
	if p.Running {
		end = s.NowNS
	}
	if end > p.StartTS {
		pv.AgeNS = end - p.StartTS
	}
	step := len(p.Timeline)/timelinePoints + 1
	for i := 0; i < len(p.Timeline); i += step {
		smp := p.Timeline[i]
		var at uint64
		if smp.TS > p.StartTS {
			at = smp.TS - p.StartTS
		}
		pv.Timeline = append(pv.Timeline, [2]uint64{at, smp.HeapBytes})
	}
	for tid, name := range p.Threads {
		pv.Threads = append(pv.Threads, ThreadView{tid, name})
	}
	sort.Slice(pv.Threads, func(i, j int) bool { return pv.Threads[i].Tid < pv.Threads[j].Tid })
	sites := make([]*engine.Site, 0, len(p.Sites))
	for i := range p.Sites {
		sites = append(sites, &p.Sites[i])
	}
	sort.Slice(sites, func(i, j int) bool {
		a, b := sites[i], sites[j]
		if a.LiveBytes != b.LiveBytes {
			return a.LiveBytes > b.LiveBytes
		}
		if a.AllocBytes != b.AllocBytes {
			return a.AllocBytes > b.AllocBytes
		}
		return a.StackID < b.StackID
	})
	if len(sites) > MaxSites {
		sites = sites[:MaxSites]
	}
	pv.Sites = []SiteView{}
	for _, st := range sites {
		frames := syms.Frames(p.Process, st.StackID, st.FirstTS)
		sv := SiteView{Tid: st.Tid, LiveBytes: st.LiveBytes, LiveObjects: st.LiveObjects,
			AllocBytes: st.AllocBytes, Allocs: st.Allocs, Temporaries: st.Temporaries, Stack: frames}
		if len(frames) > 0 {
			sv.Function, sv.File, sv.Line = frames[0].Function, frames[0].File, frames[0].Line
		}
		pv.Sites = append(pv.Sites, sv)
	}
	return pv
}
