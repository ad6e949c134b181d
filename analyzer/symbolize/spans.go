package symbolize

import "sort"

// span is a half-open address range [lo, hi) naming an item by index.
type span struct {
	lo, hi uint64
	id     int32
}

// spanIndex finds the span containing an address in O(log n) when spans
// do not overlap, and stays correct when some do (nested functions,
// aliases): it returns the containing span with the greatest lo, the
// innermost one for properly nested ranges.
type spanIndex struct {
	spans []span   // sorted by lo; among equal lo, the preferred one last
	maxHi []uint64 // maxHi[i] = max(spans[0..i].hi): where a backward scan can stop
}

// newSpanIndex sorts spans (stable: for equal lo, the caller's order is
// kept, later ones preferred) and builds the index.
func newSpanIndex(spans []span) spanIndex {
	sort.SliceStable(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	maxHi := make([]uint64, len(spans))
	var m uint64
	for i, s := range spans {
		if s.hi > m {
			m = s.hi
		}
		maxHi[i] = m
	}
	return spanIndex{spans: spans, maxHi: maxHi}
}

// find returns the id of the containing span, or -1.
func (x *spanIndex) find(pc uint64) int32 {
	// i = first span with lo > pc.
	i := sort.Search(len(x.spans), func(k int) bool { return x.spans[k].lo > pc })
	for j := i - 1; j >= 0 && x.maxHi[j] > pc; j-- {
		if s := &x.spans[j]; pc < s.hi {
			return s.id
		}
	}
	return -1
}
