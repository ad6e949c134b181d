package engine

import (
	"math/bits"
	"sort"
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
	addr uint64
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
	// Occupancy then stays in [53%, 80%]: 32-48 bytes per live block.
	maxLoadNum = 4
	maxLoadDen = 5
	minGroups  = 16
)

type wideKey struct{ addr, ts uint64 }

type wideVal struct {
	size uint64
	site uint32
}

// liveTable maps addresses to live blocks: open addressing over groups of
// groupSlots slots, probed group by group, in the manner of Folly's F14
// tables. The table is built for the engine's two operations, an insert
// of an address not in it and the removal of one that is, each mostly
// costing one look at a header word and one slot:
//
//   - A group is 128 bytes, two cache lines: a header and 5 slots of 24
//     bytes. The header holds a tag byte per slot (0: empty, else 0x80 |
//     7 bits of the address's hash) and an overflow count.
//   - An address's home group is taken from the high bits of a
//     multiplicative hash (homeOf), scaled to the number of groups (so
//     that count need not be a power of two and can grow by 1.5x). An
//     insert takes the first free slot from the home group on.
//   - Invariant: a group's overflow count is the number of entries whose
//     probe passed it (home group at or before it, slot in a group after
//     it), saturating at 255 (then never decremented). So a lookup that
//     does not find its address in a group with count 0 can stop: no
//     entry with its home there or earlier lies further on. Removal
//     empties the slot and decrements the counts on its path; nothing
//     moves, no tombstones are left.
//   - Lookups compare the tag bytes of a group at once (SWAR) and load
//     only the slots whose tag matches, about one per lookup. Linear
//     probing with backward-shift deletion compared, rehashed and moved
//     several slots per removal, each step a data-dependent branch: in a
//     table that fits the caches it cost twice as much
//     (BenchmarkLiveTableChurn).
//
// One address normally has one live generation. Out-of-order arrival can
// make it have several (the free of the older one has not arrived yet):
// the slot holds one, the others are in gens, and a free at t closes the
// newest generation allocated at or before t (unless that is another
// thread's reuse stamped early: reuse.go).
type liveTable struct {
	groups []liveGroup
	used   int // occupied slots
	count  int // live blocks, all generations
	gens   map[uint64][]liveBlock
	wide   map[wideKey]wideVal
}

// groupSlots is the number of slots of a liveGroup.
const groupSlots = 5

// liveGroup is 128 bytes: the header, with the tags in bytes 0-4 and the
// overflow count in byte 6, and the slots.
type liveGroup struct {
	hdr   uint64
	slots [groupSlots]liveSlot
}

const (
	tagBytes      = 0x000000ffffffffff // the tag bytes of a header
	tagLow        = 0x0000000101010101 // 0x01 in each tag byte
	tagHighBits   = 0x0000008080808080 // 0x80 in each tag byte
	overflowShift = 48
	overflowOne   = 1 << overflowShift
	overflowMax   = 0xff
)

// homeOf is the home group of addr: the high bits of a multiplicative
// hash of its 64-byte granule, scaled to the number of groups. Blocks
// that share a cache line of the program (at most 4 of 16 bytes) share a
// group, so allocations next to each other, as allocators hand them out,
// are often found in one cache line of the table.
func (t *liveTable) homeOf(addr uint64) int {
	hi, _ := bits.Mul64((addr>>granuleShift)*0x9e3779b97f4a7c15, uint64(len(t.groups)))
	return int(hi)
}

const granuleShift = 6

// tagOf is the tag of addr: 0x80 and 7 bits of a second hash of the whole
// address (the blocks of a granule share a group, not a tag).
func tagOf(addr uint64) uint64 { return (addr*0xbf58476d1ce4e5b9)>>32&0x7f | 0x80 }

// matches returns a bit (at 8k+7) for each slot k of hdr whose tag is tag,
// and possibly for some slots after a match (the SWAR zero-byte test
// borrows): callers compare the address.
func matches(hdr, tag uint64) uint64 {
	x := (hdr ^ tag*tagLow) & tagBytes
	return (x - tagLow) &^ x & tagHighBits
}

