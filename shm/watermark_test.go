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
// CLOCK_MONOTONIC.
func TestWatermarkBoundsLaterRecords(t *testing.T) {
	for _, tc := range []struct {
		producers  int
		yieldEvery uint64
		monotonic  bool
	}{{1, 0, false}, {4, 0, false}, {8, 97, false}, {1, 0, true}, {8, 97, true}} {
		clock := "tsc"
		if tc.monotonic {
			clock = "monotonic"
		}
		t.Run(fmt.Sprintf("producers=%d/yield=%d/%s", tc.producers, tc.yieldEvery, clock), func(t *testing.T) {
			if !tc.monotonic && !InvariantTSC() {
				t.Skip("no invariant TSC here")
			}
			const events = 200000
			r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 64 * MinChunkSize, MonotonicClock: tc.monotonic})
			require.Equal(t, !tc.monotonic, r.Clock().TSC())
			stamps := r.Clock().Conv()
			c := attach(t, r, false)
			rd, err := r.NewReader(ReaderOptions{})
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

			var mark, polls, marked uint64
			var received uint64
			var bad error
			check := func(rec Record) error {
				received++
				if ts := stamps.NS(rec.TS); bad == nil && ts < mark {
					bad = fmt.Errorf("record %d of tid %d stamped %d, below the watermark %d of an earlier poll", received, rec.Tid, ts, mark)
				}
				return nil
			}
			for drained := false; !drained; {
				select {
				case <-finished:
					drained = true
				default:
				}
				_, err := rd.Poll(check)
				require.NoError(t, err)
				require.NoError(t, rd.Commit())
				w := rd.Watermark()
				require.GreaterOrEqual(t, w, mark, "watermark went back")
				if w > mark {
					marked++
				}
				mark = w
				polls++
			}
			require.NoError(t, bad)
			require.Equal(t, uint64(tc.producers*events), received)
			// It moves as records arrive (a consumer spinning on an idle
			// ring, or on yielding threads, polls many times between).
			require.Greater(t, marked, uint64(100), "the watermark moved in %d of %d polls", marked, polls)
			t.Logf("%d polls, watermark moved in %d", polls, marked)
		})
	}
}
