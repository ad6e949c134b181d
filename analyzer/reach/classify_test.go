package reach

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// words lays out 64-bit words as memory.
func words(ws ...uint64) []byte {
	b := make([]byte, 0, 8*len(ws))
	for _, w := range ws {
		b = binary.LittleEndian.AppendUint64(b, w)
	}
	return b
}

func TestClassify(t *testing.T) {
	// Blocks at 0x1000, 0x2000, 0x3000, 0x4000 (32 bytes each); what each
	// holds is set per case.
	blocks := func(contents ...[]byte) []Block {
		out := make([]Block, len(contents))
		for i, c := range contents {
			out[i] = Block{Addr: uint64(0x1000 * (i + 1)), Size: 32, Contents: c}
		}
		return out
	}
	none := words(0, 0, 0, 0)
	tests := []struct {
		name string
		g    Graph
		want []Kind
	}{
		{"nothing points anywhere", Graph{Blocks: blocks(none, none)}, []Kind{Direct, Direct}},
		{"a root word points to the start", Graph{Blocks: blocks(none, none), Roots: [][]byte{words(7, 0x2000)}}, []Kind{Direct, Reachable}},
		{"an interior pointer counts", Graph{Blocks: blocks(none), Roots: [][]byte{words(0x1018)}}, []Kind{Reachable}},
		{"one past the end does not", Graph{Blocks: blocks(none), Roots: [][]byte{words(0x1020)}}, []Kind{Direct}},
		{"a register", Graph{Blocks: blocks(none), RootWords: []uint64{0x1008}}, []Kind{Reachable}},
		{"reachable through a block", Graph{Blocks: blocks(words(0x2000), words(0x3000), none), Roots: [][]byte{words(0x1000)}},
			[]Kind{Reachable, Reachable, Reachable}},
		{"a lost list: head direct, rest indirect", Graph{Blocks: blocks(words(0x2000), words(0x3000), none)},
			[]Kind{Direct, Indirect, Indirect}},
		{"a lost cycle is all indirect", Graph{Blocks: blocks(words(0x2000), words(0x1000))}, []Kind{Indirect, Indirect}},
		{"a self pointer does not count", Graph{Blocks: blocks(words(0x1000))}, []Kind{Direct}},
		{"what a suppressed leak holds is not reported", Graph{Blocks: blocks(words(0x2000), words(0x3000), none), Suppressed: []bool{true, false, false}},
			[]Kind{Direct, Reachable, Reachable}},
		{"glibc's next-chunk header pointer is not a reference",
			Graph{Blocks: []Block{{Addr: 0x1000, Size: 24, Contents: make([]byte, 24), NextChunk: 0x1010}}, Roots: [][]byte{words(0x1010)}},
			[]Kind{Direct}},
		{"zero-size block: a pointer to its start counts",
			Graph{Blocks: []Block{{Addr: 0x1000, Size: 0}}, Roots: [][]byte{words(0x1000)}}, []Kind{Reachable}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Classify(tc.g))
		})
	}
}

func TestNextChunkIn(t *testing.T) {
	tests := []struct{ size, want uint64 }{
		{24, 0x1010},  // chunk 32: the next header is 16 bytes in, inside 24
		{16, 0},       // chunk 32 too, but 16 bytes in is past the request
		{100, 0x1060}, // chunk 112: 96 bytes in, inside 100
		{104, 0x1060}, // chunk 112 (104+8 = 112)
		{105, 0},      // chunk 128: 112 bytes in is past the request
		{120, 0x1070}, // chunk 128: 112 bytes in, inside 120
		{96, 0},       // chunk 112: 96 bytes in is the end of the request
		{0, 0},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, nextChunkIn(0x1000, tc.size), "malloc(%d)", tc.size)
	}
}

