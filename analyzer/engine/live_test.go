package engine

import (
	"cmp"
	"math/rand"
	"memscope/analyzer/reach"
	"slices"
	"sort"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLiveTableAgainstModel drives the table and a plain map with the same
// random inserts (several generations per address, wide sizes and sites)
// and removals, through many grow cycles.
func TestLiveTableAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var lt liveTable
	model := map[uint64][]liveBlock{}
	ts := uint64(1)
	addrs := make([]uint64, 3000)
	for i := range addrs {
		addrs[i] = 0x10000 + uint64(rng.Intn(1<<20))*16
	}
	for step := 0; step < 200000; step++ {
		ts++
		a := addrs[rng.Intn(len(addrs))]
		if rng.Intn(2) == 0 {
			b := liveBlock{addr: a, ts: ts - uint64(rng.Intn(3)), size: uint64(rng.Intn(1000)), site: uint32(rng.Intn(10))}
			switch rng.Intn(50) {
			case 0:
				b.size = 1 << 45 // does not pack
			case 1:
				b.site = siteWide + 5 // does not pack
			}
			lt.insert(b)
			model[a] = append(model[a], b)
			continue
		}
		at := ts - uint64(rng.Intn(5))
		got, ok := lt.remove(a, at, 0, 0, nil)
		// The model: newest generation at or before at.
		gens := model[a]
		best := -1
		for i, g := range gens {
			if g.ts <= at && (best < 0 || g.ts > gens[best].ts) {
				best = i
			}
		}
		require.Equal(t, best >= 0, ok, "step %d addr %#x", step, a)
		if ok {
			want := gens[best]
			require.Equal(t, want.ts, got.ts)
			// Generations with equal ts are interchangeable; compare by (ts, size, site) multiset below.
			idx := best
			for i, g := range gens {
				if g == got {
					idx = i
				}
			}
			require.Equal(t, gens[idx], got)
			model[a] = append(gens[:idx], gens[idx+1:]...)
			if len(model[a]) == 0 {
				delete(model, a)
			}
		}
	}
	var want, have []liveBlock
	for _, g := range model {
		want = append(want, g...)
	}
	lt.each(func(b liveBlock) { have = append(have, b) })
	key := func(s []liveBlock) func(i, j int) bool {
		return func(i, j int) bool {
			if s[i].addr != s[j].addr {
				return s[i].addr < s[j].addr
			}
			if s[i].ts != s[j].ts {
				return s[i].ts < s[j].ts
			}
			if s[i].size != s[j].size {
				return s[i].size < s[j].size
			}
			return s[i].site < s[j].site
		}
	}
	sort.Slice(want, key(want))
	sort.Slice(have, key(have))
	assert.Equal(t, want, have)
	assert.Equal(t, len(want), lt.count)

	c := lt.clone()
	var cloned []liveBlock
	c.each(func(b liveBlock) { cloned = append(cloned, b) })
	sort.Slice(cloned, key(cloned))
	assert.Equal(t, have, cloned)
}

// TestLiveTableOverflowCounts fills a table of 4 groups to the last slot,
// so that most entries sit past their home group, then removes them in
// random order: every other entry must stay reachable after each removal,
// and the overflow counts must come back to zero, except one saturated
// count, which must stay saturated.
func TestLiveTableOverflowCounts(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewSource(seed))
		lt := liveTable{groups: make([]liveGroup, 4)}
		saturated := rng.Intn(4)
		lt.groups[saturated].hdr = overflowMax << overflowShift
		var addrs []uint64
		for len(addrs) < 4*groupSlots {
			a := uint64(rng.Int63n(1<<40)) << 4
			if _, _, _, ok := lt.find(a); ok {
				continue
			}
			lt.place(liveSlot{addr: a, ts: 1, meta: uint64(len(addrs))}, lt.homeOf(a))
			lt.count++
			addrs = append(addrs, a)
		}
		require.Equal(t, 4*groupSlots, lt.used)
		rng.Shuffle(len(addrs), func(i, j int) { addrs[i], addrs[j] = addrs[j], addrs[i] })
		for i, a := range addrs {
			_, ok := lt.remove(a, 1, 0, 0, nil)
			require.True(t, ok, "seed %d: entry %d", seed, i)
			_, _, _, ok = lt.find(a)
			require.False(t, ok, "seed %d: entry %d still found", seed, i)
			for _, b := range addrs[i+1:] {
				_, _, _, ok := lt.find(b)
				require.True(t, ok, "seed %d: %#x lost after removing entry %d", seed, b, i)
			}
		}
		for g := range lt.groups {
			want := uint64(0)
			if g == saturated {
				want = overflowMax << overflowShift
			}
			require.Equal(t, want, lt.groups[g].hdr, "seed %d: group %d", seed, g)
		}
		require.Zero(t, lt.used)
		require.Zero(t, lt.count)
	}
}

