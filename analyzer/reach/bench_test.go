package reach

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// BenchmarkScanRoot measures the scan of root memory full of pointers
// (an interpreter's arenas): 1 MiB of words, each pointing into the
// range of 100,000 live blocks (half of them into a block, half into the
// gaps between).
func BenchmarkScanRoot(b *testing.B) {
	const nBlocks = 100000
	blocks := make([]heapBlock, nBlocks)
	for i := range blocks {
		blocks[i] = heapBlock{addr: 0x10000000 + uint64(i)*64, end: 0x10000000 + uint64(i)*64 + 32}
	}
	mem := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for off := 0; off < len(mem); off += 8 {
		w := 0x10000000 + r.Uint64N(nBlocks*64)
		binary.LittleEndian.PutUint64(mem[off:], w)
	}
	b.SetBytes(int64(len(mem)))
	c := newClassifier(blocks)
	c.first = make([]uint32, nBlocks+1) // no pointer between blocks
	for b.Loop() {
		clear(c.kinds)
		c.scanRoot(mem)
	}
}

// BenchmarkIndex measures building the index of 100,000 blocks.
func BenchmarkIndex(b *testing.B) {
	blocks := make([]heapBlock, 100000)
	for i := range blocks {
		blocks[i] = heapBlock{addr: 0x10000000 + uint64(i)*64, end: 0x10000000 + uint64(i)*64 + 32}
	}
	for b.Loop() {
		newIndex(blocks)
	}
}

// BenchmarkChain measures reading the pointers of a million 100-byte
// blocks (testdata/bench/liveheap.c's heap: each points to the one
// before) and walking the list from its head.
func BenchmarkChain(b *testing.B) {
	const n, stride = 1_000_000, 112 // malloc(100) chunks are 112 bytes apart
	const base = 0x10000000
	blocks := make([]heapBlock, n)
	heap := make([]byte, n*stride)
	for i := range blocks {
		addr := base + uint64(i)*stride
		blocks[i] = heapBlock{addr: addr, end: addr + 100, next: nextChunkIn(addr, 100)}
		if i > 0 { // block i points to block i-1
			binary.LittleEndian.PutUint64(heap[i*stride:], blocks[i-1].addr)
		}
	}
	read := func(rs []remoteRange) error {
		for k := range rs {
			rs[k].buf = rs[k].buf[:copy(rs[k].buf, heap[rs[k].addr-base:])]
		}
		return nil
	}
	head := words(blocks[n-1].addr)
	for b.Loop() {
		c := newClassifier(blocks)
		if _, err := c.readEdges(read); err != nil {
			b.Fatal(err)
		}
		c.scanRoot(head)
		if c.kinds[0] != Reachable {
			b.Fatal("the walk did not reach the tail")
		}
	}
}