func TestParseMaps(t *testing.T) {
	maps, err := ParseMaps([]byte("55d0c2a00000-55d0c2a01000 r--p 00000000 08:01 1234  /usr/bin/my prog\n" +
		"55d0c3000000-55d0c3021000 rw-p 00000000 00:00 0                          [heap]\n" +
		"7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n"))
	require.NoError(t, err)
	assert.Equal(t, []Mapping{
		{Start: 0x55d0c2a00000, End: 0x55d0c2a01000, Perms: "r--p", Path: "/usr/bin/my prog"},
		{Start: 0x55d0c3000000, End: 0x55d0c3021000, Perms: "rw-p", Path: "[heap]"},
		{Start: 0x7f0000000000, End: 0x7f0000001000, Perms: "rw-p", Path: ""},
	}, maps)
	_, err = ParseMaps([]byte("zzz r--p\n"))
	assert.EqualError(t, err, `maps line 1: "zzz r--p": want at least 5 fields`)
}

func TestIndexFind(t *testing.T) {
	// Small blocks in two regions far apart, a large block between them,
	// and a pointer-rich gap (an interpreter's arena) with no block.
	blocks := []heapBlock{
		{addr: 0x1000, end: 0x1018},
		{addr: 0x1020, end: 0x1021}, // malloc(0)
		{addr: 0x1030, end: 0x1090, next: 0x1080},
		{addr: 0x7f0000000000, end: 0x7f0000000000 + 32<<20},
		{addr: 0x7fff00000000, end: 0x7fff00000010},
	}
	ix := newIndex(blocks)
	tests := []struct {
		w    uint64
		want int
	}{
		{0xfff, -1}, {0x1000, 0}, {0x1017, 0}, {0x1018, -1}, {0x1020, 1}, {0x1021, -1},
		{0x1030, 2}, {0x1080, -1}, {0x1088, 2}, {0x1090, -1},
		{0x7f0000000000 + 5<<20, 3}, {0x7f0000000000 + 32<<20, -1},
		{0x7f8000000000, -1}, // the gap
		{0x7fff00000008, 4}, {0x7fff00000010, -1},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, ix.find(tc.w), "%#x", tc.w)
	}
}

