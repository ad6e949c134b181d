package reach

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Extent is a live block: its address and requested size.
type Extent struct{ Addr, Size uint64 }

// Target is what the check needs to know besides the stopped process.
type Target struct {
	// Blocks are the live blocks, best sorted by address (as the engine
	// hands them over; else Scan sorts a copy).
	Blocks []Extent
	// Suppressed[i]: Blocks[i] was allocated at a suppressed stack.
	Suppressed []bool
	// Loader[i]: Blocks[i] was allocated by the dynamic linker (the DTVs
	// and dynamic TLS of every thread, the loader's tables). Such blocks
	// are reachable, as LeakSanitizer has them: the DTV of an ended
	// thread is only pointed to from its cached stack, which is no root.
	Loader []bool
	// DeadStackSPs are the last stack addresses of the process's threads
	// that have ended.
	DeadStackSPs []uint64
	// Exclude are paths of mappings never scanned (the ring).
	Exclude []string
	// Scratch is the read buffer to use (nil: one for this scan). A
	// session checking many processes keeps one: on this VM populating a
	// fresh 1 MiB buffer costs about 2 ms, as much as a small process's
	// whole scan.
	Scratch *Scratch
}

// Scratch is a read buffer for Scan, in populated memory, reusable by
// one scan at a time. It grows to what the scans read at once, up to
// batchBytes: populating the whole megabyte at the first check cost a
// short program (`ls`, 150 KB read) 250 us of its wait at exit.
type Scratch struct {
	buf  []byte
	free func()
}

// minScratch is the smallest buffer a Scratch maps.
const minScratch = 64 << 10

// NewScratch returns an empty scratch buffer; Close unmaps it.
func NewScratch() *Scratch { return &Scratch{} }

// grow makes the buffer at least n bytes (a power of two from
// minScratch, at most batchBytes) and returns it.
func (s *Scratch) grow(n uint64) []byte {
	size := uint64(minScratch)
	for size < n && size < batchBytes {
		size *= 2
	}
	if uint64(len(s.buf)) < size {
		s.Close()
		s.buf, s.free = bigSlice[byte](int(size))
	}
	return s.buf
}

// Close unmaps the buffer.
func (s *Scratch) Close() {
	if s == nil {
		return
	}
	if s.free != nil {
		s.free()
	}
	s.buf, s.free = nil, nil
}

// Result is the outcome of a scan.
type Result struct {
	Kinds     []Kind // Kinds[i] is the verdict on Target.Blocks[i]
	Threads   int    // threads whose registers and stacks were scanned
	RootBytes uint64 // bytes of root memory scanned
	HeapBytes uint64 // bytes of live blocks (read as far as the walk needed)
	Took      time.Duration
}

