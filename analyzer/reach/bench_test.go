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
		blocks[i] = heapBlock{addr: 0x10000000 + uint64(i)*64, size: 32}
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
		blocks[i] = heapBlock{addr: 0x10000000 + uint64(i)*64, size: 32}
	}
	for b.Loop() {
		newIndex(blocks)
	}
}
