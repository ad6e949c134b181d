package engine

import "unsafe"

// prefetch asks the CPU to bring the cache line at addr into its caches
// (PREFETCHT0) and returns without waiting for it. Go has no intrinsic
// for it; prefetch_amd64.s is the one instruction.
//
//go:noescape
func prefetch(addr unsafe.Pointer)
