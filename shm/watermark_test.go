package shm

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestWatermarkBoundsLaterRecords runs producers stamped as the
// interposer stamps records (the clock read with the record open), more
// threads than cores and some yielding with a record open, and checks
// Watermark's promise on every poll: no record delivered later carries a
// timestamp below it. It also checks that the watermark moves with the
// producers (it is useful, not just safe) and never goes back. Both
// clocks: the time-stamp counter (where it is invariant) and
// CLOCK_MONOTONIC. With PollBytes, a snapshot is delivered in pieces,
// each with its own watermark (the least stamp left undelivered).
func TestWatermarkBoundsLaterRecords(t *testing.T) {
	for _, tc := range []struct {
		producers  int
		yieldEvery uint64
		monotonic  bool
		pollBytes  int
	}{
		{1, 0, false, 0}, {4, 0, false, 0}, {8, 97, false, 0}, {1, 0, true, 0}, {8, 97, true, 0},
		{1, 0, false, 1000}, {4, 0, false, 1000}, {8, 97, false, 1000}, {8, 97, true, 1000},
	} {
		clock := "tsc"
		if tc.monotonic {
			clock = "monotonic"
		}
		t.Run(fmt.Sprintf("producers=%d/yield=%d/%s/pollbytes=%d", tc.producers, tc.yieldEvery, clock, tc.pollBytes), func(t *testing.T) {
			if !tc.monotonic && !InvariantTSC() {
				t.Skip("no invariant TSC here")
			}
			// 200000 events a producer, 800000 for a single one: alone,
			// it outran a consumer slowed by -race in a few dozen polls,
			// fewer than the 100 the check below wants.
			events := uint64(max(200000, 800000/tc.producers))
			r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 64 * MinChunkSize, MonotonicClock: tc.monotonic})
			require.Equal(t, !tc.monotonic, r.Clock().TSC())
			stamps := r.Clock().Conv()
			c := attach(t, r, false)
			rd, err := r.NewReader(ReaderOptions{PollBytes: tc.pollBytes})
			require.NoError(t, err)

			var wg sync.WaitGroup
			wg.Add(tc.producers)
			for i := range tc.producers {
				go func() {
					defer wg.Done()
					runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
					w := c.NewWriter(uint32(os.Getpid()), uint32(unix.Gettid()))
					defer w.Free()
					w.AppendStamped(uint64(i)<<producerShift, events, tc.yieldEvery)
					w.Seal()
				}()
			}
			finished := make(chan struct{})
			go func() { wg.Wait(); close(finished) }()

			var mark, polls, marked, pieces uint64
			var received uint64
			var bad error
			check := func(rec Record) error {
				received++
				if ts := stamps.NS(rec.TS); bad == nil && ts < mark {
					bad = fmt.Errorf("record %d of tid %d stamped %d, below the watermark %d of an earlier poll", received, rec.Tid, ts, mark)
				}
				return nil
			}
			// Done after a poll that took its snapshot after the producers
			// ended and delivered it to its end (a poll takes a snapshot
			// when the one before delivered its own to the end).
			for fresh := true; ; {
				done := false
				select {
				case <-finished:
					done = true
				default:
				}
				pieces = rd.Stats().Pieces
				_, err := rd.Poll(check)
				complete := rd.Stats().Pieces == pieces
				require.NoError(t, err)
				require.NoError(t, rd.Commit())
				w := rd.Watermark()
				require.GreaterOrEqual(t, w, mark, "watermark went back")
				if w > mark {
					marked++
				}
				mark = w
				polls++
				if done && fresh && complete {
					break
				}
				fresh = complete
			}
			require.NoError(t, bad)
			require.Equal(t, uint64(tc.producers)*events, received)
			// It moves as records arrive (a consumer spinning on an idle
			// ring, or on yielding threads, polls many times between).
			require.Greater(t, marked, uint64(100), "the watermark moved in %d of %d polls", marked, polls)
			if tc.pollBytes > 0 {
				require.Greater(t, rd.Stats().Pieces, uint64(100), "snapshots delivered in pieces")
			}
			t.Logf("%d polls, watermark moved in %d, %d stopped at PollBytes", polls, marked, rd.Stats().Pieces)
		})
	}
}

// TestPieceWatermarkCountsReallocFree: a delivery that stops before a
// chunk whose first record is a REALLOC sets the watermark at that
// realloc's free (stamped before the call), not at its allocation.
func TestPieceWatermarkCountsReallocFree(t *testing.T) {
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 8 * MinChunkSize, MonotonicClock: true})
	c := attach(t, r, false)
	pid := uint32(os.Getpid())
	first := c.NewWriter(pid, 1)
	defer first.Free()
	for i := range uint64(10) {
		require.True(t, first.AppendAlloc(1000+i, 0x1000+i*16, 16, 0, 0, 0))
	}
	first.Seal()
	second := c.NewWriter(pid, 2)
	defer second.Free()
	require.True(t, second.AppendRaw(AppendRealloc(nil, 5000, Realloc{OldPtr: 0x1000, NewPtr: 0x9000, Size: 32, TSBefore: 1500})))
	require.True(t, second.AppendFree(6000, 0x9000))
	second.Seal()

	rd, err := r.NewReader(ReaderOptions{PollBytes: 8})
	require.NoError(t, err)
	var tids []uint32
	collect := func(rec Record) error { tids = append(tids, rec.Tid); return nil }
	n, err := rd.Poll(collect)
	require.NoError(t, err)
	require.Equal(t, 10, n, "the first chunk only")
	require.Equal(t, uint64(1500), rd.Watermark(), "the realloc's free is the least stamp left")
	n, err = rd.Poll(collect)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Greater(t, rd.Watermark(), uint64(6000), "the snapshot delivered: the clock's bound")
	require.Equal(t, uint64(1), rd.Stats().Pieces)
}
