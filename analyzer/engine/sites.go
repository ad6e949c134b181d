package engine

// siteTable maps (stack id, tid) to a site index: open addressing, linear
// probing, power-of-two size, at most half full. Entries are never
// removed (sites live as long as their process image).
type siteTable struct {
	slots []siteSlot
	n     int
}

type siteSlot struct {
	stack uint64
	tid   uint32
	idx   uint32 // site index + 1; 0: empty
}

// siteHash mixes both keys into the low bits the table indexes with
// (stack ids are hashes in practice, but tests and tools use small ones).
func siteHash(stack uint64, tid uint32) uint64 {
	h := (stack ^ uint64(tid)*0xbf58476d1ce4e5b9) * 0x9e3779b97f4a7c15
	return h ^ h>>32
}

func (t *siteTable) get(stack uint64, tid uint32) (uint32, bool) {
	if len(t.slots) == 0 {
		return 0, false
	}
	mask := uint64(len(t.slots) - 1)
	for i := siteHash(stack, tid) & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.idx == 0 {
			return 0, false
		}
		if s.stack == stack && s.tid == tid {
			return s.idx - 1, true
		}
	}
}

// home looks (stack, tid) up in its home slot only: the common case,
// small enough to be inlined.
func (t *siteTable) home(stack uint64, tid uint32) (uint32, bool) {
	if len(t.slots) == 0 {
		return 0, false
	}
	s := &t.slots[siteHash(stack, tid)&uint64(len(t.slots)-1)]
	return s.idx - 1, s.idx != 0 && s.stack == stack && s.tid == tid
}

// put adds a key that is not in the table.
func (t *siteTable) put(stack uint64, tid uint32, idx uint32) {
	if 2*(t.n+1) > len(t.slots) {
		old := t.slots
		n := 2 * len(old)
		if n == 0 {
			n = 64
		}
		t.slots = make([]siteSlot, n)
		for _, s := range old {
			if s.idx != 0 {
				t.insert(s)
			}
		}
	}
	t.insert(siteSlot{stack: stack, tid: tid, idx: idx + 1})
	t.n++
}

func (t *siteTable) insert(s siteSlot) {
	mask := uint64(len(t.slots) - 1)
	i := siteHash(s.stack, s.tid) & mask
	for t.slots[i].idx != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = s
}

func (t *siteTable) clone() siteTable {
	return siteTable{slots: append([]siteSlot(nil), t.slots...), n: t.n}
}
