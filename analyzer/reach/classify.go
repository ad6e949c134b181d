package reach

import (
	"encoding/binary"
	"unsafe"
)

// Graph is what the classification reads: the live blocks with their
// contents, and the roots.
type Graph struct {
	// Blocks sorted by address, not overlapping.
	Blocks []Block
	// Roots are the contents of root memory (module data, stacks from
	// their stack pointer up, TLS, writable non-heap mappings); words are
	// taken at every 8-byte offset.
	Roots [][]byte
	// RootWords are values held in registers.
	RootWords []uint64
	// Suppressed marks blocks allocated at a suppressed stack: as in
	// LeakSanitizer, what is reachable only from them is not reported
	// (it is classified Reachable); their own kind is computed as usual.
	Suppressed []bool
}

// Block is one live block and what it holds.
type Block struct {
	Addr, Size uint64
	// Contents are the block's bytes as read (shorter if unreadable).
	Contents []byte
	// NextChunk is the address of the allocator's next chunk header when
	// it lies inside the block's requested size, else 0. glibc keeps
	// pointers to free chunk headers (bins, top) in its own data, and a
	// chunk header overlaps the last word of the block before it; such a
	// pointer is bookkeeping, not a reference to the block.
	NextChunk uint64
}

// heapBlock is a Block as the classifier keeps it: no pointer (a million
// slices cost the garbage collector more than the walk).
//
// end is addr + size, or addr + 1 for malloc(0), which returns a unique
// pointer that counts.
type heapBlock struct {
	addr, end, next uint64
}

// wordBytes is how much of the block is scanned: the whole words of its
// requested size, as LSan scans.
func (b *heapBlock) wordBytes() uint64 { return (b.end - b.addr) &^ 7 }

// index finds the block that contains an address. Most words the scan
// looks up are not pointers into the heap, and the scan is the check's
// main cost:
//   - a word outside [lo, hi) is rejected with two compares;
//   - blocks lie in a few dense regions (the brk heap, arena heaps): each
//     region has an array with, per 128-byte bucket, the first block that
//     overlaps it (glibc's smallest chunk is 32 bytes, so a lookup walks
//     at most 4 blocks), built in one pass over the blocks by address;
//   - blocks over largeBlock (mmapped chunks, big buffers) would fill
//     too many buckets: they are kept apart and searched by address.
type index struct {
	blocks   []heapBlock // by address
	lo, hi   uint64
	regions  []region // by address
	large    []int    // indices of large blocks, by address
	granules granuleSet
}

// granuleSet holds the 1 MiB granules of address space that hold any
// block. An interpreter's own arenas lie between the brk heap and the
// mmapped blocks, inside [lo, hi): their many pointers are rejected by
// one lookup in this small table instead of two binary searches.
type granuleSet struct {
	keys []uint64 // granule+1, 0: empty
	n    int
	mask uint64
}

const granuleShift = 20

func (g *granuleSet) add(k uint64) {
	if 2*(g.n+1) > len(g.keys) {
		g.grow()
	}
	for h := (k * 0x9e3779b97f4a7c15 >> 32) & g.mask; ; h = (h + 1) & g.mask {
		switch g.keys[h] {
		case 0:
			g.keys[h] = k + 1
			g.n++
			return
		case k + 1:
			return
		}
	}
}

func (g *granuleSet) grow() {
	old := g.keys
	size := max(64, 2*len(old))
	g.keys, g.mask, g.n = make([]uint64, size), uint64(size-1), 0
	for _, k := range old {
		if k != 0 {
			g.add(k - 1)
		}
	}
}

func (g *granuleSet) has(k uint64) bool {
	if g.n == 0 {
		return false
	}
	for h := (k * 0x9e3779b97f4a7c15 >> 32) & g.mask; ; h = (h + 1) & g.mask {
		switch g.keys[h] {
		case 0:
			return false
		case k + 1:
			return true
		}
	}
}

// addRange adds the granules of [lo, hi).
func (g *granuleSet) addRange(lo, hi uint64) {
	for k := lo >> granuleShift; k <= (hi-1)>>granuleShift; k++ {
		g.add(k)
	}
}

// region is a stretch of address space dense with small blocks.
type region struct {
	base, end uint64  // bucket-aligned
	first     []int32 // per bucket: the first block overlapping it, -1 if none
}

const (
	bucketShift = 7
	largeBlock  = 16 << 10
	// regionGap splits regions: a gap this large between blocks starts a
	// new one (the buckets of a gap cost 4 bytes per 128 bytes).
	regionGap = 1 << 20
)

