package engine

import (
	"math/bits"
	"unsafe"
)

// liveBlock is one live allocation as the engine sees it.
type liveBlock struct {
	addr uint64
	ts   uint64 // when it was allocated
	size uint64
	site uint32 // index into proc.sites
}

// liveSlot is the packed form of a liveBlock in the table: 24 bytes.
//
//	meta = size << sizeShift | multiBit? | site
//
// A block whose size or site does not fit is stored with site == siteWide
// and its real values in liveTable.wide. multiBit says that more
// generations of the same address are live (liveTable.gens).
type liveSlot struct {
	addr uint64 // 0: empty (malloc never returns address 0)
	ts   uint64
	meta uint64
}

const (
	siteBits    = 24
	siteMask    = 1<<siteBits - 1
	siteWide    = siteMask
	multiBit    = 1 << siteBits
	sizeShift   = siteBits + 1
	maxPackSize = 1<<(64-sizeShift) - 1

	// maxLoadNum/maxLoadDen: the table grows past 80% occupancy, by half.
	// Occupancy then stays in [53%, 80%]: 30-45 bytes per live block.
	maxLoadNum = 4
	maxLoadDen = 5
	minSlots   = 64
)

type wideKey struct{ addr, ts uint64 }

type wideVal struct {
	size uint64
	site uint32
}

// liveTable maps addresses to live blocks: a dense open-addressing table
// (linear probing, backward-shift deletion, no tombstones), the index
// taken from the high bits of a multiplicative hash scaled to the table
// size, so the size need not be a power of two and can grow by 1.5x.
//
// One address normally has one live generation. Out-of-order arrival can
// make it have several (the free of the older one has not arrived yet):
// the slot holds one, the others are in gens, and a free at t closes the
// newest generation allocated at or before t.
type liveTable struct {
	slots []liveSlot
	used  int // occupied slots
	count int // live blocks, all generations
	gens  map[uint64][]liveBlock
	wide  map[wideKey]wideVal
}

// home is the preferred slot of addr. Blocks of one 256-byte granule get
// consecutive slots (allocators hand out neighbouring addresses one after
// the other, so their entries share cache lines); granules are spread
// by a multiplicative hash.
func (t *liveTable) home(addr uint64) int {
	n := uint64(len(t.slots))
	hi, _ := bits.Mul64((addr>>granuleShift)*0x9e3779b97f4a7c15, n)
	i := hi + (addr>>4)&(1<<(granuleShift-4)-1)
	if i >= n {
		i -= n
	}
	return int(i)
}

const granuleShift = 8

// prefetch starts fetching the home slot of addr into the cache, for an
// insert or remove of addr coming soon.
func (t *liveTable) prefetch(addr uint64) {
	if len(t.slots) > 0 {
		prefetch(unsafe.Pointer(&t.slots[t.home(addr)]))
	}
}

// find returns the slot index of addr, or the empty slot where it would go.
func (t *liveTable) find(addr uint64) (int, bool) {
	i := t.home(addr)
	for {
		a := t.slots[i].addr
		if a == addr {
			return i, true
		}
		if a == 0 {
			return i, false
		}
		i++
		if i == len(t.slots) {
			i = 0
		}
	}
}

func (t *liveTable) pack(b liveBlock) uint64 {
	if b.size > maxPackSize || b.site >= siteWide {
		if t.wide == nil {
			t.wide = make(map[wideKey]wideVal)
		}
		t.wide[wideKey{b.addr, b.ts}] = wideVal{b.size, b.site}
		return siteWide
	}
	return b.size<<sizeShift | uint64(b.site)
}

func (t *liveTable) unpack(s *liveSlot) liveBlock {
	site := uint32(s.meta & siteMask)
	if site == siteWide {
		w := t.wide[wideKey{s.addr, s.ts}]
		return liveBlock{addr: s.addr, ts: s.ts, size: w.size, site: w.site}
	}
	return liveBlock{addr: s.addr, ts: s.ts, size: s.meta >> sizeShift, site: site}
}

// dropWide forgets the wide side entry of a slot being vacated.
func (t *liveTable) dropWide(s *liveSlot) {
	if s.meta&siteMask == siteWide {
		delete(t.wide, wideKey{s.addr, s.ts})
	}
}

