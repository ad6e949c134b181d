package shm

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestClock checks the conversion of time-stamp counter readings to ns:
// it follows CLOCK_MONOTONIC (to within the calibration's error over the
// test's 50 ms), keeps the order of readings, and converts readings
// older than the ring on the same line.
func TestClock(t *testing.T) {
	mono := newClock(false)
	require.False(t, mono.TSC())
	require.Equal(t, uint64(12345), mono.Conv().NS(12345), "a CLOCK_MONOTONIC ring's stamps are ns already")
	if !InvariantTSC() {
		t.Skip("no invariant TSC here")
	}
	c := newClock(true)
	conv := c.Conv()
	// The conversion's rate: 2 ms of calibration, about 5e-5.
	for i := 0; i < 5; i++ {
		time.Sleep(10 * time.Millisecond)
		now, m := c.Now(), monotonicNS()
		diff := int64(now) - int64(m)
		require.Less(t, abs(diff), int64(100*time.Microsecond), "converted TSC %d, CLOCK_MONOTONIC %d", now, m)
	}
	// Order: a reading never converts below an earlier one.
	prev := conv.NS(rdtscOrdered())
	for i := 0; i < 100000; i++ {
		ns := conv.NS(rdtscOrdered())
		require.GreaterOrEqual(t, ns, prev)
		prev = ns
	}
	// Before the ring was mapped: backwards on the same line.
	start := c.start
	at := conv.NS(start.tsc)
	require.InDelta(t, float64(start.ns), float64(at), 2)
	back := conv.NS(start.tsc - 2_000_000)
	require.InDelta(t, float64(at)-2e6*float64(conv.mul)/(1<<32), float64(back), 2)
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}

// TestMonotonicNS: the runtime's clock the Reader stamps the heartbeat
// with is CLOCK_MONOTONIC, the library's (preload/ring.c ms_now_ns): a
// system call's reading lies between two of ours.
func TestMonotonicNS(t *testing.T) {
	for i := 0; i < 100; i++ {
		var ts unix.Timespec
		before := monotonicNS()
		require.NoError(t, unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts))
		after := monotonicNS()
		sys := uint64(ts.Sec)*1e9 + uint64(ts.Nsec)
		require.LessOrEqual(t, before, sys)
		require.LessOrEqual(t, sys, after)
	}
}

// TestClockCalibratedAtStart: every Clock's line starts at the package's
// initialisation, so a Clock made once calibrateSpan has passed since
// converts at once, instead of waiting out the span from its own
// creation (what a short program's exit check waited for).
func TestClockCalibratedAtStart(t *testing.T) {
	if !InvariantTSC() {
		t.Skip("no invariant TSC here")
	}
	if d := time.Duration(monotonicNS() - processPair.ns); d < calibrateSpan {
		time.Sleep(calibrateSpan - d)
	}
	c := newClock(true)
	began := time.Now()
	c.Conv()
	require.Less(t, time.Since(began), calibrateSpan/2, "converted without waiting")
	require.Equal(t, processPair, c.start)
}

// TestClockAdopt: a Clock that has converted nothing yet takes another
// analyzer's line (a resumed ring, whose journal's times are on it) and
// converts every stamp on it; one that has converted keeps its own, and
// a CLOCK_MONOTONIC clock, whose stamps are ns, adopts nothing.
func TestClockAdopt(t *testing.T) {
	line := StampConvOf(5_000, 3<<31) // 1.5 ns a tick, 5 us at 0
	base, mul := line.Line()
	require.Equal(t, [2]uint64{5_000, 3 << 31}, [2]uint64{base, mul})

	fresh := newClock(true)
	require.True(t, fresh.Adopt(line))
	require.Equal(t, line, fresh.Conv())
	require.Equal(t, uint64(5_000+1_500), fresh.Conv().NS(1_000))
	require.False(t, fresh.Adopt(StampConvOf(0, 1<<32)), "a line once made stays")
	require.Equal(t, line, fresh.Conv())

	used := newClock(true)
	own := used.Conv()
	require.False(t, used.Adopt(line))
	require.Equal(t, own, used.Conv())

	mono := newClock(false)
	require.False(t, mono.Adopt(line))
	require.Equal(t, uint64(1_000), mono.Conv().NS(1_000))
	require.False(t, newClock(true).Adopt(StampConv{}), "no line: calibrate")
}
