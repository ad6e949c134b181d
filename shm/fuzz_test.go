package shm

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// seedChunk is a chunk of real records of every type, as the encoders
// (and the C writer, see TestRecordsRoundTripThroughC) lay them out.
func seedChunk() []byte {
	var b []byte
	b = AppendProcess(b, 1, Process{Pid: 100, Ppid: 1, Event: ProcessStart, Exe: "/usr/bin/app", Arg0: "app"})
	b = AppendModule(b, 2, Module{Bias: 0x555500000000, Event: ModuleLoad, BuildID: []byte{1, 2, 3, 4},
		Segments: []Segment{{Vaddr: 0, Memsz: 0x1000, Offset: 0, Flags: 5}}, Path: "/usr/bin/app"})
	b = AppendThread(b, 3, Thread{Tid: 101, Name: "worker"})
	b = AppendStack(b, 4, 0, Stack{ID: 0xabc, PCs: []uint64{0x401000, 0x401100, 0x401200}})
	b = AppendAlloc(b, 5, Alloc{Ptr: 0x1000, Size: 64, StackID: 0xabc, Kind: KindMalloc})
	b = AppendRealloc(b, 6, Realloc{OldPtr: 0x1000, NewPtr: 0x2000, Size: 128, StackID: 0xabc, TSBefore: 5, Kind: KindRealloc})
	b = AppendFree(b, 7, Free{Ptr: 0x2000})
	b = AppendLost(b, 8, Lost{Count: 3})
	return b
}

// recheck is a straightforward, independent reading of the record rules:
// the records a chunk holds up to its first malformed record, and the
// offset and reason of that record.
func recheck(data []byte) (recs [][3]int, badOff int, reason string) {
	fixed := map[uint16]int{1: 48, 2: 24, 3: 64, 4: 32, 5: 96, 6: 48, 7: 40, 8: 24}
	off := 0
	for off < len(data) {
		if len(data)-off < 16 {
			return recs, off, "record header needs"
		}
		typ := uint16(data[off]) | uint16(data[off+1])<<8
		n := int(data[off+2]) | int(data[off+3])<<8
		switch {
		case n == 0:
			return recs, off, "has length 0"
		case n < 16 || n%8 != 0:
			return recs, off, "not a multiple of 8"
		case n > len(data)-off:
			return recs, off, "runs past the chunk"
		case fixed[typ] == 0:
			return recs, off, "unknown record type"
		case n < fixed[typ]:
			return recs, off, "shorter than its fixed part"
		}
		recs = append(recs, [3]int{off, int(typ), n})
		off += n
	}
	return recs, -1, ""
}

// decodeTyped runs the typed decoder of rec, which must not panic.
func decodeTyped(rec Record) error {
	var err error
	switch rec.Type {
	case RecAlloc:
		_, err = rec.Alloc()
	case RecFree:
		_, err = rec.Free()
	case RecRealloc:
		_, err = rec.Realloc()
	case RecStack:
		_, err = rec.Stack()
	case RecModule:
		_, err = rec.Module()
	case RecThread:
		_, err = rec.Thread()
	case RecProcess:
		_, err = rec.Process()
	case RecLost:
		_, err = rec.Lost()
	default:
		return fmt.Errorf("delivered a record of unknown type %d", rec.Type)
	}
	var de *DecodeError
	if err != nil && !errors.As(err, &de) {
		return fmt.Errorf("typed decoder error is not a *DecodeError: %v", err)
	}
	return nil
}

func FuzzDecodeChunk(f *testing.F) {
	seed := seedChunk()
	f.Add(seed)
	f.Add(seed[:len(seed)-8])                   // last record cut
	f.Add(append(append([]byte{}, seed...), 0)) // trailing garbage
	f.Add(AppendStack(nil, 1, FlagTruncated, Stack{ID: 1, PCs: make([]uint64, MaxDepth)}))
	f.Add([]byte{})
	f.Add(make([]byte, 16))
	bad := AppendAlloc(nil, 1, Alloc{Ptr: 1})
	bad[0] = 9 // unknown type
	f.Add(bad)
	f.Fuzz(func(t *testing.T, data []byte) {
		wantRecs, wantBad, wantReason := recheck(data)
		var got [][3]int
		off := 0 // where the next record must start
		err := DecodeChunk(data, func(rec Record) error {
			if off < 0 || off >= len(data) || len(rec.Data) < RecordHeaderSize || &rec.Data[0] != &data[off] {
				return fmt.Errorf("record Data does not alias the chunk")
			}
			got = append(got, [3]int{off, int(rec.Type), len(rec.Data)})
			off += len(rec.Data)
			if rec.TS != le.Uint64(rec.Data[8:]) || rec.Flags != le.Uint32(rec.Data[4:]) {
				return fmt.Errorf("header fields do not match the bytes")
			}
			return decodeTyped(rec)
		})
		if fmt.Sprint(got) != fmt.Sprint(wantRecs) {
			t.Fatalf("records %v, re-check says %v (err %v)", got, wantRecs, err)
		}
		if wantBad < 0 {
			if err != nil {
				t.Fatalf("error %v on a well-formed chunk", err)
			}
			return
		}
		var re *RecordError
		if !errors.As(err, &re) {
			t.Fatalf("error %v, want a *RecordError at %d (%s)", err, wantBad, wantReason)
		}
		if re.Offset != wantBad || !strings.Contains(err.Error(), wantReason) {
			t.Fatalf("error %q, want offset %d and %q", err, wantBad, wantReason)
		}
	})
}
