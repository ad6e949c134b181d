package session

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"memscope/analyzer/engine"
	"memscope/analyzer/journal"
	"memscope/analyzer/report"
	"memscope/shm"
)

// A journal checkpoint (analyzer/journal) stands for every record the
// session read before it: the engine's state (engine.AppendState), and
// the session's own, the processes it has reported already (their
// entries in the index, their results, the summary's counts), which the
// engine forgot when they ended. A resuming session restores both and
// so reports neither too much nor too little.
//
// Format: a u64 length, the session's state in JSON (plain data, small),
// then the engine's state.

// sessionState is what a checkpoint keeps of the session.
type sessionState struct {
	Root          uint32               `json:"root"`
	Index         []IndexEntry         `json:"index"`
	Bases         map[uint32]string    `json:"bases"`
	Quiet         int                  `json:"quiet"`
	Loud          int                  `json:"loud"`
	QuietPeaks    []report.ProcessPeak `json:"quiet_peaks"`
	Reported      uint64               `json:"reported"`
	Results       []ProcessResult      `json:"results"`
	ReportedEarly []uint32             `json:"reported_early"`
}

// defaultCheckpointEvery is how many bytes of records the journal takes
// between checkpoints (Config.CheckpointEvery 0). A checkpoint costs
// writing the state (28 bytes and 45 ns a live block, BenchmarkCheckpoint),
// so the interval grows with it (checkpointRatio), which keeps their cost
// to a fraction of the records', but stays within the journal's limit.
const (
	defaultCheckpointEvery = 64 << 20
	checkpointRatio        = 8
)

// checkpointer writes the session's checkpoints into its journal.
type checkpointer struct {
	cfg       Config
	jw        *journal.Writer
	every     int64 // bytes of records between checkpoints
	fixed     bool  // every is the user's (Config.CheckpointEvery): not scaled with the state
	lastState int64 // size of the last checkpoint's state
	limit     int64 // the journal's (Config.JournalLimit)
	warned    bool
}

func newCheckpointer(cfg Config, jw *journal.Writer) *checkpointer {
	every := cfg.CheckpointEvery
	if every <= 0 {
		every = defaultCheckpointEvery
	}
	limit := cfg.JournalLimit
	if limit <= 0 {
		limit = defaultJournalLimit
	}
	return &checkpointer{cfg: cfg, jw: jw, every: every, fixed: cfg.CheckpointEvery > 0, limit: limit}
}

// due reports whether the journal took enough since its last checkpoint.
func (c *checkpointer) due() bool {
	every := c.every
	if !c.fixed {
		// Within the journal's limit (state, records, and the next
		// state) if it can be: a state too large for it stops the
		// journal at the limit, which a resume then says.
		every = max(every, min(checkpointRatio*c.lastState, c.limit/2-c.lastState))
	}
	return c.jw != nil && c.jw.Dropped() == "" && c.jw.SinceCheckpoint() >= every
}

// write replaces the journal's records by a checkpoint of eng and st,
// and reports whether it did (it says why not, once). Call it right
// after a Commit, with the report writer idle (st is the session as its
// reports left it).
func (c *checkpointer) write(rd *shm.Reader, eng *engine.Engine, st sessionState) bool {
	b, err := encodeCheckpoint(st, eng)
	var chunks []journal.ChunkOffset
	if err == nil {
		err = rd.ReadChunks(func(seq uint64, off uint32) {
			chunks = append(chunks, journal.ChunkOffset{Seq: seq, Off: off})
		})
	}
	if err == nil {
		err = c.jw.Checkpoint(b, chunks)
	}
	if err != nil {
		if !c.warned {
			c.warned = true
			fmt.Fprintf(c.cfg.Stderr, "memscope: warning: journal of ring %s: checkpoint: %v\n", c.cfg.Ring.Path(), err)
		}
		return false
	}
	c.lastState = int64(len(b))
	return true
}

func encodeCheckpoint(st sessionState, eng *engine.Engine) ([]byte, error) {
	js, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("session state: %w", err)
	}
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(js)))
	b = append(b, js...)
	return eng.AppendState(b), nil
}

// decodeCheckpoint restores a checkpoint into eng, which has applied
// nothing yet, and returns the session's part.
func decodeCheckpoint(b []byte, eng *engine.Engine) (sessionState, error) {
	var st sessionState
	if len(b) < 8 {
		return st, errors.New("session state: truncated")
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) {
		return st, fmt.Errorf("session state: %d bytes claimed, %d left", n, len(b)-8)
	}
	if err := json.Unmarshal(b[8:8+n], &st); err != nil {
		return st, fmt.Errorf("session state: %w", err)
	}
	return st, eng.RestoreState(b[8+n:])
}

// restore puts what st says of the processes reported already into out
// (not yet the report writer's).
func (st *sessionState) restore(out *outputs) {
	if out.root == 0 {
		out.root = st.Root
	}
	out.index = append(out.index, st.Index...)
	for pid, base := range st.Bases {
		out.bases[pid] = base
	}
	out.quiet += st.Quiet
	out.loud += st.Loud
	out.quietPeaks = append(out.quietPeaks, st.QuietPeaks...)
	out.reported += st.Reported
}

// sessionStateOf is the session's part of a checkpoint: out and results
// as the report writer left them (it is idle), reportedEarly as the loop
// knows it.
func sessionStateOf(out *outputs, results []ProcessResult, reportedEarly map[uint32]bool) sessionState {
	st := sessionState{Root: out.root, Index: out.index, Bases: out.bases, Quiet: out.quiet, Loud: out.loud,
		QuietPeaks: out.quietPeaks, Reported: out.reported, Results: results}
	for pid := range reportedEarly {
		st.ReportedEarly = append(st.ReportedEarly, pid)
	}
	return st
}
