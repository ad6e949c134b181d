package session

import (
	"fmt"
	"io"
	"path/filepath"
	"time"

	"memscope/analyzer/engine"
	"memscope/analyzer/live"
	"memscope/analyzer/report"
	"memscope/shm"
)

// publisher puts copies of the engine's state on the session's Board for
// live readers (socket, metrics), and writes the periodic snapshots of
// --snapshot-every. It runs on the session's goroutine, between polls:
// a copy costs the consumer the time to copy each process's sites, and
// readers never make it wait.
type publisher struct {
	cfg     Config
	clock   *shm.Clock      // the records' (NowNS)
	syms    *report.Symbols // the session loop's, shared with the leak checker (same goroutine)
	board   *live.Board
	started time.Time
	last    time.Time
	ended   []live.Proc // final states, newest last, at most keptEnded
	endedEv uint64      // events of the ended processes

	snapEvery time.Duration
	lastSnap  time.Time
	snapNo    map[uint32]int

	maxPublish time.Duration
	// dirty: a process ended since the last publication (tick's force),
	// which waits for a reader or flush.
	dirty bool
}

// publishInterval is how often readers see a new state; unreadInterval
// how often while nobody loads them (a copy of every process's sites:
// 1.6-3% of the analyzer's CPU in a build or python at 5 Hz). A reader
// that comes sees a state at most unreadInterval old, then fresh ones.
const (
	publishInterval = 200 * time.Millisecond
	unreadInterval  = 2 * time.Second
)

// keptEnded bounds the ended processes a state keeps for viewers.
const keptEnded = 64

func newPublisher(cfg Config, board *live.Board, syms *report.Symbols) *publisher {
	now := time.Now()
	return &publisher{cfg: cfg, clock: cfg.Ring.Clock(), syms: syms, board: board, started: now, snapEvery: cfg.SnapshotEvery, lastSnap: now, snapNo: map[uint32]int{}}
}

// ended keeps the final state of a process that ended.
func (pb *publisher) processEnded(p *engine.Process) {
	pb.endedEv += p.Totals.Allocations + p.Totals.Frees
	if pb.board == nil {
		return // nobody views them
	}
	pb.ended = append(pb.ended, live.Proc{Process: p, SeenNS: p.EndTS})
	if len(pb.ended) > keptEnded {
		pb.ended = pb.ended[len(pb.ended)-keptEnded:]
	}
}

// tick publishes a new state if it is time (force: a process ended; now
// if someone reads the states, else with the next one or at flush), and
// writes the periodic snapshots that are due.
func (pb *publisher) tick(eng *engine.Engine, ringInfo func() shm.Info, force bool) {
	now := time.Now()
	snap := pb.snapEvery > 0 && now.Sub(pb.lastSnap) >= pb.snapEvery
	if pb.board == nil && !snap {
		return
	}
	if force {
		pb.dirty = true
	}
	if !snap {
		every := publishInterval
		switch {
		case pb.board != nil && !pb.board.Read():
			every = unreadInterval // dirty too: nobody looks (flush)
		case pb.dirty:
			every = 0
		}
		if now.Sub(pb.last) < every {
			return
		}
	}
	pb.last, pb.dirty = now, false
	st := &live.State{Time: now, Started: pb.started, NowNS: pb.clock.Now(), Ring: ringInfo(),
		Command: pb.cfg.Command, Output: pb.cfg.Output, EventsApplied: pb.endedEv}
	for _, pid := range eng.Pids() {
		p := eng.Snapshot(pid)
		if p == nil {
			continue
		}
		st.EventsApplied += p.Totals.Allocations + p.Totals.Frees
		st.Procs = append(st.Procs, live.Proc{Process: p, Running: true, SeenNS: p.EndTS})
	}
	st.Procs = append(st.Procs, pb.ended...)
	took := time.Since(now)
	pb.maxPublish = max(pb.maxPublish, took)
	st.PublishNS, st.MaxPublishNS = took.Nanoseconds(), pb.maxPublish.Nanoseconds()
	if pb.board != nil {
		pb.board.Publish(st)
	}
	if snap {
		pb.lastSnap = now
		pb.writeSnapshots(st)
	}
}

// flush publishes what tick left unpublished, at the session's end: the
// last states (every process ended) stay for the viewers still reading.
func (pb *publisher) flush(eng *engine.Engine, ringInfo func() shm.Info) {
	if pb.dirty {
		pb.last = time.Time{}
		pb.tick(eng, ringInfo, false)
	}
}

// writeSnapshots writes memscope.PROG.PID.NNNN.pb.gz for every running
// process: inuse = live now, numbered per process, so any two make a
// `go tool pprof -diff_base`.
func (pb *publisher) writeSnapshots(st *live.State) {
	for _, p := range st.Procs {
		if !p.Running {
			continue
		}
		pb.snapNo[p.Pid]++
		name := fmt.Sprintf("%s.%04d.pb.gz", report.FileBase(p.Process), pb.snapNo[p.Pid])
		opts := report.ProfileOptions{TimeNanos: st.Time.UnixNano()}
		if err := report.WriteFileAtomic(pb.cfg.OutDir, name, func(w io.Writer) error {
			return report.WriteProfile(w, p.Process, pb.syms, report.InuseAtExit, opts)
		}); err != nil {
			fmt.Fprintf(pb.cfg.Stderr, "memscope: cannot write %s: %v\n", filepath.Join(pb.cfg.OutDir, name), err)
		}
	}
}
