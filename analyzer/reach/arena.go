package reach

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// arena holds a copy of every live block's contents, read before the
// walk: pointer chains (a linked list) visit one block at a time, so the
// walk cannot batch its reads, and it needs them all anyway to find the
// indirect leaks. The memory is mapped with MAP_POPULATE: faulting in
// 100 MB page by page cost more than reading it (measured on this VM:
// 270 ms of page faults for 1 M blocks).
type arena struct {
	mem    []byte
	mapped bool
}

// arenaGap joins blocks less than this far apart into one read (the gap
// is read too, but one iovec serves many blocks).
const arenaGap = 256

// readArena reads the contents of blocks (sorted by address) and sets
// each block's off and n.
func readArena(pid int, blocks []heapBlock) (*arena, error) {
	type span struct {
		start, end uint64
		first, n   int
	}
	var spans []span
	var total uint64
	for i, b := range blocks {
		// Whole words: the chunk's usable size covers the rounding.
		lo, hi := b.addr, (b.end+7)&^7
		if k := len(spans) - 1; k >= 0 && lo <= spans[k].end+arenaGap && hi-spans[k].start <= rootPiece {
			total += max(hi, spans[k].end) - spans[k].end
			spans[k].end = max(spans[k].end, hi)
			spans[k].n++
			continue
		}
		spans = append(spans, span{lo, hi, i, 1})
		total += hi - lo
	}
	a := &arena{}
	if total > 0 {
		mem, err := unix.Mmap(-1, 0, int(total), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
		if err != nil {
			mem = make([]byte, total)
		} else {
			a.mapped = true
		}
		a.mem = mem
	}
	rs := make([]remoteRange, len(spans))
	offs := make([]uint64, len(spans))
	var off uint64
	for k, sp := range spans {
		rs[k] = remoteRange{sp.start, a.mem[off : off+sp.end-sp.start]}
		offs[k] = off
		off += sp.end - sp.start
	}
	// Two readers: the target is stopped, so its cores are free, and one
	// process_vm_readv stream does not fill the memory bandwidth
	// (measured: 170 ms for 100 MB with one).
	half := len(rs) / 2
	if total < 4<<20 {
		half = len(rs) // small: one reader
	}
	errs := make(chan error, 1)
	go func() {
		_, err := readRanges(pid, rs[half:])
		errs <- err
	}()
	_, err1 := readRanges(pid, rs[:half])
	if err2 := <-errs; err1 == nil {
		err1 = err2
	}
	if err1 != nil {
		a.free()
		return nil, err1
	}
	for k, sp := range spans {
		got := uint64(len(rs[k].buf)) // cut short if part of it was unreadable
		for i := sp.first; i < sp.first+sp.n; i++ {
			b := &blocks[i]
			b.off = noContents
			if rel := b.addr - sp.start; rel < got {
				// What was not read stays zero in the arena.
				b.off = offs[k] + rel
			}
		}
	}
	return a, nil
}

func (a *arena) free() {
	if a.mapped {
		unix.Munmap(a.mem)
	}
	a.mem = nil
}

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
