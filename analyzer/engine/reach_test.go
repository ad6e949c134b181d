package engine

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/analyzer/reach"
	"memscope/shm"
)

// setLiveAlloc rewrites rec, an ALLOC record, in place into the k-th of a
// run of live blocks: ts 10+k, address 0x7f0000000000+48k, size k%500,
// stack k%100+1. One buffer for a million blocks, no garbage.
func setLiveAlloc(rec *shm.Record, k int) {
	d := rec.Data
	binary.LittleEndian.PutUint64(d[8:], uint64(10+k))
	binary.LittleEndian.PutUint64(d[16:], 0x7f0000000000+uint64(k)*48)
	binary.LittleEndian.PutUint64(d[24:], uint64(k%500))
	binary.LittleEndian.PutUint64(d[32:], uint64(k%100+1))
	rec.TS = uint64(10 + k)
}

// liveProcess returns an engine holding n live blocks of pid 1
// (setLiveAlloc's), all applied.
func liveProcess(tb testing.TB, n int) *Engine {
	e := New(Options{ReorderWindow: -1})
	rec := recOf(tb, 1, 1, shm.AppendAlloc(nil, 2, shm.Alloc{Kind: shm.KindMalloc}))
	for k := 0; k < n; k++ {
		setLiveAlloc(&rec, k)
		require.NoError(tb, e.Apply(rec))
	}
	e.Flush()
	return e
}

// BenchmarkLiveBlocks measures what the leak check does while it holds
// the process: list a million live blocks by address.
func BenchmarkLiveBlocks(b *testing.B) {
	e := liveProcess(b, 1_000_000)
	for b.Loop() {
		e.LiveBlocks(1)
	}
}

func TestReachabilityVerdicts(t *testing.T) {
	e := liveProcess(t, 1000)
	blocks := e.LiveBlocks(1)
	require.Len(t, blocks.Extents, 1000)
	require.Len(t, blocks.Sites, 1000)
	for i := 1; i < len(blocks.Extents); i++ {
		require.Less(t, blocks.Extents[i-1].Addr, blocks.Extents[i].Addr)
	}
	for i, x := range blocks.Extents {
		// Block k is at 0x7f0000000000 + 48k, with size k%500, stack k%100+1.
		k := (x.Addr - 0x7f0000000000) / 48
		require.Equal(t, k%500, x.Size)
		stack, _ := e.SiteStack(1, blocks.Sites[i])
		require.Equal(t, k%100+1, stack)
	}
	kinds := make([]reach.Kind, len(blocks.Extents))
	for i := range kinds {
		kinds[i] = reach.Kind(1 + i%3) // direct, indirect, reachable in turn
	}
	e.SetReachability(1, blocks, kinds)
	p := e.EndProcess(1, ExitStatus{Known: true})
	require.True(t, p.Reach.Checked)
	var got [reach.NumKinds]KindCount
	for _, s := range p.Sites {
		var objects, bytes uint64
		for k, c := range s.ByKind {
			got[k].Objects += c.Objects
			got[k].Bytes += c.Bytes
			objects += c.Objects
			bytes += c.Bytes
		}
		assert.Equal(t, s.LiveObjects, objects)
		assert.Equal(t, s.LiveBytes, bytes)
	}
	// Block k (k = 0..999, by address) has size k%500 and kind 1+k%3.
	var want [reach.NumKinds]KindCount
	for k := 0; k < 1000; k++ {
		c := &want[1+k%3]
		c.Objects++
		c.Bytes += uint64(k % 500)
	}
	assert.Equal(t, want, got)
}

// TestHostileBounds: a ring claiming more stacks or modules than any
// program has is refused with an error naming the record, not followed
// until the analyzer runs out of memory.
func TestHostileBounds(t *testing.T) {
	e := New(Options{MaxStacks: 3})
	for id := uint64(1); id <= 3; id++ {
		require.NoError(t, e.Apply(recOf(t, 1, 1, shm.AppendStack(nil, id, 0, shm.Stack{ID: id, PCs: []uint64{0x1000}}))))
	}
	err := e.Apply(recOf(t, 1, 1, shm.AppendStack(nil, 4, 0, shm.Stack{ID: 4, PCs: []uint64{0x1000}})))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "pid 1 tid 1: STACK record at ts 4: more than 3 distinct stacks: refusing the ring")
	// A stack seen before is no new stack.
	require.NoError(t, e.Apply(recOf(t, 1, 1, shm.AppendStack(nil, 5, 0, shm.Stack{ID: 2, PCs: []uint64{0x1000}}))))

	e = New(Options{})
	m := shm.Module{Event: shm.ModuleLoad, Path: "/lib/x.so", Segments: []shm.Segment{{Vaddr: 0, Memsz: 0x1000, Flags: 5}}}
	for i := 0; i < maxModules; i++ {
		require.NoError(t, e.Apply(recOf(t, 1, 1, shm.AppendModule(nil, uint64(i+1), m))))
	}
	err = e.Apply(recOf(t, 1, 1, shm.AppendModule(nil, 1<<20, m)))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "more than 65536 modules loaded at once in one process")

	// Loading and unloading in a loop is no hostile ring.
	e = New(Options{})
	for i := 0; i < maxModules+10; i++ {
		require.NoError(t, e.Apply(recOf(t, 1, 1, shm.AppendModule(nil, uint64(2*i+1), m))))
		um := m
		um.Event = shm.ModuleUnload
		require.NoError(t, e.Apply(recOf(t, 1, 1, shm.AppendModule(nil, uint64(2*i+2), um))))
	}
}