// freeSlots returns a bit (at 8k+7) for each empty slot k of hdr.
func freeSlots(hdr uint64) uint64 { return ^hdr & tagHighBits }

// slotUsed says whether slot k of the group with header hdr is occupied.
func slotUsed(hdr uint64, k int) bool { return hdr>>(8*k)&0x80 != 0 }

// overflow is the overflow count of the group with header hdr.
func overflow(hdr uint64) uint64 { return hdr >> overflowShift & overflowMax }

// prefetch starts fetching the home group of addr into the cache, for an
// insert or remove of addr coming soon, if the table is too large to stay
// in the CPU's caches between uses (liveCachedGroups). Inlined, so that
// a small table costs a compare.
func (t *liveTable) prefetch(addr uint64) {
	if len(t.groups) > liveCachedGroups {
		t.fetch(addr)
	}
}

// liveCachedGroups: a table of this many groups or fewer (512 KiB, half
// an L2 of the machine measured) is not fetched ahead. Its groups are in
// the caches already, and fetching cost two calls an event: 9% of the
// analyzer's samples in `make bench`'s threads 2 row, whose table holds a
// handful of blocks.
const liveCachedGroups = 4096

// fetch is prefetch's call to the prefetch instructions.
func (t *liveTable) fetch(addr uint64) {
	prefetch2(unsafe.Pointer(&t.groups[t.homeOf(addr)]))
}

// find returns the group and slot of addr, or ok == false; and addr's
// home group either way.
func (t *liveTable) find(addr uint64) (home, g, k int, ok bool) {
	if len(t.groups) == 0 {
		return 0, 0, 0, false
	}
	tag := tagOf(addr)
	home = t.homeOf(addr)
	g = home
	// At most once round the table: with saturated counts, every group
	// could say that entries passed it.
	for range t.groups {
		grp := &t.groups[g]
		for m := matches(grp.hdr, tag); m != 0; m &= m - 1 {
			k := bits.TrailingZeros64(m) >> 3
			if grp.slots[k].addr == addr {
				return home, g, k, true
			}
		}
		if overflow(grp.hdr) == 0 {
			break
		}
		if g++; g == len(t.groups) {
			g = 0
		}
	}
	return home, 0, 0, false
}

// place puts s (an address not in the table) in the first free slot from
// its home group g on, counting the overflow on the groups it passes.
func (t *liveTable) place(s liveSlot, g int) {
	for {
		grp := &t.groups[g]
		if free := freeSlots(grp.hdr); free != 0 {
			k := bits.TrailingZeros64(free) >> 3
			grp.hdr |= tagOf(s.addr) << (8 * k)
			grp.slots[k] = s
			t.used++
			return
		}
		if overflow(grp.hdr) != overflowMax {
			grp.hdr += overflowOne
		}
		if g++; g == len(t.groups) {
			g = 0
		}
	}
}