// TestAppendOutsideChunks: a mapping that holds mmapped chunks is a root
// but for the chunks, from the page of each block's 16-byte header to the
// end of its last page.
func TestAppendOutsideChunks(t *testing.T) {
	const m0, m1 = 0x100000, 0x200000
	blk := func(addr, size uint64) heapBlock { return heapBlock{addr: addr, end: addr + size} }
	for _, tc := range []struct {
		name   string
		blocks []heapBlock
		want   []rootRange
	}{
		{"chunk alone", []heapBlock{blk(m0+16, m1-m0-16)}, nil},
		{"program's page below", []heapBlock{blk(m0+0x1000+16, 0x20000)}, []rootRange{{m0, m0 + 0x1000}, {m0 + 0x22000, m1}}},
		{"block ends mid page", []heapBlock{blk(m0+16, 0x100)}, []rootRange{{m0 + 0x1000, m1}}},
		{"two chunks", []heapBlock{blk(m0+16, 0x2000), blk(m0+0x5000+16, 0x1000)}, []rootRange{{m0 + 0x3000, m0 + 0x5000}, {m0 + 0x7000, m1}}},
		{"blocks of other mappings", []heapBlock{blk(m0-0x2000, 0x100), blk(m0+0x10, 0x10), blk(m1+16, 0x100)}, []rootRange{{m0 + 0x1000, m1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := appendOutsideChunks(nil, Mapping{Start: m0, End: m1}, tc.blocks)
			assert.Equal(t, tc.want, got)
		})
	}
}

// TestReadEdgesInSpans: blocks close together are read as one range and
// far apart as two; a block larger than the buffer is read in pieces; only
// the words of each block's requested size are edges, not the bytes
// between blocks that the range holds; a read cut short loses the edges
// of the blocks past the cut only.
func TestReadEdgesInSpans(t *testing.T) {
	const base = 0x10000
	mem := make([]byte, 4<<20) // the target's memory from base
	put := func(addr, w uint64) { binary.LittleEndian.PutUint64(mem[addr-base:], w) }
	blk := func(addr, size uint64) heapBlock { return heapBlock{addr: addr, end: addr + size} }
	blocks := []heapBlock{
		blk(base+0x00, 24),          // 0: points to 1
		blk(base+0x20, 40),          // 1: points to 3 past its 40 bytes (slack)
		blk(base+0x60, 16),          // 2: a pointer to 0 in the gap after it
		blk(base+0x2000, 32),        // 3: 8 KiB on: a range of its own; points to 2
		blk(base+0x3000, 1<<20+512), // 4: larger than the buffer; points to 0 at its end
		blk(base+0x3000+1<<20+1024, 64),
	}
	put(base+0x08, base+0x20)
	put(base+0x20+40, base+0x2000) // slack of block 1
	put(base+0x70, base)           // gap after block 2
	put(base+0x2008, base+0x60)
	put(base+0x3000+1<<20+504, base)
	read := func(cutAt uint64, ranges *[][2]uint64) memory {
		return func(rs []remoteRange) error {
			for k := range rs {
				r := &rs[k]
				*ranges = append(*ranges, [2]uint64{r.addr, uint64(len(r.buf))})
				n := copy(r.buf, mem[r.addr-base:])
				if r.addr+uint64(n) > cutAt {
					n = int(max(cutAt, r.addr) - r.addr)
				}
				r.buf = r.buf[:n]
			}
			return nil
		}
	}
	edges := func(c *classifier) [][]int32 {
		out := make([][]int32, len(c.blocks))
		for i := range c.blocks {
			out[i] = c.pointees(i)
		}
		return out
	}

	var ranges [][2]uint64
	c := newClassifier(slices.Clone(blocks))
	c.buf = make([]byte, batchBytes)
	total, err := c.readEdges(read(^uint64(0), &ranges))
	require.NoError(t, err)
	assert.Equal(t, [][]int32{{1}, {}, {}, {2}, {0}, {}}, edges(c))
	assert.Equal(t, uint64(24+40+16+32+(1<<20+512)+64), total, "block bytes, not the gaps")
	assert.Equal(t, [][2]uint64{
		{base, 0x70},                            // blocks 0-2 and the gaps between them
		{base + 0x2000, 32},                     // block 3
		{base + 0x3000, batchBytes - 0x70 - 32}, // block 4, first piece: the rest of the buffer
		{base + 0x3000 + batchBytes - 0x70 - 32, 1<<20 + 512 - (batchBytes - 0x70 - 32)},
		{base + 0x3000 + 1<<20 + 1024, 64}, // block 5
	}, ranges)

	// Memory unreadable from block 1's middle: block 0 keeps its edge.
	ranges = nil
	c = newClassifier(slices.Clone(blocks[:3]))
	total, err = c.readEdges(read(base+0x30, &ranges))
	require.NoError(t, err)
	assert.Equal(t, [][]int32{{1}, {}, {}}, edges(c))
	assert.Equal(t, uint64(24+0x10), total)

	// A 48-byte buffer: block 3 does not fit what block 0 left of it but
	// fits all of it, so block 0 is read first and block 3 whole after.
	ranges = nil
	c = newClassifier([]heapBlock{blocks[0], blocks[3]})
	c.buf = make([]byte, 48)
	_, err = c.readEdges(read(^uint64(0), &ranges))
	require.NoError(t, err)
	assert.Equal(t, [][2]uint64{{base, 24}, {base + 0x2000, 32}}, ranges)
}

// TestScratchGrows: the scratch buffer is sized to what a scan reads at
// once, in powers of two from minScratch up to batchBytes, and never
// shrinks.
func TestScratchGrows(t *testing.T) {
	s := NewScratch()
	defer s.Close()
	for _, tc := range []struct{ need, want uint64 }{
		{0, minScratch},
		{minScratch, minScratch},
		{100 << 10, 128 << 10},
		{40 << 10, 128 << 10}, // kept
		{5 << 20, batchBytes}, // at most batchBytes
		{1, batchBytes},
	} {
		assert.Len(t, s.grow(tc.need), int(tc.want), "need %d", tc.need)
	}
	s.Close()
	assert.Len(t, s.grow(1), minScratch, "mapped again after Close")
}
