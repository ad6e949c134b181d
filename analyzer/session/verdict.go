package session

import (
	"encoding/binary"
	"fmt"

	"memscope/analyzer/engine"
	"memscope/analyzer/reach"
)

// The session's notes in its journal (journal.Writer.Note): what it did
// that replaying the records alone would not do again.
//
//   - A leak check's verdicts (noteVerdict), which the records do not
//     say and the process takes with it when it exits: kept before the
//     process is released, so that an analyzer resuming the ring gives
//     the process the same verdicts.
//   - The watermark the engine settled to after a poll (noteSettle):
//     frees wait for it (engine/deferred.go), so a replay settles at the
//     same points to apply the same events in the same order.
//
// Format (little-endian): kind u32 | pad u32 | then, for a verdict:
// checked u32 | reason len u32 | reason, padded to 8 | blocks u64 |
// sum of their addresses u64 | blocks * kind u8, in address order; for
// a settle: watermark u64. A verdict names no block: a replay applies it
// where the blocks live are those the check saw (checked by their
// number and sum), so a byte a block keeps the note short, and the
// process's wait at exit with it.
const (
	noteVerdict = 1
	noteSettle  = 2
)

func settleNote(watermark uint64) []byte {
	b := binary.LittleEndian.AppendUint64(nil, noteSettle)
	return binary.LittleEndian.AppendUint64(b, watermark)
}

// replayNote applies a note of the journal to eng (pid: the process a
// verdict is about) and says whether it was a verdict.
func replayNote(eng *engine.Engine, pid uint32, note []byte) (verdict bool, err error) {
	if len(note) < 8 {
		return false, fmt.Errorf("note of %d bytes", len(note))
	}
	switch kind := binary.LittleEndian.Uint32(note); kind {
	case noteVerdict:
		return true, replayVerdict(eng, pid, note[8:])
	case noteSettle:
		if len(note) < 16 {
			return false, fmt.Errorf("settle note of %d bytes", len(note))
		}
		eng.Settle(binary.LittleEndian.Uint64(note[8:]))
		return false, nil
	default:
		return false, fmt.Errorf("note of unknown kind %d", kind)
	}
}

// verdict is the outcome of a process's leak check.
type verdict struct {
	checked bool
	reason  string       // why the check did not run (checked false)
	addrSum uint64       // the sum of the addresses of the blocks checked
	kinds   []reach.Kind // of the blocks checked, in address order (engine.LiveBlocks)
}

func (v verdict) encode() []byte {
	le := binary.LittleEndian
	var checked uint32
	if v.checked {
		checked = 1
	}
	b := le.AppendUint64(nil, noteVerdict)
	b = le.AppendUint32(b, checked)
	b = le.AppendUint32(b, uint32(len(v.reason)))
	b = append(b, v.reason...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	b = le.AppendUint64(b, uint64(len(v.kinds)))
	b = le.AppendUint64(b, v.addrSum)
	for _, k := range v.kinds {
		b = append(b, byte(k))
	}
	return b
}

// decodeVerdictNote decodes a whole verdict note (kind included).
func decodeVerdictNote(note []byte) (verdict, error) {
	if len(note) < 8 || binary.LittleEndian.Uint32(note) != noteVerdict {
		return verdict{}, fmt.Errorf("not a verdict note (%d bytes)", len(note))
	}
	return decodeVerdict(note[8:])
}

// decodeVerdict decodes a verdict note's payload (after kind and pad).
func decodeVerdict(b []byte) (verdict, error) {
	le := binary.LittleEndian
	var v verdict
	if len(b) < 8 {
		return v, fmt.Errorf("verdict of %d bytes", len(b))
	}
	v.checked = le.Uint32(b) == 1
	n := uint64(le.Uint32(b[4:]))
	off := 8 + (n+7)&^7
	if off+8 > uint64(len(b)) {
		return v, fmt.Errorf("verdict: a reason of %d bytes in %d", n, len(b))
	}
	v.reason = string(b[8 : 8+n])
	if off+16 > uint64(len(b)) {
		return v, fmt.Errorf("verdict of %d bytes", len(b))
	}
	blocks := le.Uint64(b[off:])
	v.addrSum = le.Uint64(b[off+8:])
	off += 16
	if blocks > uint64(len(b))-off {
		return v, fmt.Errorf("verdict: %d blocks in %d bytes", blocks, len(b))
	}
	v.kinds = make([]reach.Kind, blocks)
	for i := range v.kinds {
		if k := reach.Kind(b[off]); k < reach.NumKinds {
			v.kinds[i] = k
		}
		off++
	}
	return v, nil
}

// setIn gives pid the verdict in eng; blocks are pid's live blocks as
// the check saw them (nil: as eng holds them now, for a replayed
// verdict, matched by address).
func (v verdict) setIn(eng *engine.Engine, pid uint32, blocks *engine.LiveBlocks) {
	if !v.checked {
		eng.SetNotChecked(pid, v.reason)
		return
	}
	if blocks != nil {
		eng.SetReachability(pid, *blocks, v.kinds)
		return
	}
	lb := eng.LiveBlocks(pid) // in address order, as the check saw them
	if len(lb.Extents) != len(v.kinds) || addrSum(lb) != v.addrSum {
		eng.SetNotChecked(pid, fmt.Sprintf("the verdicts of its leak check, kept by an analyzer that died, are for %d blocks, not the %d replayed", len(v.kinds), len(lb.Extents)))
		return
	}
	eng.SetReachability(pid, lb, v.kinds)
}

// addrSum is the sum of the addresses of blocks (a verdict's check).
func addrSum(blocks engine.LiveBlocks) uint64 {
	var s uint64
	for _, e := range blocks.Extents {
		s += e.Addr
	}
	return s
}

// replayVerdict applies a verdict note of the journal: as the check
// did, after applying every record of pid read before it; the exit
// check the process asked for is answered. (A verdict whose records
// come again from the ring waits for them: leakChecker.replayed.)
func replayVerdict(eng *engine.Engine, pid uint32, note []byte) error {
	v, err := decodeVerdict(note)
	if err != nil {
		return err
	}
	eng.FlushProcess(pid)
	eng.ExitChecked(pid)
	v.setIn(eng, pid, nil)
	return nil
}
