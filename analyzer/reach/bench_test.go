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
		blocks[i] = heapBlock{addr: 0x10000000 + uint64(i)*64, end: 0x10000000 + uint64(i)*64 + 32, off: noContents}
	}
	mem := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for off := 0; off < len(mem); off += 8 {
		w := 0x10000000 + r.Uint64N(nBlocks*64)
		binary.LittleEndian.PutUint64(mem[off:], w)
	}
	b.SetBytes(int64(len(mem)))
	c := newClassifier(blocks, nil)
	for b.Loop() {
		clear(c.kinds)
		c.scanRoot(mem)
	}
}

// BenchmarkIndex measures building the index of 100,000 blocks.
func BenchmarkIndex(b *testing.B) {
	blocks := make([]heapBlock, 100000)
	for i := range blocks {
		blocks[i] = heapBlock{addr: 0x10000000 + uint64(i)*64, end: 0x10000000 + uint64(i)*64 + 32, off: noContents}
	}
	for b.Loop() {
		newIndex(blocks)
	}
}

// BenchmarkFloodChain measures the walk of a linked list of a million
// 100-byte blocks (testdata/bench/liveheap.c's heap), from its head.
func BenchmarkFloodChain(b *testing.B) {
	const n, size = 1_000_000, 112 // malloc(100) chunks are 112 bytes apart
	blocks := make([]heapBlock, n)
	arena, free := bigSlice[byte](n * size)
	defer free()
	for i := range blocks {
		addr := 0x10000000 + uint64(i)*size
		blocks[i] = heapBlock{addr: addr, end: addr + 100, next: nextChunkIn(addr, 100), off: uint64(i) * size}
		if i > 0 { // block i points to block i-1
			binary.LittleEndian.PutUint64(arena[i*size:], blocks[i-1].addr)
		}
	}
	head := words(blocks[n-1].addr)
	for b.Loop() {
		c := newClassifier(blocks, arena)
		c.scanRoot(head)
		if c.kinds[0] != Reachable {
			b.Fatal("the walk did not reach the tail")
		}
	}
}
