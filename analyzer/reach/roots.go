package reach

import (
	"encoding/binary"
	"sort"
)

// What memory is a root (DESIGN.md §6.1): writable memory of the process
// that is not the heap, not the ring, not dead stack frames.
//
//   - module data and bss, static TLS (in a thread's stack mapping or, for
//     the main thread, in memory the loader mapped), the allocator's own
//     globals (stdio's FILE objects point to their buffers), and any
//     writable mapping the program made itself (CPython's arenas): whole;
//   - a mapping that holds a thread's stack pointer: from the lowest such
//     pointer up (frames below it are dead);
//   - not roots: the brk heap, glibc's per-thread arena heaps and any
//     mapping that holds a live block (an mmapped chunk: its contents count
//     only if the block is reachable), the stacks glibc keeps for reuse
//     after their threads ended (a thread's last stack address is in its
//     THREAD exit record), the ring, and the kernel's [vdso]/[vvar] pages.

// rootRange is a range of the target's memory to scan as a root.
type rootRange struct{ start, end uint64 }

// glibcHeapAlign is HEAP_MAX_SIZE on 64-bit glibc: non-main arenas live in
// mappings aligned to it that start with a heap_info.
const glibcHeapAlign = 64 << 20

// rootRanges picks the root ranges among maps. blocks are sorted by
// address; sps are the stack pointers of the live threads, deadSPs the
// last stack addresses of ended threads; exclude are paths never scanned
// (the ring). heapInfo reads the first words of a mapping, to recognise a
// glibc arena heap.
func rootRanges(maps []Mapping, blocks []Block, sps, deadSPs []uint64, exclude []string,
	heapInfo func(addr uint64) (arena, size, pagesize uint64, ok bool)) []rootRange {
	var out []rootRange
	for _, m := range maps {
		if !m.Readable() || !m.Writable() || m.End <= m.Start {
			continue
		}
		switch m.Path {
		case "[heap]", "[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]":
			continue
		}
		if contains(exclude, m.Path) || holdsBlock(blocks, m) {
			continue
		}
		if m.Start%glibcHeapAlign == 0 {
			if arena, size, pagesize, ok := heapInfo(m.Start); ok && arena != 0 &&
				size > 0 && size <= glibcHeapAlign && size%4096 == 0 &&
				pagesize >= 4096 && pagesize&(pagesize-1) == 0 {
				continue
			}
		}
		start := m.End
		for _, sp := range sps {
			if m.Contains(sp) && sp < start {
				start = sp
			}
		}
		if start == m.End && anyIn(deadSPs, m) {
			continue // a stack kept for reuse: dead frames only
		}
		if start == m.End {
			start = m.Start
		}
		out = append(out, rootRange{start &^ 7, m.End})
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s && s != "" {
			return true
		}
	}
	return false
}

func anyIn(addrs []uint64, m Mapping) bool {
	for _, a := range addrs {
		if m.Contains(a) {
			return true
		}
	}
	return false
}

// holdsBlock says whether a live block starts in m (blocks sorted).
func holdsBlock(blocks []Block, m Mapping) bool {
	i := sort.Search(len(blocks), func(i int) bool { return blocks[i].Addr >= m.Start })
	return i < len(blocks) && blocks[i].Addr < m.End
}

// nextChunkIn returns the address of the next malloc chunk's header if it
// lies inside the block's requested size (see Block.NextChunk), from the
// chunk's size word (the 8 bytes before the block).
func nextChunkIn(addr, size, sizeWord uint64) uint64 {
	const isMmapped = 0x2
	if sizeWord&isMmapped != 0 || sizeWord < 16 {
		return 0
	}
	next := addr - 16 + sizeWord&^7
	if next > addr && next < addr+size {
		return next
	}
	return 0
}

func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
