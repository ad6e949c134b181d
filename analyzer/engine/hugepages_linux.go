package engine

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePageSize is the size of a transparent huge page on x86-64 and arm64
// (with 4 KiB pages).
const hugePageSize = 2 << 20

// adviseHugePages asks the kernel to back the 2 MiB-aligned part of
// [p, p+n) with transparent huge pages, where its THP setting is
// "madvise" (the default of many distributions; the Go runtime does not
// ask for its heap). Call it on a fresh allocation, before its pages are
// touched. A large live table is read and written at random: with 4 KiB
// pages every first touch is a page fault (12 us each on the VM measured:
// 0.18 s for a 60 MB table, and every growth allocates a larger one) and
// nearly every access a TLB miss. Best effort: errors are ignored.
func adviseHugePages(p unsafe.Pointer, n uintptr) {
	base := uintptr(p)
	start := (base + hugePageSize - 1) &^ (hugePageSize - 1)
	end := (base + n) &^ (hugePageSize - 1)
	if end <= start {
		return
	}
	b := unsafe.Slice((*byte)(unsafe.Add(p, start-base)), end-start)
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
}
