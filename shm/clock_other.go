//go:build !amd64

package shm

// No time-stamp counter clock but on amd64: rings are stamped with
// CLOCK_MONOTONIC.
func rdtscOrdered() uint64 { return monotonicNS() }

func invariantTSC() bool { return false }
