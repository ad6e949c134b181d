package session

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

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
	// Verdicts are leak checks replayed from a journal whose records
	// are still to be read again from the ring (notes, by pid).
	Verdicts map[uint32][]byte `json:"verdicts,omitempty"`
	// Warnings are the modules whose frames the reports written so far
	// have degraded, said at the session's end.
	Warnings []report.SavedWarning `json:"warnings,omitempty"`
}

// When to checkpoint. A checkpoint costs writing the state (28 bytes a
// live block, 9-45 ns each: BenchmarkCheckpoint).
//
//   - A state up to half of ringEvery (ringStateMax at least) is
//     checkpointed every ringEvery bytes of records read (a quarter of
//     the ring), leaving the records in the ring until then
//     (journal.Writer.Checkpoint's ring): the journal copies no record,
//     only the state and the notes, at most half a byte of state per
//     byte of records. (With a 2 MiB bound a build's state, 0.3-2.4 MB
//     with its processes' index entries, crossed it now and then, and the
//     journal went back to copying every record: 55-58 MB a build.)
//   - A larger one would cost more than the records it stands for: the
//     journal keeps the records (frames), and is checkpointed every
//     defaultCheckpointEvery bytes of them, or checkpointRatio times the
//     state if more, within the journal's limit.
//   - The first checkpoint comes after firstCheckpoint bytes of records
//     (or the interval, if smaller): the journal copies those before it.
//
// Config.CheckpointEvery, when set, is both intervals.
const (
	defaultCheckpointEvery = 64 << 20
	checkpointRatio        = 8
	ringStateMax           = 2 << 20
	// idleCheckpoint: with nothing more to read, the records read are
	// checkpointed and committed after this long (an idle ring is one
	// whose records are all committed: record mode ends on it), or after
	// the time idleStateRate takes to write the last state if longer
	// (up to idleCheckpointMax): a build that went idle between its
	// processes every few milliseconds wrote its 1 MB state 130 times.
	idleCheckpoint    = 10 * time.Millisecond
	idleCheckpointMax = 250 * time.Millisecond
	idleStateRate     = 4 << 20 // bytes per second
	// firstCheckpoint: the records read before the first checkpoint
	// (which the journal copies), at most.
	firstCheckpoint = 1 << 20
)

// checkpointer writes the session's checkpoints into its journal.
type checkpointer struct {
	cfg       Config
	jw        *journal.Writer
	every     int64 // bytes of records between checkpoints (frames)
	ringEvery int64 // bytes of records between checkpoints (records in the ring)
	fixed     bool  // every is the user's (Config.CheckpointEvery): not scaled with the state
	lastState int64 // size of the last checkpoint's state
	written   bool  // a checkpoint has been written
	limit     int64 // the journal's (Config.JournalLimit)
	lastAt    time.Time
	warned    bool
	chunks    []journal.ChunkOffset // write's, kept between checkpoints
}

// newCheckpointer makes the session's checkpointer; startJournal gives
// it the journal.
func newCheckpointer(cfg Config) *checkpointer {
	c := &checkpointer{cfg: cfg, every: cfg.CheckpointEvery, ringEvery: cfg.CheckpointEvery,
		fixed: cfg.CheckpointEvery > 0, limit: cfg.journalLimit(), lastAt: time.Now()}
	if c.every <= 0 {
		c.every = defaultCheckpointEvery
		c.ringEvery = int64(cfg.Ring.Info().ChunkCount) * int64(cfg.Ring.Info().ChunkSize) / 4
	}
	return c
}

// ringMode reports whether the records read since the last checkpoint
// are left in the ring: they are committed only with the next.
func (c *checkpointer) ringMode() bool { return c.jw != nil && c.jw.RingMode() }

