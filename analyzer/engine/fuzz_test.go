package engine

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"memscope/shm"
)

// FuzzApply feeds arbitrary record sequences (valid headers, arbitrary
// payloads, pids and tids from the input) and ends every process: the
// engine must return errors, never panic, and keep its invariants.
func FuzzApply(f *testing.F) {
	var seed []byte
	seed = shm.AppendProcess(seed, 5, shm.Process{Pid: 1, Event: shm.ProcessStart, Exe: "/x"})
	seed = shm.AppendAlloc(seed, 10, shm.Alloc{Ptr: 0x10, Size: 4, StackID: 1})
	seed = shm.AppendRealloc(seed, 12, shm.Realloc{OldPtr: 0x10, NewPtr: 0x20, Size: 8, StackID: 1, TSBefore: 11})
	seed = shm.AppendFree(seed, 9, shm.Free{Ptr: 0x20})
	seed = shm.AppendProcess(seed, 13, shm.Process{Pid: 1, Event: shm.ProcessForked, Status: 1})
	seed = shm.AppendProcess(seed, 13, shm.Process{Pid: 2, Ppid: 1, Event: shm.ProcessFork, Status: 1})
	seed = shm.AppendFree(seed, 14, shm.Free{Ptr: 0x20})
	seed = shm.AppendProcess(seed, 15, shm.Process{Pid: 2, Event: shm.ProcessExec})
	seed = shm.AppendStack(seed, 1, 0, shm.Stack{ID: 1, PCs: []uint64{1, 2}})
	seed = shm.AppendLost(seed, 16, shm.Lost{Count: 3})
	f.Add(seed, byte(3))
	f.Add(seed, byte(7))                                            // as one chunk
	f.Add(seed, byte(3|8))                                          // batches of one event
	f.Add(append(seed[:len(seed):len(seed)], 1, 0, 24, 0), byte(4)) // then an ALLOC of 24 bytes
	f.Fuzz(func(t *testing.T, data []byte, sel byte) {
		e := New(Options{ReorderWindow: time.Duration(sel%4) * 5})
		e.batchLimit = []int{0, 1, 2, 5}[sel>>3%4] // full batches too
		if sel&4 != 0 {
			// The bytes as one chunk, through ApplyChunk's own decode
			// loop: it must stop exactly where shm's framing says.
			applyAsChunks(t, e, data)
			data = nil
		}
		for i := 0; len(data) >= shm.RecordHeaderSize; i++ {
			rec, err := shm.ParseRecordHeader(data)
			if err != nil {
				return
			}
			data = data[len(rec.Data):]
			// pid and tid from the record's bytes: a few processes and threads.
			v := binary.LittleEndian.Uint32(rec.Data[len(rec.Data)-4:])
			rec.Pid, rec.Tid = 1+v%3, 1+(v>>8)%4
			_ = e.Apply(rec)
			if i%7 == 6 {
				e.Advance(rec.TS)
			}
		}
		for _, pid := range e.Pids() {
			p := e.EndProcess(pid, ExitStatus{})
			if p.Totals.Allocations-p.Totals.Frees != p.Totals.LiveObjects {
				t.Fatalf("pid %d: %d allocations - %d frees != %d live", pid, p.Totals.Allocations, p.Totals.Frees, p.Totals.LiveObjects)
			}
			var live, bytes uint64
			for _, s := range p.Sites {
				live += s.LiveObjects
				bytes += s.LiveBytes
			}
			if live != p.Totals.LiveObjects || bytes != p.Totals.LiveBytes {
				t.Fatalf("pid %d: sites hold %d objects/%d bytes, totals %d/%d", pid, live, bytes, p.Totals.LiveObjects, p.Totals.LiveBytes)
			}
		}
		if e.Pending() != 0 {
			t.Fatalf("%d events pending after every process ended", e.Pending())
		}
	})
}

// applyAsChunks applies data as chunks of pid 1 tid 1 with ApplyChunk,
// resuming after each record it refuses, and checks that it takes whole
// records and stops only where shm's ParseRecordHeader finds a malformed
// record (a *shm.RecordError) or at a well-formed record it refuses.
func applyAsChunks(t *testing.T, e *Engine, data []byte) {
	for len(data) > 0 {
		took, records, err := e.ApplyChunk(1, 1, data)
		n := 0
		for off := 0; off < took; n++ {
			rec, perr := shm.ParseRecordHeader(data[off:took])
			if perr != nil {
				t.Fatalf("took %d bytes, but the record at %d does not parse: %v", took, off, perr)
			}
			off += len(rec.Data)
		}
		if n != records {
			t.Fatalf("took %d records, %d bytes that hold %d", records, took, n)
		}
		if err == nil {
			if took != len(data) {
				t.Fatalf("took %d of %d bytes without an error", took, len(data))
			}
			return
		}
		rec, perr := shm.ParseRecordHeader(data[took:])
		var bad *shm.RecordError
		if errors.As(err, &bad) != (perr != nil) {
			t.Fatalf("stopped at %d with %v; shm's framing there says %v", took, err, perr)
		}
		if perr != nil {
			return
		}
		data = data[took+len(rec.Data):] // refused: go on after it
	}
}
