package reach

import (
	"encoding/binary"
	"sort"

	"memscope/shm"
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
//   - a mapping that holds live blocks (glibc's mmapped chunks, a large
//     allocation each): all but the blocks' chunks, which count only if
//     their block is reachable. The kernel merges a chunk's mapping with
//     adjacent anonymous memory of the same protection, which is the
//     program's own (a compiler's garbage-collected pages held the only
//     pointer to a table: skipping the whole mapping made it a leak);
//   - not roots: the brk heap, glibc's per-thread arena heaps, the
//     blocks' chunks above, the stacks glibc keeps for reuse
//     after their threads ended (a thread's last stack address is in its
//     THREAD exit record), the ring, the library's own tables
//     (MS_PRIVATE_MAGIC, or [anon:memscope] where the kernel names them),
//     and the kernel's [vdso]/[vvar] pages.

// libraryMapping is how libmemscope.so names the memory it maps for
// itself (stack hashes, the module table): no heap pointer lives there.
const libraryMapping = "[anon:memscope]"

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
func rootRanges(maps []Mapping, blocks []heapBlock, sps, deadSPs []uint64, exclude []string,
	head func(addr uint64) []byte) []rootRange {
	var out []rootRange
	for _, m := range maps {
		if !m.Readable() || !m.Writable() || m.End <= m.Start {
			continue
		}
		switch m.Path {
		case "[heap]", "[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]":
			continue
		}
		if contains(exclude, m.Path) || m.Path == libraryMapping {
			continue
		}
		if holdsBlock(blocks, m) {
			out = appendOutsideChunks(out, m, blocks)
			continue
		}
		if m.Path == "" && (libraryTable(m, head) || glibcHeap(m, head)) {
			continue
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

// libraryTable says whether m is one of libmemscope.so's own tables
// (MS_PRIVATE_MAGIC and the mapping's size at its start).
func libraryTable(m Mapping, head func(uint64) []byte) bool {
	h := head(m.Start)
	return len(h) >= 16 && le64(h) == shm.PrivateMagic && le64(h[8:]) == m.End-m.Start
}

// glibcHeap says whether m is a glibc arena heap: aligned to
// HEAP_MAX_SIZE, starting with a heap_info {ar_ptr, prev, size,
// mprotect_size, pagesize}.
func glibcHeap(m Mapping, head func(uint64) []byte) bool {
	if m.Start%glibcHeapAlign != 0 {
		return false
	}
	h := head(m.Start)
	if len(h) < 40 {
		return false
	}
	arena, size, pagesize := le64(h), le64(h[16:]), le64(h[32:])
	return arena != 0 && size > 0 && size <= glibcHeapAlign && size%4096 == 0 &&
		pagesize >= 4096 && pagesize&(pagesize-1) == 0
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
// appendOutsideChunks appends the parts of m outside the chunks of the
// blocks that start in it: an mmapped chunk runs from its 16-byte header,
// on the page where the chunk starts, to the end of its block's last page.
func appendOutsideChunks(out []rootRange, m Mapping, blocks []heapBlock) []rootRange {
	const page = 4096
	at := m.Start
	for i := sort.Search(len(blocks), func(i int) bool { return blocks[i].addr >= m.Start }); i < len(blocks) && blocks[i].addr < m.End; i++ {
		b := blocks[i]
		lo := max((b.addr-16)&^(page-1), m.Start)
		hi := min((b.end+page-1)&^(page-1), m.End)
		if lo > at {
			out = append(out, rootRange{at, lo})
		}
		at = max(at, hi)
	}
	if at < m.End {
		out = append(out, rootRange{at, m.End})
	}
	return out
}

func holdsBlock(blocks []heapBlock, m Mapping) bool {
	i := sort.Search(len(blocks), func(i int) bool { return blocks[i].addr >= m.Start })
	return i < len(blocks) && blocks[i].addr < m.End
}

// nextChunkIn returns where glibc puts the header of the chunk after a
// block of size bytes at addr, if that lies inside the block (see
// Block.NextChunk), else 0: a chunk is the request plus 8 bytes of
// header, rounded up to 16, at least 32 (request2size in malloc.c); its
// header is 16 bytes before the block.
func nextChunkIn(addr, size uint64) uint64 {
	chunk := max((size+8+15)&^15, 32)
	next := addr - 16 + chunk
	if next > addr && next < addr+size {
		return next
	}
	return 0
}

func le64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