// BenchmarkSnapshot measures what the end of a process costs the loop
// before its reports: a compiler's 20 000 sites put in stack order.
func BenchmarkSnapshot(b *testing.B) {
	e := New(Options{ReorderWindow: -1})
	rec := recOf(b, 1, 1, shm.AppendAlloc(nil, 2, shm.Alloc{Kind: shm.KindMalloc}))
	for k := 0; k < 100_000; k++ {
		setLiveAlloc(&rec, k)
		// Stacks in no order: a hash, as the library's ids are.
		binary.LittleEndian.PutUint64(rec.Data[32:], uint64(k%20_000+1)*0x9e3779b97f4a7c15)
		require.NoError(b, e.Apply(rec))
	}
	e.Flush()
	p := e.procs[1]
	require.Len(b, p.sites, 20_000)
	for b.Loop() {
		p.snapshot(ExitStatus{})
	}
}

// TestFlushProcessLeavesOthersToTheWatermark: a process's exit check
// applies all of its events (FlushProcess), its frees past the watermark
// at once (no allocation of its is still to come), but another
// process's events past the watermark stay pending: applying them made
// their frees wait for the watermark, counted late (a fork child's check
// gave its parent hundreds of late events). With a process record of
// the checked process's past the watermark, or several threads of it
// with events there, the flush keeps time order across processes: their
// frees then wait as before.
func TestFlushProcessLeavesOthersToTheWatermark(t *testing.T) {
	const checked, other = 500, 501
	tests := []struct {
		name                string
		extra               func(s *stream)
		pending             int       // past the watermark before the flush
		checked             [3]uint64 // allocations, frees, live bytes
		checkedLate         uint64
		otherLate           uint64
		otherPendingAtFlush int
	}{
		{"one thread, heap events", func(*stream) {}, 3, [3]uint64{2, 1, 8}, 0, 0, 1},
		{"a second thread of the checked process", func(s *stream) {
			s.malloc(checked, checked+1, 27*ms, 0x9000, 5, 9)
		}, 4, [3]uint64{3, 1, 13}, 0, 1, 0},
		{"a process record of the checked process", func(s *stream) {
			// A fork no child claims: its cut waits aside.
			s.add(checked, checked, shm.AppendProcess(nil, 28*ms, shm.Process{Pid: checked, Event: shm.ProcessForked, Status: 1}))
		}, 4, [3]uint64{2, 1, 8}, 0, 1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStream(t)
			s.malloc(other, other, 10*ms, 0x1000, 100, 1)
			s.malloc(checked, checked, 15*ms, 0x2000, 40, 2)
			s.free(checked, checked, 25*ms, 0x2000) // past the watermark
			s.free(other, other, 24*ms, 0x1000)     // past it too, before the checked process's last event
			s.malloc(checked, checked, 26*ms, 0x3000, 8, 3)
			tc.extra(s)
			e := New(Options{ReorderWindow: time.Second})
			for _, r := range s.recs {
				require.NoError(t, e.Apply(r))
			}
			e.Settle(20 * ms)
			require.Equal(t, tc.pending, e.Pending(), "the events past the watermark wait")

			e.FlushProcess(checked)
			c := e.Snapshot(checked)
			assert.Equal(t, tc.checked, [3]uint64{c.Totals.Allocations, c.Totals.Frees, c.Totals.LiveBytes}, "every event of the checked process applied")
			assert.Equal(t, tc.checkedLate, c.Totals.LateEvents)
			assert.Equal(t, tc.otherPendingAtFlush, e.Pending(), "the other process's free")

			e.Settle(100 * ms)
			o := e.EndProcess(other, ExitStatus{})
			require.NotNil(t, o)
			assert.Equal(t, [2]uint64{1, 0}, [2]uint64{o.Totals.Frees, o.Totals.LiveBytes})
			assert.Equal(t, tc.otherLate, o.Totals.LateEvents)
		})
	}
}
