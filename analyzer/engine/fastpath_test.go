package engine

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/shm"
)

func TestHeapRecordLayout(t *testing.T) {
	// Apply decodes heap records in place: its offsets must be shm's.
	tests := []struct {
		name string
		rec  []byte
		want map[int]uint64 // offset -> value
	}{
		{"alloc", shm.AppendAlloc(nil, 7, shm.Alloc{Ptr: 0x1111, Size: 0x2222, StackID: 0x3333, Kind: shm.KindCalloc, Align: 64}),
			map[int]uint64{allocPtrOff: 0x1111, allocSizeOff: 0x2222, allocStackOff: 0x3333}},
		{"free", shm.AppendFree(nil, 7, shm.Free{Ptr: 0x4444}),
			map[int]uint64{freePtrOff: 0x4444}},
		{"realloc", shm.AppendRealloc(nil, 7, shm.Realloc{OldPtr: 0x5555, NewPtr: 0x6666, Size: 0x7777, StackID: 0x8888, TSBefore: 6, Kind: shm.KindRealloc}),
			map[int]uint64{reallocOldOff: 0x5555, reallocNewOff: 0x6666, reallocSizeOff: 0x7777, reallocStackOff: 0x8888, reallocTSBeforeOff: 6}},
	}
	sizes := map[string]int{"alloc": allocRecSize, "free": freeRecSize, "realloc": reallocRecSize}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := recOf(t, 1, 1, tt.rec)
			assert.Equal(t, sizes[tt.name], len(r.Data))
			le := binary.LittleEndian
			for off, v := range tt.want {
				assert.Equal(t, v, le.Uint64(r.Data[off:]), "offset %d", off)
			}
			// The fixed part is the whole record: one byte less is refused.
			short := r
			short.Data = r.Data[:len(r.Data)-8]
			e := New(Options{})
			err := e.Apply(short)
			require.Error(t, err)
			assert.Contains(t, err.Error(), r.Type.String())
			assert.Equal(t, 0, e.Pending())
			assert.Nil(t, e.Snapshot(1))
		})
	}
}

func TestRunAcrossBlocksSplitByOtherThreads(t *testing.T) {
	// Thread A queues 2500 allocations (three blocks of pending events),
	// 10 µs apart from 1 ms; block 1500 is big. Thread B frees it at
	// 16.005 ms: A's run must stop in the middle of a block for B's free
	// and resume after it. A release to 20 ms stops in A's second block;
	// thread C's free at 10 ms then arrives late and is applied at once.
	const pid = 700
	const a, b, c = 701, 702, 703
	addr := func(i uint64) uint64 { return 0x100000 + 64*i }
	tsOf := func(i uint64) uint64 { return 1*ms + i*10_000 }
	s := newStream(t)
	for i := uint64(0); i < 2500; i++ {
		size := uint64(1)
		if i == 1500 {
			size = 1000
		}
		s.malloc(pid, a, tsOf(i), addr(i), size, 1+i%3)
	}
	s.free(pid, b, tsOf(1500)+5_000, addr(1500))
	e := run(t, 100*time.Millisecond, s.recs)
	require.Equal(t, 2501, e.Pending())

	e.Advance(120 * ms) // releases up to 20 ms: A's 0..1900 and B's free
	assert.Equal(t, 2500-1901, e.Pending())
	p := e.Snapshot(pid)
	assert.Equal(t, uint64(1901), p.Totals.Allocations)
	assert.Equal(t, uint64(1), p.Totals.Frees)
	assert.Equal(t, uint64(2500), p.Totals.PeakBytes, "B's free applied between A's blocks 1500 and 1501")
	assert.Equal(t, tsOf(1500), p.Totals.PeakTS)
	assert.Equal(t, uint64(1900), p.Totals.LiveBytes)

	require.NoError(t, e.Apply(recOf(t, pid, c, shm.AppendFree(nil, 10*ms, shm.Free{Ptr: addr(100)}))))
	assert.Equal(t, 2500-1901, e.Pending(), "a late event is applied on arrival")
	p = e.Snapshot(pid)
	assert.Equal(t, uint64(1), p.Totals.LateEvents)
	assert.Equal(t, uint64(2), p.Totals.Frees)

	// A newer record moves the window to 100 ms: the rest of A's run
	// (through its third block) is applied, the new record waits.
	require.NoError(t, e.Apply(recOf(t, pid, a, shm.AppendAlloc(nil, 200*ms, shm.Alloc{Ptr: 0x9000, Size: 1, StackID: 1}))))
	assert.Equal(t, 1, e.Pending())

	p = e.EndProcess(pid, ExitStatus{Known: true})
	require.NotNil(t, p)
	assert.Equal(t, 0, e.Pending())
	assert.Equal(t, Totals{
		Allocations:    2501,
		Frees:          2,
		BytesAllocated: 2499 + 1000 + 1,
		LiveObjects:    2499,
		LiveBytes:      2499,
		PeakBytes:      2500,
		PeakObjects:    1501,
		PeakTS:         tsOf(1500),
		LateEvents:     1,
	}, p.Totals)
}

