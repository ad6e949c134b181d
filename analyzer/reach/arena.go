package reach

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// bigSlice returns a slice of n T in memory mapped with MAP_POPULATE, and
// the function that unmaps it; T must hold no pointer (the garbage
// collector does not see this memory). A million-element slice of fresh
// Go memory cost more in page faults than the work done in it.
func bigSlice[T any](n int) ([]T, func()) {
	size := n * int(unsafe.Sizeof(*new(T)))
	if size < 64<<10 {
		return make([]T, n), func() {}
	}
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return make([]T, n), func() {}
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&mem[0])), n), func() { unix.Munmap(mem) }
}
