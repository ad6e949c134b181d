package session

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"

	"memscope/analyzer/engine"
	"memscope/analyzer/journal"
	"memscope/shm"
)

// defaultJournalLimit bounds a session's journal (Config.JournalLimit 0),
// in the ring's directory (memory, like the ring): a checkpoint and the
// records after it (checkpoint.go).
const defaultJournalLimit = 512 << 20

// journalLimit is Config.JournalLimit with its default: the journal's
// largest size, negative for no journal.
func (c Config) journalLimit() int64 {
	if c.JournalLimit == 0 {
		return defaultJournalLimit
	}
	return c.JournalLimit
}

// startJournal starts the session's journal (analyzer/journal) and, if
// the ring was consumed by an analyzer that is gone, replays that one's
// journal into eng (its checkpoint, then its records), so that the
// reports are the ones it would have written; the new journal starts
// with a checkpoint of what was replayed. It returns the journal (nil
// when off or it could not be made), the root process the journal names
// (0: none), what the checkpoint said of the processes reported already
// (nil: no checkpoint), and, when what the dead analyzer consumed cannot
// be replayed, why (the reports then say they are incomplete). The
// checkpoint's verdicts and the journal's verdicts after a checkpoint
// that left the records in the ring are in st.Verdicts: the ring
// delivers those processes' records again, and the leak checker gives
// them their verdicts then. cp takes the journal, and writes its
// checkpoints from then on.
func startJournal(cfg Config, ring *shm.Ring, rd *shm.Reader, eng *engine.Engine, cp *checkpointer) (w *journal.Writer, root uint32, st *sessionState, missing string) {
	path := journal.Path(ring.Path())
	created := ring.Info().CreatedNS
	defer func() { cp.jw = w }()
	if limit := cfg.journalLimit(); limit >= 0 {
		warned := false
		onDrop := func(reason string) {
			if !warned {
				warned = true
				fmt.Fprintf(cfg.Stderr, "memscope: warning: journal of ring %s dropped: %s; if this analyzer dies, the reports of one that resumes the ring will be incomplete\n", ring.Path(), reason)
			}
		}
		var err error
		h := journal.Header{RingCreatedNS: created, Root: cfg.Root}
		if ring.Clock().TSC() {
			h.StampBase, h.StampMul = ring.Clock().Conv().Line()
		}
		w, err = journal.Create(path, h, limit, onDrop)
		if err != nil {
			onDrop(err.Error())
		}
	}
	if rd.Resumed() {
		apply := func(pid, tid uint32, data []byte) error {
			took, _, err := eng.ApplyChunk(pid, tid, data)
			if err == nil && took != len(data) {
				err = fmt.Errorf("the engine took %d of %d bytes", took, len(data))
			}
			return err
		}
		var inRing bool // the records after the checkpoint are in the ring
		restore := func(b []byte, chunks []journal.ChunkOffset, ring bool) error {
			s, err := decodeCheckpoint(b, eng)
			if err != nil {
				return err
			}
			st, inRing = &s, ring
			// What the checkpoint covers and the ring still holds.
			skip := make(map[uint64]uint32, len(chunks))
			for _, c := range chunks {
				skip[c.Seq] = c.Off
			}
			rd.SkipTo(skip)
			return nil
		}
		checks := 0
		note := func(pid uint32, b []byte) error {
			if inRing {
				// For when the ring delivers pid's exit again.
				if len(b) >= 8 && binary.LittleEndian.Uint32(b) == noteVerdict {
					if st.Verdicts == nil {
						st.Verdicts = map[uint32][]byte{}
					}
					st.Verdicts[pid] = b
					checks++
				}
				return nil
			}
			verdict, err := replayNote(eng, pid, b)
			if verdict {
				checks++
			}
			return err
		}
		h, stats, err := journal.Replay(path, created, rd.Committed, restore, apply, note)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing = fmt.Sprintf("this analyzer took over ring %s from an earlier analyzer that is gone and left no journal (MEMSCOPE_JOURNAL=off, or it was dropped): the events it had read are missing", ring.Path())
		case err != nil:
			missing = fmt.Sprintf("this analyzer took over ring %s from an earlier analyzer that is gone, and could not replay its journal (%v): the events it had read are missing", ring.Path(), err)
		default:
			root = h.Root
			what := ""
			if stats.Checkpoint > 0 {
				what = fmt.Sprintf("restored a checkpoint (%d KiB) and ", stats.Checkpoint>>10)
			}
			fmt.Fprintf(cfg.Stderr, "memscope: resumed ring %s: %sreplayed %d KiB of records the earlier analyzer had read (%d frames, %d leak checks)\n",
				ring.Path(), what, stats.Bytes>>10, stats.Frames, checks)
			if w != nil {
				// The new journal starts where the old one ended.
				cp.jw = w
				var s sessionState
				if st != nil {
					s = *st
				}
				if !cp.write(rd, eng, s) {
					// This session's reports are whole; a later resume from
					// a journal without what was replayed would not be.
					w.Remove()
					w = nil
				}
			}
		}
		if missing != "" && w != nil {
			// A journal with a hole must not pass for complete.
			w.Remove()
			w = nil
		}
	}
	if w != nil {
		if err := w.Publish(); err != nil {
			fmt.Fprintf(cfg.Stderr, "memscope: warning: journal of ring %s: %v\n", ring.Path(), err)
		}
		if w.Dropped() != "" {
			w = nil
		} else {
			rd.SetJournal(w)
		}
	}
	return w, root, st, missing
}