// Scan reads the memory of the stopped process and classifies t.Blocks.
func Scan(s *Stopped, t Target) (Result, error) {
	began := time.Now()
	res := Result{Threads: len(s.Threads)}
	maps, err := ReadWritableMaps(s.Pid)
	if err != nil {
		return Result{}, fmt.Errorf("read memory map: %w", err)
	}
	ext, suppressed, loader := t.Blocks, t.Suppressed, t.Loader
	var order []int
	if !slices.IsSortedFunc(ext, func(a, b Extent) int { return cmp.Compare(a.Addr, b.Addr) }) {
		order = make([]int, len(ext))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return cmp.Compare(t.Blocks[a].Addr, t.Blocks[b].Addr) })
		ext = make([]Extent, len(order))
		if t.Suppressed != nil {
			suppressed = make([]bool, len(order))
		}
		if t.Loader != nil {
			loader = make([]bool, len(order))
		}
		for k, i := range order {
			ext[k] = t.Blocks[i]
			if suppressed != nil {
				suppressed[k] = t.Suppressed[i]
			}
			if loader != nil {
				loader[k] = t.Loader[i]
			}
		}
	}
	blocks, freeBlocks := bigSlice[heapBlock](len(ext))
	defer freeBlocks()
	for i, e := range ext {
		blocks[i] = heapBlock{addr: e.Addr, end: e.Addr + max(e.Size, 1), next: nextChunkIn(e.Addr, e.Size)}
	}
	c := newClassifier(blocks)
	// One scratch buffer for every read, in populated memory: on this VM
	// the page faults of a fresh 1 MiB buffer cost 2.5 ms, more than
	// reading half a megabyte of blocks through it.
	scratch := t.Scratch
	if scratch == nil {
		scratch = NewScratch()
		defer scratch.Close()
	}
	var blockBytes uint64
	for i := range blocks {
		blockBytes += blocks[i].wordBytes()
	}
	c.buf = scratch.grow(blockBytes)
	if res.HeapBytes, err = c.readEdges(processMemory(s.Pid)); err != nil {
		return Result{}, fmt.Errorf("read live blocks: %w", err)
	}
	var sps []uint64
	for _, th := range s.Threads {
		sps = append(sps, th.SP)
		for _, w := range th.Regs {
			c.rootWord(w)
		}
	}
	head := mappingHeads(s.Pid, maps)
	pm := openPageMap(s.Pid)
	defer pm.close()
	var runs []rootRange // the root memory that holds data
	var rootBytes uint64
	add := func(lo, hi uint64) error {
		if hi > lo {
			runs = append(runs, rootRange{lo, hi})
			rootBytes += hi - lo
		}
		return nil
	}
	for _, r := range rootRanges(maps, blocks, sps, t.DeadStackSPs, t.Exclude, head) {
		// A stack range starts at its SP: take its first page from there.
		first := min((r.start+4095)&^4095, r.end)
		add(r.start, first)
		pm.populated(first, r.end, add)
	}
	// Read in pieces that fit the buffer.
	c.buf = scratch.grow(rootBytes)
	piece := uint64(len(c.buf))
	var pieces []rootRange
	for _, r := range runs {
		for a := r.start; a < r.end; a += piece {
			pieces = append(pieces, rootRange{a, min(a+piece, r.end)})
		}
	}
	n, err := scanRoots(s.Pid, pieces, c)
	if err != nil {
		return Result{}, err
	}
	res.RootBytes = n
	for i, l := range loader {
		if l {
			c.mark(i)
		}
	}
	kinds := c.finish(suppressed)
	res.Kinds = kinds
	if order != nil {
		res.Kinds = make([]Kind, len(kinds))
		for k, i := range order {
			res.Kinds[i] = kinds[k]
		}
	}
	res.Took = time.Since(began)
	return res, nil
}

// scanRoots reads the pieces of root memory, none larger than c.buf, and
// scans them as roots, reading as many pieces as fit in c.buf with one
// process_vm_readv (populated runs are often a page or two: one call per
// run cost more than the reading).
func scanRoots(pid int, pieces []rootRange, c *classifier) (uint64, error) {
	buf := c.buf
	var total uint64
	for len(pieces) > 0 {
		var rs []remoteRange
		used := uint64(0)
		for len(pieces) > 0 && len(rs) < iovMax {
			p := pieces[0]
			if size := p.end - p.start; used+size > uint64(len(buf)) {
				if len(rs) > 0 {
					break
				}
				p.end = p.start + uint64(len(buf)) // cannot happen: pieces fit the buffer
			}
			rs = append(rs, remoteRange{p.start, buf[used : used+p.end-p.start]})
			used += p.end - p.start
			pieces = pieces[1:]
		}
		if _, err := readRanges(pid, rs); err != nil {
			return total, fmt.Errorf("read %#x-%#x: %w", rs[0].addr, rs[len(rs)-1].addr+uint64(len(rs[len(rs)-1].buf)), err)
		}
		for _, r := range rs {
			total += uint64(len(r.buf))
			c.markAll(r.buf)
		}
		c.flood()
	}
	return total, nil
}

// mappingHeads reads the first bytes of every anonymous mapping, which
// say whose it is (rootRanges: the library's tables, glibc's arena
// heaps), in one process_vm_readv, and returns the lookup by address
// (nil for an address not read or not readable).
func mappingHeads(pid int, maps []Mapping) func(addr uint64) []byte {
	var rs []remoteRange
	for _, m := range maps {
		if m.Path == "" {
			rs = append(rs, remoteRange{m.Start, make([]byte, 40)})
		}
	}
	if _, err := readRanges(pid, rs); err != nil {
		rs = nil
	}
	return func(addr uint64) []byte {
		i, ok := slices.BinarySearchFunc(rs, addr, func(r remoteRange, a uint64) int { return cmp.Compare(r.addr, a) })
		if !ok {
			return nil
		}
		return rs[i].buf
	}
}