func newIndex(bs []heapBlock) *index {
	ix := &index{blocks: bs}
	for i := range bs {
		if bs[i].end-bs[i].addr > largeBlock {
			ix.large = append(ix.large, i)
		}
	}
	if len(bs) > 0 {
		ix.lo, ix.hi = bs[0].addr, bs[len(bs)-1].end
		for i := range bs {
			ix.hi = max(ix.hi, bs[i].end)
		}
	}
	// Regions: spans of small blocks with no gap over regionGap.
	var spans [][2]int // [first, last] small block of each region
	for i := range bs {
		if bs[i].end-bs[i].addr > largeBlock {
			continue
		}
		if k := len(spans) - 1; k >= 0 && bs[i].addr < bs[spans[k][1]].end+regionGap {
			spans[k][1] = i
			continue
		}
		spans = append(spans, [2]int{i, i})
	}
	for _, sp := range spans {
		r := region{base: bs[sp[0]].addr >> bucketShift << bucketShift}
		for i := sp[0]; i <= sp[1]; i++ {
			r.end = max(r.end, bs[i].end)
		}
		r.end = (r.end + 1<<bucketShift - 1) >> bucketShift << bucketShift
		r.first = make([]int32, (r.end-r.base)>>bucketShift)
		for k := range r.first {
			r.first[k] = -1
		}
		for i := sp[0]; i <= sp[1]; i++ {
			if bs[i].end-bs[i].addr > largeBlock {
				continue
			}
			// Blocks come by address: the first to claim a bucket is the
			// first block in it.
			for b := (bs[i].addr - r.base) >> bucketShift; b <= (bs[i].end-1-r.base)>>bucketShift; b++ {
				if r.first[b] < 0 {
					r.first[b] = int32(i)
				}
			}
		}
		ix.regions = append(ix.regions, r)
		ix.granules.addRange(r.base, r.end)
	}
	for _, i := range ix.large {
		ix.granules.addRange(bs[i].addr, bs[i].end)
	}
	return ix
}

