//go:build !amd64

package engine

import "unsafe"

// prefetch is a no-op where no prefetch instruction is wired up.
func prefetch(unsafe.Pointer) {}

// prefetch2 is a no-op where no prefetch instruction is wired up.
func prefetch2(unsafe.Pointer) {}