func (t *liveTable) grow() {
	n := len(t.slots) * 3 / 2
	if n < minSlots {
		n = minSlots
	}
	old := t.slots
	t.slots = make([]liveSlot, n)
	for i := range old {
		if old[i].addr != 0 {
			j, _ := t.find(old[i].addr)
			t.slots[j] = old[i]
		}
	}
}

// insert adds a live block.
func (t *liveTable) insert(b liveBlock) {
	if (t.used+1)*maxLoadDen > len(t.slots)*maxLoadNum {
		t.grow()
	}
	i, ok := t.find(b.addr)
	t.count++
	if !ok {
		t.slots[i] = liveSlot{addr: b.addr, ts: b.ts, meta: t.pack(b)}
		t.used++
		return
	}
	// Another generation of a live address (out-of-order arrival).
	if t.gens == nil {
		t.gens = make(map[uint64][]liveBlock)
	}
	t.slots[i].meta |= multiBit
	t.gens[b.addr] = append(t.gens[b.addr], b)
}

// remove closes the newest generation of addr allocated at or before ts.
func (t *liveTable) remove(addr, ts uint64) (liveBlock, bool) {
	if len(t.slots) == 0 {
		return liveBlock{}, false
	}
	i, ok := t.find(addr)
	if !ok {
		return liveBlock{}, false
	}
	s := &t.slots[i]
	if s.meta&multiBit == 0 {
		if s.ts > ts {
			return liveBlock{}, false
		}
		b := t.unpack(s)
		t.dropWide(s)
		t.deleteSlot(i)
		t.count--
		return b, true
	}
	main := t.unpack(s)
	extra := t.gens[addr]
	best := -1 // -1: none, len(extra): the slot's generation
	var bestTS uint64
	if main.ts <= ts {
		best, bestTS = len(extra), main.ts
	}
	for k, g := range extra {
		if g.ts <= ts && (best < 0 || g.ts > bestTS) {
			best, bestTS = k, g.ts
		}
	}
	if best < 0 {
		return liveBlock{}, false
	}
	t.count--
	var b liveBlock
	if best == len(extra) {
		// Replace the slot's generation by the last extra one.
		b = main
		t.dropWide(s)
		last := extra[len(extra)-1]
		extra = extra[:len(extra)-1]
		s.ts = last.ts
		s.meta = t.pack(last) | multiBit
	} else {
		b = extra[best]
		extra = append(extra[:best], extra[best+1:]...)
	}
	if len(extra) == 0 {
		delete(t.gens, addr)
		s.meta &^= multiBit
	} else {
		t.gens[addr] = extra
	}
	return b, true
}

// deleteSlot empties slot i, shifting back the entries of its probe run
// that would otherwise become unreachable.
func (t *liveTable) deleteSlot(i int) {
	n := len(t.slots)
	j := i
	for {
		j++
		if j == n {
			j = 0
		}
		if t.slots[j].addr == 0 {
			break
		}
		k := t.home(t.slots[j].addr)
		// The entry at j may stay if its home lies cyclically in (i, j].
		if i <= j {
			if i < k && k <= j {
				continue
			}
		} else if i < k || k <= j {
			continue
		}
		t.slots[i] = t.slots[j]
		i = j
	}
	t.slots[i] = liveSlot{}
	t.used--
}

// each calls fn for every live block, all generations.
func (t *liveTable) each(fn func(liveBlock)) {
	for i := range t.slots {
		s := &t.slots[i]
		if s.addr == 0 {
			continue
		}
		fn(t.unpack(s))
		if s.meta&multiBit != 0 {
			for _, g := range t.gens[s.addr] {
				fn(g)
			}
		}
	}
}

// clone returns an independent copy (fork).
func (t *liveTable) clone() liveTable {
	c := liveTable{used: t.used, count: t.count}
	c.slots = append([]liveSlot(nil), t.slots...)
	if len(t.gens) > 0 {
		c.gens = make(map[uint64][]liveBlock, len(t.gens))
		for a, g := range t.gens {
			c.gens[a] = append([]liveBlock(nil), g...)
		}
	}
	if len(t.wide) > 0 {
		c.wide = make(map[wideKey]wideVal, len(t.wide))
		for k, v := range t.wide {
			c.wide[k] = v
		}
	}
	return c
}
