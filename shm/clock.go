package shm

import (
	"math/bits"
	"sync"
	"time"
)

// Clock is the clock of a ring's record timestamps (ms_record_header.ts),
// read and converted to ns. Where the ring's creator found an invariant
// TSC, producers stamp records with the counter itself (rdtsc, fenced
// for allocations: preload/ring.h ms_tsc; 14-27 ns for clock_gettime:
// include/memscope.h MS_RING_TSC) and the consumer converts with a line
// (StampConv) through a pair of readings of the counter and
// CLOCK_MONOTONIC taken when this package was initialised (processPair),
// whose slope is measured against CLOCK_MONOTONIC over at least
// calibrateSpan.
// The conversion is fixed once made, so it keeps the order of every two
// stamps; the consumer's own clock (Now, the Reader's watermark) goes
// through the same conversion, so it compares with records exactly.
// Against CLOCK_MONOTONIC the converted time drifts by the calibration's
// error, some 5e-5 (3 ms a minute): it is for order and display, and the
// ring's other times (heartbeat, waits) stay CLOCK_MONOTONIC. Records
// stamped before the analyzer started (bare mode's recorder, a resumed
// ring) convert on the same line.
//
// A Clock is safe for concurrent use.
type Clock struct {
	tsc   bool
	start tscPair // processPair
	once  sync.Once
	conv  StampConv // after calibrate
}

// StampConv converts record timestamps to ns: a plain value for a
// consumer's inner loop (Clock.Conv). The zero value converts nothing:
// use NSStamps for stamps in ns already.
type StampConv struct {
	// ns = base + t * mul >> 32, in 64-bit wrapping arithmetic: base is
	// the ns of counter 0 on the calibrated line (below 0 when the
	// counter ran before CLOCK_MONOTONIC's start: it wraps, and adding
	// wraps back), so that any reading converts without a branch.
	base, mul uint64
}

// NSStamps is the conversion of stamps that are ns already (a
// CLOCK_MONOTONIC ring): the identity.
func NSStamps() StampConv { return StampConv{mul: 1 << 32} }

// Line returns the conversion's base and slope, for a journal to keep
// (StampConvOf makes the conversion again).
func (v StampConv) Line() (base, mul uint64) { return v.base, v.mul }

// StampConvOf is the conversion whose Line is base, mul.
func StampConvOf(base, mul uint64) StampConv { return StampConv{base: base, mul: mul} }

// calibrateSpan is the least time between the two readings the slope
// is measured from: each pair is read to within some 50 ns.
const calibrateSpan = 2 * time.Millisecond

// tscPair is the counter and CLOCK_MONOTONIC read at the same time.
type tscPair struct{ tsc, ns uint64 }

// readPair reads the counter around CLOCK_MONOTONIC a few times and keeps
// the tightest reading.
func readPair() tscPair {
	best, width := tscPair{}, ^uint64(0)
	for i := 0; i < 5; i++ {
		a := rdtscOrdered()
		ns := monotonicNS()
		b := rdtscOrdered()
		if b >= a && b-a < width {
			best, width = tscPair{a + (b-a)/2, ns}, b-a
		}
	}
	return best
}

// processPair is the first reading of every Clock's line, taken while
// the analyzer's packages are initialised. It used to be taken when the
// ring was mapped, and the first conversion then waited out the rest of
// calibrateSpan: on a host that starts processes in half a millisecond,
// `run ls /` went through its program's whole life before the session
// could read its first record, and `ls` waited about 1.5 ms at exit for
// its leak check to begin. Taken this early, the span has passed by
// then (the analyzer's start takes longer), and any two readings make
// the same line.
var processPair = readPair()

func newClock(tsc bool) *Clock {
	c := &Clock{tsc: tsc}
	if tsc {
		c.start = processPair
	}
	return c
}

// TSC reports whether records are stamped with the time-stamp counter.
func (c *Clock) TSC() bool { return c.tsc }

// Conv returns the conversion of record timestamps to ns. With a TSC
// clock, the first call waits until calibrateSpan has passed since
// processPair (by then it has, but in a test that asks at once).
func (c *Clock) Conv() StampConv {
	c.once.Do(c.calibrate)
	return c.conv
}

// Adopt makes conv the conversion of a TSC clock that has made none yet,
// and reports whether it did. An analyzer that resumes a ring adopts the
// line of the one before it, in which its journal's times (settled
// watermarks, the checkpoint's state) are: on a line of its own the same
// stamps would convert differently, by the calibrations' error (some
// 5e-5) times the time since, and the restored times would no longer
// compare exactly with the new records'.
func (c *Clock) Adopt(conv StampConv) bool {
	if !c.tsc || conv.mul == 0 {
		return false
	}
	adopted := false
	c.once.Do(func() { c.conv, adopted = conv, true })
	return adopted
}

func (c *Clock) calibrate() {
	if !c.tsc {
		c.conv = NSStamps()
		return
	}
	if d := time.Duration(monotonicNS() - c.start.ns); d < calibrateSpan {
		time.Sleep(calibrateSpan - d)
	}
	end := readPair()
	mul := uint64(1) << 32 // 1 GHz, if the counter did not move (cannot happen)
	if end.tsc > c.start.tsc && end.ns > c.start.ns {
		hi, lo := bits.Mul64(end.ns-c.start.ns, 1<<32)
		if hi < end.tsc-c.start.tsc {
			mul, _ = bits.Div64(hi, lo, end.tsc-c.start.tsc)
		}
	}
	hi, lo := bits.Mul64(c.start.tsc, mul)
	c.conv = StampConv{base: c.start.ns - (hi<<32 | lo>>32), mul: mul}
}

// Now is the clock records are stamped with, read now, in ns: after
// every earlier instruction and before any later one (the Reader's
// watermark depends on it).
func (c *Clock) Now() uint64 {
	if !c.tsc {
		return monotonicNS()
	}
	return c.Conv().NS(rdtscOrdered())
}

// NS converts a record's timestamp to ns (small enough to be inlined in
// the engine's decoding loop).
func (v StampConv) NS(t uint64) uint64 {
	hi, lo := bits.Mul64(t, v.mul)
	return v.base + (hi<<32 | lo>>32)
}

// InvariantTSC reports whether the time-stamp counter runs at a constant
// rate in every power state and is the same on every CPU (CPUID
// 0x80000007 EDX bit 8): the condition for MS_RING_TSC.
func InvariantTSC() bool { return invariantTSC() }
