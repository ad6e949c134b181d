/*
 * slots.c — insert-only hash tables of {key, value} words that grow by
 * regions: the stack interning table (stacks.c) and the unwind rule cache
 * (cfi.c).
 *
 * Why regions: a table sized for the largest program (a million stacks)
 * and probed at random touches one new page per insert until all its pages
 * are touched. A compiler process of 20 000 allocations and a few thousand
 * stacks paid a page fault for nearly every stack: about a thousand per
 * process, a tenth of the build row's time. So the table starts small and
 * each region is four times its predecessor: the pages touched stay in
 * proportion to the keys held. Region 0 is one page: a short process
 * (sed in a shell pipeline, a hundred stacks) touches one page, not
 * sixteen, and a fork child writing its parent's slots again (stacks.c
 * S3) copies as few pages.
 *
 * One mapping holds the regions back to back; region r has
 * 1 << (bits0 + 2r) slots. Inserts go to region `level`, which moves to
 * the next region once half of its slots are taken.
 *
 * Probed at random, a region's pages are touched until nearly all are:
 * each first by a lookup's read (the kernel maps the shared zero page),
 * then by an insert's write (a second fault, to copy it). So the thread
 * that moves `level` maps the new region's pages writable in one madvise
 * (MADV_POPULATE_WRITE; contents untouched), as slots_init does for
 * region 0: a compiler (cc1) took about 330 page faults in these tables,
 * a sixth of its own.
 *
 * Invariants (lock-free: any thread, a signal handler between hooks, a
 * fork child inheriting the table in any state):
 *   T1  a slot's key goes 0 -> key by CAS and never changes again; its
 *       value is the user's (stacks.c S2, cfi.c C2).
 *   T2  level only grows; used[r] counts the keys inserted in region r.
 *   T3  a lookup searches region level, then the older ones, newest
 *       first; in each it stops at an empty slot (linear probing: a key
 *       inserted in that region sits before the first empty slot of its
 *       window), and it inserts in region level only.
 *   T4  a key is in one slot, except when two threads inserted it while
 *       level moved (one saw the old level, the other the new): then it
 *       is in two regions and both slots are used as if the other did not
 *       exist. Users must tolerate that (stacks.c: the STACK record is
 *       written twice, as S5 allows; cfi.c: the rule is computed twice).
 *   T5  no empty slot and no key within probes of the hash in region
 *       level: the table is full there, the lookup returns NULL.
 */
#include "memscope_internal.h"

static unsigned region_bits(const struct ms_slots *t, unsigned r)
{
	return t->bits0 + 2 * r;
}

/* Region r starts after regions 0..r-1: sum of 4^i << bits0 = ((4^r - 1) / 3) << bits0. */
static struct ms_slot *region(const struct ms_slots *t, unsigned r)
{
	return t->base + ((((size_t)1 << (2 * r)) - 1) / 3 << t->bits0);
}

/* Maps region r's pages writable before its slots are probed (above). */
static void populate(const struct ms_slots *t, unsigned r)
{
	int e = errno;
	madvise(region(t, r), sizeof(struct ms_slot) << region_bits(t, r), MADV_POPULATE_WRITE);
	errno = e;
}

int ms_slots_init(struct ms_slots *t, unsigned bits0, unsigned probes)
{
	size_t slots = (((size_t)1 << (2 * MS_SLOT_REGIONS)) - 1) / 3 << bits0;
	void *p = ms_map_private(slots * sizeof(struct ms_slot));
	if (!p)
		return -1;
	t->bits0 = bits0;
	t->probes = probes;
	t->level = 0;
	for (unsigned r = 0; r < MS_SLOT_REGIONS; r++)
		t->used[r] = 0;
	t->base = p; /* before tracing starts (state.c), which publishes it */
	populate(t, 0);
	return 0;
}

/* The slot holding key in region r, or NULL; *empty gets the first empty slot seen (T3). */
static struct ms_slot *probe(const struct ms_slots *t, unsigned r, uint64_t key, uint64_t hash,
			     struct ms_slot **empty)
{
	struct ms_slot *reg = region(t, r);
	size_t mask = ((size_t)1 << region_bits(t, r)) - 1;
	*empty = NULL;
	for (unsigned i = 0; i < t->probes; i++) {
		struct ms_slot *s = &reg[(hash + i) & mask];
		uint64_t k = __atomic_load_n(&s->key, __ATOMIC_ACQUIRE);
		if (k == key)
			return s;
		if (k == 0) {
			*empty = s;
			return NULL;
		}
	}
	return NULL;
}

static void count_insert(struct ms_slots *t, unsigned r)
{
	uint32_t used = __atomic_add_fetch(&t->used[r], 1, __ATOMIC_RELAXED);
	if (r + 1 < MS_SLOT_REGIONS && used == (1u << region_bits(t, r)) / 2) {
		unsigned expect = r;
		if (__atomic_compare_exchange_n(&t->level, &expect, r + 1, 0, __ATOMIC_RELEASE,
						__ATOMIC_RELAXED)) /* T2 */
			populate(t, r + 1);
	}
}

struct ms_slot *ms_slots_get(struct ms_slots *t, uint64_t key, uint64_t hash)
{
	struct ms_slot *s, *empty, *ignored;
	unsigned level = __atomic_load_n(&t->level, __ATOMIC_ACQUIRE);

	if (!t->base)
		return NULL;
	s = probe(t, level, key, hash, &empty);
	if (s)
		return s;
	for (unsigned r = level; r-- > 0;) {
		s = probe(t, r, key, hash, &ignored);
		if (s)
			return s;
	}
	/* T1: claim the empty slot, or the next one if another thread took it. */
	struct ms_slot *reg = region(t, level);
	size_t mask = ((size_t)1 << region_bits(t, level)) - 1;
	unsigned first = empty ? (unsigned)(((size_t)(empty - reg) - (size_t)hash) & mask) : t->probes;
	for (unsigned i = first; i < t->probes; i++) {
		s = &reg[(hash + i) & mask];
		uint64_t k = __atomic_load_n(&s->key, __ATOMIC_ACQUIRE);
		if (k == 0 && __atomic_compare_exchange_n(&s->key, &k, key, 0, __ATOMIC_ACQ_REL,
							  __ATOMIC_ACQUIRE)) {
			count_insert(t, level);
			return s;
		}
		if (k == key)
			return s;
	}
	return NULL; /* T5 */
}

void ms_slots_each(const struct ms_slots *t, void (*fn)(uint64_t key, uint64_t value, void *arg), void *arg)
{
	unsigned level = __atomic_load_n(&t->level, __ATOMIC_ACQUIRE);
	if (!t->base)
		return;
	for (unsigned r = 0; r <= level; r++) {
		struct ms_slot *reg = region(t, r);
		size_t n = (size_t)1 << region_bits(t, r);
		for (size_t i = 0; i < n; i++) {
			uint64_t k = __atomic_load_n(&reg[i].key, __ATOMIC_ACQUIRE);
			if (k)
				fn(k, __atomic_load_n(&reg[i].value, __ATOMIC_ACQUIRE), arg);
		}
	}
}
