package engine

import (
	"fmt"
	"math/rand"
	"runtime"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"memscope/shm"
)

// TestBatchSort checks each of the batch's sorts (left as is, insertion,
// pairwise merge, radix) against sort.SliceStable: events in key order,
// equal keys in the order gathered.
func TestBatchSort(t *testing.T) {
	for _, tc := range []struct {
		runs, n int
		spread  uint64 // key units between a share's events: up to this
	}{
		{1, 0, 4}, {1, 1, 4}, {1, 500, 4},
		{2, 2, 4}, {2, 32, 4}, {3, 33, 4}, // insertion sort up to insertionMax
		{2, 500, 4}, {3, 500, 1}, {5, 2048, 8}, {8, 2048, 4}, // merged
		{9, 33, 4}, {9, 500, 4}, {40, 2048, 4}, {64, 2048, 1 << 14}, // radix: two passes, three
		{2, 2048, 0}, {12, 2048, 0}, // every key equal
	} {
		t.Run(fmt.Sprintf("runs=%d/n=%d/spread=%d", tc.runs, tc.n, tc.spread), func(t *testing.T) {
			rng := rand.New(rand.NewSource(int64(tc.runs*10000 + tc.n)))
			b := newSortedBatch(0)
			const base = 1 << 40
			// Split n into runs shares (some may be empty), each ascending.
			cuts := []int{0, tc.n}
			for len(cuts) < tc.runs+1 {
				cuts = append(cuts, rng.Intn(tc.n+1))
			}
			sort.Ints(cuts)
			for r := 0; r < tc.runs; r++ {
				key := uint64(base) + uint64(rng.Intn(8))
				for i := cuts[r]; i < cuts[r+1]; i++ {
					if tc.spread > 0 {
						key += uint64(rng.Int63n(int64(tc.spread) + 1))
					}
					b.ev[i] = event{key: key}
				}
				b.from = append(b.from, share{first: cuts[r], n: cuts[r+1] - cuts[r]})
			}
			b.sort(tc.n, base)

			want := make([]int, tc.n)
			for i := range want {
				want[i] = i
			}
			sort.SliceStable(want, func(i, j int) bool { return b.ev[want[i]].key < b.ev[want[j]].key })
			got := make([]int, tc.n)
			for i := range got {
				got[i] = int(b.ord[i] & (batchCap - 1))
				require.Equal(t, b.ev[got[i]].key-base, b.ord[i]>>batchIdxBits, "ord[%d] carries its key", i)
			}
			require.Equal(t, want, got)
		})
	}
}

// TestBatchBackwardsTimestamps: a thread whose timestamps go backwards
// (bad input) among others: batches stop gathering it there, and every
// event is still applied once, the backward one counted late.
func TestBatchBackwardsTimestamps(t *testing.T) {
	for _, limit := range []int{0, 1, 2, 3} {
		t.Run(fmt.Sprintf("limit=%d", limit), func(t *testing.T) {
			e := New(Options{ReorderWindow: time.Second})
			e.batchLimit = limit
			chunk := func(tid uint32, recs ...[]byte) {
				var data []byte
				for _, r := range recs {
					data = append(data, r...)
				}
				_, _, err := e.ApplyChunk(1, tid, data)
				require.NoError(t, err)
			}
			alloc := func(ts, ptr uint64) []byte {
				return shm.AppendAlloc(nil, ts, shm.Alloc{Ptr: ptr, Size: 10, StackID: 1})
			}
			chunk(1, alloc(10, 0x100), alloc(30, 0x200), alloc(20, 0x300), alloc(40, 0x400))
			chunk(2, alloc(15, 0x500), alloc(25, 0x600), alloc(35, 0x700))
			require.Equal(t, 7, e.Pending())
			e.Flush()
			require.Zero(t, e.Pending())
			p := e.EndProcess(1, ExitStatus{})
			require.Equal(t, uint64(7), p.Totals.Allocations)
			require.Equal(t, uint64(70), p.Totals.LiveBytes)
			require.Equal(t, uint64(1), p.Totals.LateEvents, "the allocation at 20, after 30 and 25")
		})
	}
}

// TestEndProcessForgetsBatchThreads: once a process ended, the batch that
// applied its events must not keep its threads (and their process's live
// table) reachable.
func TestEndProcessForgetsBatchThreads(t *testing.T) {
	e := New(Options{ReorderWindow: time.Second})
	for tid := uint32(1); tid <= 3; tid++ {
		var data []byte
		for i := uint64(0); i < 100; i++ {
			data = shm.AppendAlloc(data, 10+i*3+uint64(tid), shm.Alloc{Ptr: 0x1000 * (i + 1) * uint64(tid), Size: 8, StackID: 1})
		}
		_, _, err := e.ApplyChunk(7, tid, data)
		require.NoError(t, err)
	}
	collected := make(chan struct{}, 3)
	for _, th := range e.threads {
		// (AddCleanup, not SetFinalizer: a thread and its proc point at
		// each other.)
		runtime.AddCleanup(th, func(ch chan struct{}) { ch <- struct{}{} }, collected)
	}
	p := e.EndProcess(7, ExitStatus{})
	require.Equal(t, uint64(300), p.Totals.Allocations)
	require.NotNil(t, e.batch, "the events went through a batch")
	// Cleanups run after a collection, on their own goroutine: collect
	// until all three ran, for up to 5 s.
	n := 0
	for deadline := time.Now().Add(5 * time.Second); n < 3 && time.Now().Before(deadline); {
		runtime.GC()
		select {
		case <-collected:
			n++
		case <-time.After(50 * time.Millisecond):
		}
	}
	require.Equal(t, 3, n, "threads collected after EndProcess")
	runtime.KeepAlive(e)
}

// BenchmarkBatchSort measures sorting a full batch whose threads' events
// interleave at random (ns per event).
func BenchmarkBatchSort(b *testing.B) {
	for _, runs := range []int{2, 4, 8, 64} {
		b.Run(fmt.Sprintf("threads=%d", runs), func(b *testing.B) {
			rng := rand.New(rand.NewSource(1))
			sb := newSortedBatch(0)
			// Each event goes to a random thread, 100 ns (400 key units) apart.
			per := make([][]uint64, runs)
			key := uint64(1 << 40)
			for i := 0; i < batchCap; i++ {
				key += 400
				r := rng.Intn(runs)
				per[r] = append(per[r], key)
			}
			n := 0
			for _, keys := range per {
				sb.from = append(sb.from, share{first: n, n: len(keys)})
				for _, k := range keys {
					sb.ev[n] = event{key: k}
					n++
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				sb.sort(n, 1<<40)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/event")
		})
	}
}
