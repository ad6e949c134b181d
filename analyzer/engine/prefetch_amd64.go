package engine

import "unsafe"

// prefetch asks the CPU to bring the cache line at addr into its caches
// (PREFETCHT0) and returns without waiting for it. Go has no intrinsic
// for it; prefetch_amd64.s is the one instruction.
//
//go:noescape
func prefetch(addr unsafe.Pointer)

// prefetch2 is prefetch of the two cache lines from addr (a liveGroup),
// in one call.
//
//go:noescape
func prefetch2(addr unsafe.Pointer)
