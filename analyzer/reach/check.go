package reach

import (
	"fmt"
	"sort"
	"time"
)

// Target is what the check needs to know besides the stopped process.
type Target struct {
	// Blocks are the live blocks (Addr, Size; Contents and NextChunk are
	// filled in by Scan), in any order.
	Blocks []Block
	// Suppressed[i]: Blocks[i] was allocated at a suppressed stack.
	Suppressed []bool
	// DeadStackSPs are the last stack addresses of the process's threads
	// that have ended.
	DeadStackSPs []uint64
	// Exclude are paths of mappings never scanned (the ring).
	Exclude []string
}

// Result is the outcome of a scan.
type Result struct {
	Kinds     []Kind // Kinds[i] is the verdict on Target.Blocks[i]
	Threads   int    // threads whose registers and stacks were scanned
	RootBytes uint64 // bytes of root memory scanned
	HeapBytes uint64 // bytes of live blocks read
	Took      time.Duration
}

// rootPiece bounds the root memory read at once.
const rootPiece = 4 << 20

// spanGap joins blocks less than this far apart into one read.
const spanGap = 4096

// Scan reads the memory of the stopped process and classifies t.Blocks.
func Scan(s *Stopped, t Target) (Result, error) {
	began := time.Now()
	maps, err := ReadMaps(s.Pid)
	if err != nil {
		return Result{}, fmt.Errorf("read memory map: %w", err)
	}
	order := make([]int, len(t.Blocks))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return t.Blocks[order[a]].Addr < t.Blocks[order[b]].Addr })
	blocks := make([]Block, len(order))
	var suppressed []bool
	if t.Suppressed != nil {
		suppressed = make([]bool, len(order))
	}
	for k, i := range order {
		blocks[k] = Block{Addr: t.Blocks[i].Addr, Size: t.Blocks[i].Size}
		if suppressed != nil {
			suppressed[k] = t.Suppressed[i]
		}
	}
	res := Result{Threads: len(s.Threads)}
	n, err := readBlocks(s.Pid, blocks)
	if err != nil {
		return Result{}, fmt.Errorf("read live blocks: %w", err)
	}
	res.HeapBytes = n

	c := newClassifier(blocks)
	var sps []uint64
	for _, th := range s.Threads {
		sps = append(sps, th.SP)
		for _, w := range th.Regs {
			c.rootWord(w)
		}
	}
	heapInfo := func(addr uint64) (arena, size, pagesize uint64, ok bool) {
		buf := make([]byte, 40)
		if got, err := readRanges(s.Pid, []remoteRange{{addr, buf}}); err != nil || got < 40 {
			return 0, 0, 0, false
		}
		return le64(buf), le64(buf[16:]), le64(buf[32:]), true
	}
	buf := make([]byte, rootPiece)
	for _, r := range rootRanges(maps, blocks, sps, t.DeadStackSPs, t.Exclude, heapInfo) {
		for a := r.start; a < r.end; a += rootPiece {
			piece := buf[:min(uint64(rootPiece), r.end-a)]
			rs := []remoteRange{{a, piece}}
			if _, err := readRanges(s.Pid, rs); err != nil {
				return Result{}, fmt.Errorf("read %#x-%#x: %w", a, a+uint64(len(piece)), err)
			}
			res.RootBytes += uint64(len(rs[0].buf))
			c.scanRoot(rs[0].buf)
		}
	}
	kinds := c.finish(suppressed)
	res.Kinds = make([]Kind, len(kinds))
	for k, i := range order {
		res.Kinds[i] = kinds[k]
	}
	res.Took = time.Since(began)
	return res, nil
}

// readBlocks reads every block's contents and the allocator's size word
// before it (for NextChunk), joining nearby blocks into one read. blocks
// are sorted by address.
func readBlocks(pid int, blocks []Block) (uint64, error) {
	type span struct {
		start, end uint64
		first, n   int
	}
	var spans []span
	for i, b := range blocks {
		lo, hi := b.Addr-8, b.Addr+b.Size
		if k := len(spans) - 1; k >= 0 && lo <= spans[k].end+spanGap && hi-spans[k].start <= rootPiece {
			spans[k].end = max(spans[k].end, hi)
			spans[k].n++
			continue
		}
		spans = append(spans, span{lo, hi, i, 1})
	}
	rs := make([]remoteRange, len(spans))
	for k, sp := range spans {
		rs[k] = remoteRange{sp.start, make([]byte, sp.end-sp.start)}
	}
	total, err := readRanges(pid, rs)
	if err != nil {
		return 0, err
	}
	for k, sp := range spans {
		mem := rs[k].buf // cut short if part of it was unreadable
		for i := sp.first; i < sp.first+sp.n; i++ {
			b := &blocks[i]
			off := b.Addr - 8 - sp.start
			if off+8 > uint64(len(mem)) {
				continue
			}
			end := min(off+8+b.Size, uint64(len(mem)))
			b.Contents = mem[off+8 : end]
			b.NextChunk = nextChunkIn(b.Addr, b.Size, le64(mem[off:]))
		}
	}
	return uint64(total), nil
}