// due reports whether a checkpoint is due: idle tells that the last poll
// found nothing to read.
func (c *checkpointer) due(rd *shm.Reader, idle bool) bool {
	if c.jw == nil || c.jw.Dropped() != "" {
		return false
	}
	if c.ringMode() {
		u := rd.Uncommitted()
		return u >= c.ringEvery || (u > 0 && idle && time.Since(c.lastAt) >= c.idleAfter())
	}
	if !c.written {
		// Until the first checkpoint the journal copies every record read:
		// it comes early, while the state is small (a ring-sized interval
		// copied the first 16 MiB of every session that read that many).
		return c.jw.SinceCheckpoint() >= min(c.ringEvery, firstCheckpoint)
	}
	if c.lastState <= c.ringStateMax() {
		// One that goes to the ring, if the state stays small.
		return c.jw.SinceCheckpoint() >= c.ringEvery
	}
	every := c.every
	if !c.fixed {
		// Within the journal's limit (state, records, and the next
		// state) if it can be: a state too large for it stops the
		// journal at the limit, which a resume then says.
		every = max(every, min(checkpointRatio*c.lastState, c.limit/2-c.lastState))
	}
	return c.jw.SinceCheckpoint() >= every
}

// ringStateMax is the largest state whose checkpoint leaves the records
// after it in the ring.
func (c *checkpointer) ringStateMax() int64 { return max(ringStateMax, c.ringEvery/2) }

// idleAfter is how long after the last checkpoint an idle ring's records
// are checkpointed and committed.
func (c *checkpointer) idleAfter() time.Duration {
	d := time.Duration(c.lastState * int64(time.Second) / idleStateRate)
	return min(max(d, idleCheckpoint), idleCheckpointMax)
}

// write replaces the journal's records by a checkpoint of eng and st,
// covering every record read, streamed to the journal's file, and
// reports whether it did (it says why not, once); the caller commits
// them then. Call it with the report writer idle (st is the session as
// its reports left it). A small state leaves the next records in the
// ring (ringStateMax).
func (c *checkpointer) write(rd *shm.Reader, eng *engine.Engine, st sessionState) bool {
	c.chunks = c.chunks[:0]
	err := rd.ReadChunks(func(seq uint64, off uint32) {
		c.chunks = append(c.chunks, journal.ChunkOffset{Seq: seq, Off: off})
	})
	var size int64
	if err == nil {
		size, err = c.jw.Checkpoint(func(w io.Writer) error { return writeCheckpoint(w, st, eng) }, c.chunks, c.ringStateMax())
	}
	if err != nil {
		if !c.warned {
			c.warned = true
			fmt.Fprintf(c.cfg.Stderr, "memscope: warning: journal of ring %s: checkpoint: %v\n", c.cfg.Ring.Path(), err)
		}
		return false
	}
	c.lastState, c.lastAt, c.written = size, time.Now(), true
	return true
}

// writeCheckpoint writes the checkpoint of st and eng to w.
func writeCheckpoint(w io.Writer, st sessionState, eng *engine.Engine) error {
	js, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("session state: %w", err)
	}
	if _, err := w.Write(append(binary.LittleEndian.AppendUint64(nil, uint64(len(js))), js...)); err != nil {
		return err
	}
	return eng.WriteState(w)
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
	out.syms.RestoreWarnings(st.Warnings)
}

// sessionStateOf is the session's part of a checkpoint: out and results
// as the report writer left them (it is idle), reportedEarly as the loop
// knows it.
func sessionStateOf(out *outputs, results []ProcessResult, reportedEarly map[uint32]bool, verdicts map[uint32][]byte) sessionState {
	st := sessionState{Root: out.root, Index: out.index, Bases: out.bases, Quiet: out.quiet, Loud: out.loud,
		QuietPeaks: out.quietPeaks, Reported: out.reported, Results: results, Verdicts: verdicts}
	for _, w := range out.syms.Warnings {
		st.Warnings = append(st.Warnings, w.Saved())
	}
	for pid := range reportedEarly {
		st.ReportedEarly = append(st.ReportedEarly, pid)
	}
	return st
}
