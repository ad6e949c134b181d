package reach

import (
	"encoding/binary"
	"sort"
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

// index finds the block that contains an address.
type index struct {
	starts, ends []uint64 // ends: Addr + max(Size, 1)
	next         []uint64
	lo, hi       uint64
}

func newIndex(bs []Block) *index {
	ix := &index{starts: make([]uint64, len(bs)), ends: make([]uint64, len(bs)), next: make([]uint64, len(bs))}
	for i, b := range bs {
		size := b.Size
		if size == 0 {
			size = 1 // malloc(0) returns a unique pointer: a pointer to it counts
		}
		ix.starts[i], ix.ends[i], ix.next[i] = b.Addr, b.Addr+size, b.NextChunk
	}
	if len(bs) > 0 {
		ix.lo, ix.hi = ix.starts[0], ix.ends[len(bs)-1]
		for _, e := range ix.ends {
			if e > ix.hi {
				ix.hi = e
			}
		}
	}
	return ix
}

// find returns the index of the block that w points to or into, or -1.
func (ix *index) find(w uint64) int {
	if w < ix.lo || w >= ix.hi {
		return -1
	}
	// The last block starting at or before w.
	i := sort.Search(len(ix.starts), func(i int) bool { return ix.starts[i] > w }) - 1
	if i < 0 || w >= ix.ends[i] || (w == ix.next[i] && w != ix.starts[i]) {
		return -1
	}
	return i
}

// eachPointer calls fn with the index of every block a word of mem points
// to or into.
func (ix *index) eachPointer(mem []byte, fn func(int)) {
	for off := 0; off+8 <= len(mem); off += 8 {
		w := binary.LittleEndian.Uint64(mem[off:])
		if w < ix.lo || w >= ix.hi {
			continue
		}
		if j := ix.find(w); j >= 0 {
			fn(j)
		}
	}
}

// Classify returns the kind of every block of g (same order), with
// LeakSanitizer's rules: a block is Reachable if a root or a reachable
// block points to it or into it; else Indirect if another unreachable
// block points to it; else Direct. A leaked cycle is all Indirect.
func Classify(g Graph) []Kind {
	c := newClassifier(g.Blocks)
	for _, w := range g.RootWords {
		c.rootWord(w)
	}
	for _, r := range g.Roots {
		c.scanRoot(r)
	}
	return c.finish(g.Suppressed)
}

// classifier walks the pointer graph: roots first (scanRoot, rootWord),
// then finish.
type classifier struct {
	blocks []Block
	ix     *index
	kinds  []Kind
	work   []int
}

func newClassifier(blocks []Block) *classifier {
	return &classifier{blocks: blocks, ix: newIndex(blocks), kinds: make([]Kind, len(blocks))}
}

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
		c.ix.eachPointer(c.blocks[i].Contents, c.mark)
	}
}

// rootWord takes a register's value as a root.
func (c *classifier) rootWord(w uint64) {
	if j := c.ix.find(w); j >= 0 {
		c.mark(j)
	}
}

// scanRoot takes every word of mem as a root.
func (c *classifier) scanRoot(mem []byte) {
	c.ix.eachPointer(mem, c.mark)
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
		if s {
			c.ix.eachPointer(c.blocks[i].Contents, func(j int) {
				if j != i && !suppressedLeak[j] {
					c.mark(j)
				}
			})
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
		c.ix.eachPointer(c.blocks[i].Contents, func(j int) {
			if j != i && kinds[j] == Direct {
				kinds[j] = Indirect
			}
		})
	}
	return kinds
}