// find returns the index of the block that w points to or into, or -1.
func (ix *index) find(w uint64) int {
	if w < ix.lo || w >= ix.hi || !ix.granules.has(w>>granuleShift) {
		return -1
	}
	bs := ix.blocks
	if r := ix.region(w); r != nil {
		if j := r.first[(w-r.base)>>bucketShift]; j >= 0 {
			for i := int(j); i < len(bs) && bs[i].addr <= w; i++ {
				if w < bs[i].end {
					return ix.hit(i, w)
				}
			}
		}
	}
	if len(ix.large) == 0 {
		return -1
	}
	// The last large block starting at or before w.
	lo, hi := 0, len(ix.large)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bs[ix.large[m]].addr <= w {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if k := lo - 1; k >= 0 && w < bs[ix.large[k]].end {
		return ix.hit(ix.large[k], w)
	}
	return -1
}

// region returns the region that holds w, or nil.
func (ix *index) region(w uint64) *region {
	rs := ix.regions
	lo, hi := 0, len(rs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if rs[m].base <= w {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo > 0 && w < rs[lo-1].end {
		return &rs[lo-1]
	}
	return nil
}

// hit is block i, unless w is glibc's pointer to the next chunk's header.
func (ix *index) hit(i int, w uint64) int {
	if w == ix.blocks[i].next && w != ix.blocks[i].addr {
		return -1
	}
	return i
}

// Classify returns the kind of every block of g (same order), with
// LeakSanitizer's rules: a block is Reachable if a root or a reachable
// block points to it or into it; else Indirect if another unreachable
// block points to it; else Direct. A leaked cycle is all Indirect.
func Classify(g Graph) []Kind {
	blocks := make([]heapBlock, len(g.Blocks))
	for i, b := range g.Blocks {
		blocks[i] = heapBlock{addr: b.Addr, end: b.Addr + max(b.Size, 1), next: b.NextChunk}
	}
	c := newClassifier(blocks)
	c.readEdges(graphMemory(g.Blocks)) // memory in hand: no error
	for _, w := range g.RootWords {
		c.rootWord(w)
	}
	for _, r := range g.Roots {
		c.scanRoot(r)
	}
	return c.finish(g.Suppressed)
}

// memory reads the target's memory: each range's buf is filled with the
// bytes at its addr and cut to what could be read.
type memory func(rs []remoteRange) error

// processMemory is a process's memory, through process_vm_readv.
func processMemory(pid int) memory {
	return func(rs []remoteRange) error {
		_, err := readRanges(pid, rs)
		return err
	}
}

// graphMemory is the blocks' contents as a Graph gives them: memory
// outside every block's contents reads as zeros (no pointer), as the
// bytes between blocks and past a block's contents do.
func graphMemory(blocks []Block) memory {
	return func(rs []remoteRange) error {
		for k := range rs {
			r := &rs[k]
			clear(r.buf)
			rEnd := r.addr + uint64(len(r.buf))
			for _, b := range blocks {
				bEnd := b.Addr + uint64(len(b.Contents))
				if lo, hi := max(r.addr, b.Addr), min(rEnd, bEnd); lo < hi {
					copy(r.buf[lo-r.addr:hi-r.addr], b.Contents[lo-b.Addr:])
				}
			}
		}
		return nil
	}
}

// classifier walks the pointer graph: the blocks' pointers to each other
// first (readEdges), then the roots (scanRoot, rootWord), then finish.
type classifier struct {
	blocks []heapBlock
	ix     *index
	kinds  []Kind
	work   []int
	// The pointers between blocks: block i points to blocks
	// to[first[i]:first[i+1]] (CSR). Read once, in address order, through
	// one reused buffer: the walk then touches a few MB, not the heap (on
	// this VM the first touch of each page of a heap-sized copy cost more
	// than the walk: 200 ms for 100 MB).
	first []uint32
	to    []int32
	// buf is the scratch buffer reads go through (nil: one is made).
	buf []byte
}

// batchBytes bounds one read of block contents.
const batchBytes = 1 << 20

// spanGap: blocks less than this far apart are read as one range.
const spanGap = 4096

func newClassifier(blocks []heapBlock) *classifier {
	return &classifier{blocks: blocks, ix: newIndex(blocks), kinds: make([]Kind, len(blocks))}
}

// readEdges reads every block's contents (whole words of its requested
// size, as LSan scans) and keeps the blocks they point to. It returns the
// bytes read. (Two goroutines reading half each were measured slower on
// this VM: 370 ms against 310 for 96 MB.)
func (c *classifier) readEdges(read memory) (uint64, error) {
	n := len(c.blocks)
	c.first = make([]uint32, n+1)
	to, total, err := c.readEdgesOf(0, n, read)
	if err != nil {
		return 0, err
	}
	c.to = to
	// A block with nothing to read ends where the one before it does.
	for i := 1; i <= n; i++ {
		c.first[i] = max(c.first[i], c.first[i-1])
	}
	return total, nil
}

// readEdgesOf reads blocks [from, until) through one reused buffer, in
// batches of up to batchBytes and iovMax ranges, and returns their
// pointees; it sets first[i+1] for each block it read, relative to them.
//
// Blocks less than spanGap apart are read as one range, the bytes between
// them included (and not scanned): the kernel pins and walks the pages of
// every range it is given, so a heap of small blocks read one range a
// block paid that a block (bash's 1 100 blocks: 80 us of a 180 us scan).
func (c *classifier) readEdgesOf(from, until int, read memory) ([]int32, uint64, error) {
	var to []int32
	var total uint64
	buf := c.buf
	if buf == nil {
		buf = make([]byte, batchBytes)
	}
	// rs[k] holds (a piece of) blocks held[k].from .. held[k].until-1.
	type blockRun struct{ from, until int }
	var rs []remoteRange
	var held []blockRun
	used := uint64(0) // bytes of buf the ranges in rs take
	flush := func() error {
		if len(rs) == 0 {
			return nil
		}
		if err := read(rs); err != nil {
			return err
		}
		for k, r := range rs {
			readEnd := r.addr + uint64(len(r.buf)) // a failed read cut r.buf short
			for i := held[k].from; i < held[k].until; i++ {
				b := &c.blocks[i]
				lo, hi := max(b.addr, r.addr), min(b.addr+b.wordBytes(), readEnd)
				if hi > lo {
					total += hi - lo
					to = c.ix.appendHits(to, r.buf[lo-r.addr:hi-r.addr])
				}
				c.first[i+1] = uint32(len(to))
			}
		}
		rs, held, used = rs[:0], held[:0], 0
		return nil
	}
	room := func() uint64 { return uint64(len(buf)) - used }
	for i := from; i < until; {
		b := &c.blocks[i]
		// Read what is pending first when the batch is full, or when b
		// does not fit what is left of the buffer but fits all of it.
		if room() == 0 || len(rs) == iovMax || (b.wordBytes() > room() && b.wordBytes() <= uint64(len(buf))) {
			if err := flush(); err != nil {
				return nil, 0, err
			}
		}
		if b.wordBytes() > room() {
			// Larger than the buffer: piece by piece.
			for done := uint64(0); done < b.wordBytes(); {
				if room() == 0 || len(rs) == iovMax {
					if err := flush(); err != nil {
						return nil, 0, err
					}
				}
				piece := min(b.wordBytes()-done, room())
				rs = append(rs, remoteRange{b.addr + done, buf[used : used+piece]})
				held = append(held, blockRun{i, i + 1})
				used += piece
				done += piece
			}
			i++
			continue
		}
		// A run of blocks close together that fits what is left.
		end, j := b.addr+b.wordBytes(), i+1
		for ; j < until; j++ {
			n := &c.blocks[j]
			if n.addr >= end+spanGap || n.addr+n.wordBytes()-b.addr > room() {
				break
			}
			end = max(end, n.addr+n.wordBytes())
		}
		rs = append(rs, remoteRange{b.addr, buf[used : used+end-b.addr]})
		held = append(held, blockRun{i, j})
		used += end - b.addr
		i = j
	}
	if err := flush(); err != nil {
		return nil, 0, err
	}
	return to, total, nil
}

// pointees are the blocks block i points to.
func (c *classifier) pointees(i int) []int32 { return c.to[c.first[i]:c.first[i+1]] }

func (c *classifier) mark(j int) {
	if c.kinds[j] != Reachable {
		c.kinds[j] = Reachable
		c.work = append(c.work, j)
	}
}

// flood marks what the blocks on the work list point to, transitively.
func (c *classifier) flood() {
	for len(c.work) > 0 {
		i := c.work[len(c.work)-1]
		c.work = c.work[:len(c.work)-1]
		for _, j := range c.pointees(i) {
			c.mark(int(j))
		}
	}
}

// markAll marks every block a word of mem points to or into. (The
// scan's inner loop: no callback, one bounds check a word.)
func (c *classifier) markAll(mem []byte) {
	ix := c.ix
	lo, hi := ix.lo, ix.hi
	for _, w := range asWords(mem) {
		if w-lo >= hi-lo { // w < lo || w >= hi, in one compare
			continue
		}
		if j := ix.find(w); j >= 0 {
			c.mark(j)
		}
	}
}

// appendHits appends the index of every block a word of mem points to or
// into.
func (ix *index) appendHits(hits []int32, mem []byte) []int32 {
	lo, hi := ix.lo, ix.hi
	for _, w := range asWords(mem) {
		if w-lo >= hi-lo {
			continue
		}
		if j := ix.find(w); j >= 0 {
			hits = append(hits, int32(j))
		}
	}
	return hits
}

// asWords views mem as native 64-bit words (the target's byte order is
// ours), without a copy when mem is 8-byte aligned, as the arena and the
// root buffers are; a trailing partial word is dropped.
func asWords(mem []byte) []uint64 {
	n := len(mem) / 8
	if n == 0 {
		return nil
	}
	if uintptr(unsafe.Pointer(&mem[0]))%8 != 0 {
		w := make([]uint64, n)
		for i := range w {
			w[i] = binary.LittleEndian.Uint64(mem[8*i:])
		}
		return w
	}
	return unsafe.Slice((*uint64)(unsafe.Pointer(&mem[0])), n)
}

// rootWord takes a register's value as a root.
func (c *classifier) rootWord(w uint64) {
	if j := c.ix.find(w); j >= 0 {
		c.mark(j)
	}
}

// scanRoot takes every word of mem as a root.
func (c *classifier) scanRoot(mem []byte) {
	c.markAll(mem)
	c.flood()
}

// finish classifies what the roots did not reach. suppressed may be nil.
func (c *classifier) finish(suppressed []bool) []Kind {
	c.flood()
	kinds := c.kinds
	// What suppressed leaks hold is not reported: flood from them, but
	// leave their own kind to the rules below.
	suppressedLeak := make([]bool, len(c.blocks))
	for i := range c.blocks {
		if i < len(suppressed) && suppressed[i] && kinds[i] != Reachable {
			suppressedLeak[i] = true
		}
	}
	for i, s := range suppressedLeak {
		if !s {
			continue
		}
		for _, j := range c.pointees(i) {
			if int(j) != i && !suppressedLeak[j] {
				c.mark(int(j))
			}
		}
	}
	c.flood()

	for i := range kinds {
		if kinds[i] != Reachable {
			kinds[i] = Direct
		}
	}
	for i := range c.blocks {
		if kinds[i] == Reachable {
			continue
		}
		for _, j := range c.pointees(i) {
			if int(j) != i && kinds[j] == Direct {
				kinds[j] = Indirect
			}
		}
	}
	return kinds
}