func TestNoWindowAppliesOnArrival(t *testing.T) {
	// Without a window every event is applied on arrival; an older one
	// (other thread) is late, one at the same timestamp is not.
	const pid = 800
	s := newStream(t)
	s.malloc(pid, 801, 10*ms, 0x1000, 8, 1).
		free(pid, 802, 5*ms, 0x2000).          // older: late, unknown
		malloc(pid, 802, 10*ms, 0x3000, 4, 2). // same ts: not late
		free(pid, 801, 11*ms, 0x1000)
	e := New(Options{ReorderWindow: -1})
	for i, r := range s.recs {
		require.NoError(t, e.Apply(r))
		assert.Equal(t, 0, e.Pending(), "after record %d", i)
	}
	p := e.EndProcess(pid, ExitStatus{})
	assert.Equal(t, uint64(1), p.Totals.LateEvents)
	assert.Equal(t, uint64(1), p.Totals.UnknownFrees)
	assert.Equal(t, uint64(12), p.Totals.PeakBytes)
	assert.Equal(t, uint64(4), p.Totals.LiveBytes)
}

func TestApplyChunk(t *testing.T) {
	// A chunk's records back to back, as the Reader hands them over:
	// ApplyChunk takes every record up to a bad one, says how far it
	// got, and changes nothing for the bad one.
	const pid, tid = 900, 901
	good := shm.AppendStack(nil, 1*ms, 0, shm.Stack{ID: 7, PCs: []uint64{0x401000}})                                           // 32 bytes
	good = shm.AppendAlloc(good, 2*ms, shm.Alloc{Ptr: 0x1000, Size: 100, StackID: 7})                                          // 48
	good = shm.AppendThread(good, 2*ms, shm.Thread{Tid: tid, Name: "worker"})                                                  // 48
	good = shm.AppendRealloc(good, 4*ms, shm.Realloc{OldPtr: 0x1000, NewPtr: 0x2000, Size: 300, StackID: 7, TSBefore: 3 * ms}) // 64
	good = shm.AppendFree(good, 5*ms, shm.Free{Ptr: 0x5555})                                                                   // 24: unknown
	good = shm.AppendAlloc(good, 6*ms, shm.Alloc{Ptr: 0x3000, Size: 5, StackID: 7})                                            // 48
	require.Len(t, good, 272)
	badHeader := binary.LittleEndian.AppendUint64(nil, uint64(shm.RecAlloc)|24<<16) // ALLOC of 24 bytes
	badHeader = append(badHeader, make([]byte, 16)...)
	badRealloc := shm.AppendRealloc(nil, 7*ms, shm.Realloc{OldPtr: 0x3000, NewPtr: 0x4000, Size: 1, StackID: 7, TSBefore: 8 * ms})

	tests := []struct {
		name        string
		data        []byte
		took, recs  int
		recordError bool   // a *shm.RecordError at offset took
		errText     string // "" for no error
	}{
		{"whole chunk", good, 272, 6, false, ""},
		{"bad header after good records", append(append([]byte(nil), good...), badHeader...), 272, 6, true,
			"record at chunk data offset 272: ALLOC record has length 24, shorter than its fixed part (48 bytes)"},
		{"truncated record", good[:264], 224, 5, true,
			"record at chunk data offset 224: ALLOC record of length 48 runs past the chunk (40 bytes left)"},
		{"realloc stamped before its free", append(append([]byte(nil), good...), badRealloc...), 272, 6, false,
			"pid 900 tid 901: REALLOC record at ts 7000000: ts_before 8000000 is after ts 7000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := New(Options{ReorderWindow: -1})
			took, recs, err := e.ApplyChunk(pid, tid, tt.data)
			assert.Equal(t, tt.took, took, "bytes taken")
			assert.Equal(t, tt.recs, recs, "records taken")
			if tt.errText == "" {
				require.NoError(t, err)
			} else {
				require.EqualError(t, err, tt.errText)
				var re *shm.RecordError
				require.Equal(t, tt.recordError, errors.As(err, &re))
				if tt.recordError {
					assert.Equal(t, tt.took, re.Offset)
				}
			}
			// The records taken are applied, the bad one not at all.
			p := e.EndProcess(pid, ExitStatus{})
			require.NotNil(t, p)
			want := Totals{Allocations: 3, Frees: 1, BytesAllocated: 405, LiveObjects: 2, LiveBytes: 305,
				PeakBytes: 305, PeakObjects: 2, PeakTS: 6 * ms, UnknownFrees: 1,
				TemporaryAllocations: 1} // 0x1000, released by the realloc right after
			if tt.recs == 5 {
				want = Totals{Allocations: 2, Frees: 1, BytesAllocated: 400, LiveObjects: 1, LiveBytes: 300,
					PeakBytes: 300, PeakObjects: 1, PeakTS: 4 * ms, UnknownFrees: 1, TemporaryAllocations: 1}
			}
			assert.Equal(t, want, p.Totals)
			assert.Equal(t, map[uint32]string{tid: "worker"}, p.Threads)
			assert.Contains(t, p.Stacks, uint64(7), "the process's stacks go with its snapshot")
			_, ok := e.Stack(pid, 7)
			assert.False(t, ok, "and the engine forgets them")
		})
	}

	t.Run("bad first record creates no process", func(t *testing.T) {
		e := New(Options{})
		took, recs, err := e.ApplyChunk(pid, tid, badHeader)
		require.Error(t, err)
		assert.Equal(t, 0, took)
		assert.Equal(t, 0, recs)
		assert.Empty(t, e.Pids())
	})
}