// vacate empties slot k of group g and takes its entry off the overflow
// counts of the groups its probe passed, from its home group on.
func (t *liveTable) vacate(home, g, k int) {
	grp := &t.groups[g]
	grp.hdr &^= 0xff << (8 * k)
	grp.slots[k] = liveSlot{}
	t.used--
	for i := home; i != g; {
		o := &t.groups[i].hdr
		if overflow(*o) != overflowMax {
			*o -= overflowOne
		}
		if i++; i == len(t.groups) {
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
	t.resize(max(len(t.groups)*3/2, minGroups))
}

// reserve sizes the table for n live blocks at most (RestoreState: blocks
// inserted in the order of another table's groups would all find their
// home in the first groups of a small table, and probe ever further).
func (t *liveTable) reserve(n int) {
	if groups := n*maxLoadDen/maxLoadNum/groupSlots + 1; groups > len(t.groups) {
		t.resize(max(groups, minGroups))
	}
}

// resize rehashes the table into n groups.
func (t *liveTable) resize(n int) {
	old := t.groups
	t.groups = make([]liveGroup, n)
	if size := uintptr(n) * unsafe.Sizeof(liveGroup{}); size >= 2*hugePageSize {
		adviseHugePages(unsafe.Pointer(&t.groups[0]), size)
	}
	t.used = 0
	for g := range old {
		for k := range old[g].slots {
			if slotUsed(old[g].hdr, k) {
				s := old[g].slots[k]
				t.place(s, t.homeOf(s.addr))
			}
		}
	}
}

// insert adds a live block.
func (t *liveTable) insert(b liveBlock) {
	if (t.used+1)*maxLoadDen > len(t.groups)*groupSlots*maxLoadNum {
		t.grow()
	}
	t.count++
	home, g, k, ok := t.find(b.addr)
	if !ok {
		t.place(liveSlot{addr: b.addr, ts: b.ts, meta: t.pack(b)}, home)
		return
	}
	// Another generation of a live address (out-of-order arrival).
	if t.gens == nil {
		t.gens = make(map[uint64][]liveBlock)
	}
	t.groups[g].slots[k].meta |= multiBit
	extra := t.gens[b.addr]
	// In time order (mostly arrival order: appended).
	i := len(extra)
	for i > 0 && extra[i-1].ts > b.ts {
		i--
	}
	extra = append(extra, liveBlock{})
	copy(extra[i+1:], extra[i:])
	extra[i] = b
	t.gens[b.addr] = extra
}

// remove closes the generation of addr that a free at ts by thread tid
// frees: the newest allocated at or before ts, or an older one if that
// is another thread's reuse the free's stamp came after, by less than
// skew (reuse.go; sites are the process's, for whose thread allocated a
// block). With tid or skew 0, the newest at or before ts.
func (t *liveTable) remove(addr, ts uint64, tid uint32, skew uint64, sites []siteKey) (liveBlock, bool) {
	home, g, k, ok := t.find(addr)
	if !ok {
		return liveBlock{}, false
	}
	s := &t.groups[g].slots[k]
	if s.meta&multiBit == 0 {
		if s.ts > ts {
			return liveBlock{}, false
		}
		b := t.unpack(s)
		t.dropWide(s)
		t.vacate(home, g, k)
		t.count--
		return b, true
	}
	main := t.unpack(s)
	// The extra generations are in time order (insert): the newest at or
	// before ts by binary search, so that frees applied in time order
	// after many allocations of one address (frees that waited for the
	// watermark) cost a search each, not a scan.
	extra := t.gens[addr]
	best := sort.Search(len(extra), func(i int) bool { return extra[i].ts > ts }) - 1 // -1: none
	for best > 0 && extra[best-1].ts == extra[best].ts {
		best-- // of equals, the first inserted
	}
	if main.ts <= ts && (best < 0 || main.ts >= extra[best].ts) {
		best = len(extra) // the slot's generation
	}
	if best < 0 {
		return liveBlock{}, false
	}
	if tid != 0 && skew != 0 {
		best = freer{tid: tid, sites: sites, skew: skew}.skipReuses(main, extra, best, ts)
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
		if best == 0 {
			extra = extra[1:] // the oldest: frees in time order take these
		} else {
			extra = append(extra[:best], extra[best+1:]...)
		}
	}
	if len(extra) == 0 {
		delete(t.gens, addr)
		s.meta &^= multiBit
	} else {
		t.gens[addr] = extra
	}
	return b, true
}

// each calls fn for every live block, all generations.
func (t *liveTable) each(fn func(liveBlock)) {
	for g := range t.groups {
		for k := range t.groups[g].slots {
			if slotUsed(t.groups[g].hdr, k) {
				t.eachGen(&t.groups[g].slots[k], fn)
			}
		}
	}
}

// eachGen calls fn for every generation of the slot s.
func (t *liveTable) eachGen(s *liveSlot, fn func(liveBlock)) {
	fn(t.unpack(s))
	if s.meta&multiBit != 0 {
		for _, g := range t.gens[s.addr] {
			fn(g)
		}
	}
}

// clone returns an independent copy (fork).
func (t *liveTable) clone() liveTable {
	c := liveTable{used: t.used, count: t.count}
	c.groups = append([]liveGroup(nil), t.groups...)
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