// BenchmarkLiveTableChurn replaces random live blocks by new ones at
// random addresses (a remove and an insert per op), prefetching 8 ops
// ahead as the engine does, in a table that fits the caches (4096 live
// blocks) and in one that does not (400000).
func BenchmarkLiveTableChurn(b *testing.B) {
	for _, n := range []int{4096, 400000} {
		b.Run("live="+strconv.Itoa(n), func(b *testing.B) {
			rng := rand.New(rand.NewSource(1))
			var lt liveTable
			live := make([]uint64, n)
			for i := range live {
				live[i] = uint64(rng.Int63n(1<<36)) << 4
				lt.insert(liveBlock{addr: live[i], ts: 1, size: 8})
			}
			const ops = 1 << 20
			victim := make([]int, ops)
			fresh := make([]uint64, ops)
			for i := range victim {
				victim[i] = rng.Intn(n)
				fresh[i] = uint64(rng.Int63n(1<<36)) << 4
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := i & (ops - 1)
				if k+slotAhead < ops {
					lt.prefetch(live[victim[k+slotAhead]])
					lt.prefetch(fresh[k+slotAhead])
				}
				j := victim[k]
				if _, ok := lt.remove(live[j], 2, 0, 0, nil); !ok {
					b.Fatalf("%#x not found", live[j])
				}
				live[j] = fresh[k]
				lt.insert(liveBlock{addr: fresh[k], ts: 1, size: 8})
			}
		})
	}
}

// TestLiveTableAddressZero: no block lives at address 0 (a failed
// allocation is never inserted), and a free of it (corrupt input) finds
// nothing, whatever the table holds: it must not take an empty slot for
// its block.
func TestLiveTableAddressZero(t *testing.T) {
	var lt liveTable
	_, ok := lt.remove(0, 1, 0, 0, nil)
	require.False(t, ok, "empty table")
	for i := uint64(1); i <= 1000; i++ {
		lt.insert(liveBlock{addr: i * 16, ts: i, size: i})
		_, ok := lt.remove(0, i, 0, 0, nil)
		require.False(t, ok, "after %d inserts", i)
	}
	require.Equal(t, 1000, lt.count)
	require.Equal(t, 1000, lt.used)
}

func TestSortByAddr(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for _, n := range []int{0, 1, 63, 64, 1000, 100000} {
		lb := LiveBlocks{Extents: make([]reach.Extent, n), Sites: make([]uint32, n)}
		for i := range lb.Extents {
			lb.Extents[i] = reach.Extent{Addr: 0x7f0000000000 + uint64(r.Int63n(1<<36))&^15, Size: uint64(i)}
			lb.Sites[i] = uint32(i)
		}
		want := slices.Clone(lb.Extents)
		slices.SortStableFunc(want, func(a, b reach.Extent) int { return cmp.Compare(a.Addr, b.Addr) })
		lb.sortByAddr()
		require.Len(t, lb.Extents, n)
		for i := range lb.Extents {
			require.Equal(t, want[i].Addr, lb.Extents[i].Addr, "n=%d i=%d", n, i)
			require.Equal(t, uint64(lb.Sites[i]), lb.Extents[i].Size, "the site moves with its block")
		}
	}
}

// TestLiveTableManyGenerations: one address allocated 200000 times before
// any of its frees is applied (frees that waited for the watermark, in a
// loop that reuses its block), then freed in time order: every free closes
// its own generation. Each removal is a search, not a scan of the others:
// a scan made this quadratic (an analyzer spun for minutes).
func TestLiveTableManyGenerations(t *testing.T) {
	const n = 200000
	var lt liveTable
	for i := uint64(0); i < n; i++ {
		lt.insert(liveBlock{addr: 0x1000, ts: 2*i + 1, size: i, site: 1})
	}
	require.Equal(t, n, lt.count)
	for i := uint64(0); i < n; i++ {
		b, ok := lt.remove(0x1000, 2*i+2, 0, 0, nil)
		require.True(t, ok)
		require.Equal(t, 2*i+1, b.ts, "the free at %d closes the block allocated at %d", 2*i+2, 2*i+1)
	}
	require.Zero(t, lt.count)
	_, ok := lt.remove(0x1000, 1<<40, 0, 0, nil)
	require.False(t, ok)
}
