package engine

import (
	"math/rand"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLiveTableAgainstModel drives the table and a plain map with the same
// random inserts (several generations per address, wide sizes and sites)
// and removals, through many grow and backward-shift cycles.
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
		got, ok := lt.remove(a, at)
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
