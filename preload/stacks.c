/*
 * stacks.c — interning of call stacks and their STACK records.
 *
 * A stack's id is a 64-bit hash of its pcs (never 0). The table
 * (slots.c) maps an id to an epoch, which says in which process the STACK
 * record for the id was written.
 *
 * Invariants (lock-free, so fork in any thread is safe):
 *   S1  an id has one slot (slots.c T1), or two when two threads inserted
 *       it while the table grew (T4): each slot then writes its own STACK
 *       record, the same one, which the analyzer reads as one.
 *   S2  epoch goes to ms_g.epoch by CAS; the one thread whose CAS wins
 *       writes the STACK record, before the record (ALLOC/REALLOC) that
 *       made it intern the stack, in its own chunk. So each process writes
 *       each STACK once (per slot, S1); other threads may refer to the id
 *       before that record is published (the analyzer resolves ids at
 *       output time).
 *   S3  ms_g.epoch is unique among a process and its fork ancestors (from
 *       which the table is inherited): (fork depth << 32) | pid. A child
 *       therefore writes again every stack it uses.
 *   S4  If the STACK record is dropped (lossy ring), the winner puts the
 *       old epoch back so that a later use writes it.
 *   S5  No slot for the id (the table is full near its hash, slots.c T5):
 *       the STACK record is written at every use (correct, only bigger).
 */
#include "memscope_internal.h"

#include <sys/mman.h>

/* Region 0: 256 stacks, one page; the last region 2^20 (slots.c). */
#define TABLE_BITS0 8
#define PROBES 64

static struct ms_slots table;

int ms_stacks_init(void)
{
	if (ms_slots_init(&table, TABLE_BITS0, PROBES) != 0)
		return -1;
	ms_g.epoch = (1ull << 32) | ms_g.pid;
	return 0;
}

void ms_stacks_new_process(void)
{
	ms_g.epoch = ((ms_g.epoch >> 32) + 1) << 32 | ms_g.pid;
}

static uint64_t mix(uint64_t h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	return h;
}

/*
 * The stack id: a 64-bit hash of the PCs. It runs on every allocation, so
 * it is built for latency: one multiply-add per PC on two independent
 * lanes (even and odd frames, so the CPU overlaps them), then one full
 * mix. Each step h = (h + pc) * K with K odd is a bijection of h, so two
 * stacks that differ in one PC differ before the final mix.
 */
static uint64_t hash_pcs(void *const *pcs, unsigned n)
{
	const uint64_t k0 = 0x9e3779b97f4a7c15ull, k1 = 0xc2b2ae3d27d4eb4full;
	uint64_t a = 0x243f6a8885a308d3ull ^ n, b = 0x13198a2e03707344ull;
	unsigned i = 0;
	for (; i + 1 < n; i += 2) {
		a = (a + (uint64_t)(uintptr_t)pcs[i]) * k0;
		b = (b + (uint64_t)(uintptr_t)pcs[i + 1]) * k1;
	}
	if (i < n)
		a = (a + (uint64_t)(uintptr_t)pcs[i]) * k0;
	uint64_t h = mix(a ^ (b << 31 | b >> 33));
	return h ? h : 1;
}

static int write_stack(struct ms_tls *t, uint64_t id, void *const *pcs, unsigned n, int truncated)
{
	uint32_t size = (uint32_t)(sizeof(struct ms_stack) + 8u * n);
	struct ms_stack *r = ms_rec_open(t, MS_REC_STACK, size, truncated ? MS_RECF_TRUNCATED : 0);
	if (!r)
		return 0;
	r->id = id;
	r->depth = n;
	r->_pad = 0;
	for (unsigned i = 0; i < n; i++)
		r->pcs[i] = (uint64_t)(uintptr_t)pcs[i];
	ms_rec_end(t);
	return 1;
}

uint64_t ms_stack_capture(struct ms_tls *t, const struct ms_caller *c)
{
	void *buf[MS_MAX_DEPTH + MS_UNWIND_SLACK + 1];
	unsigned depth = ms_g.cfg.depth, first, n;
	int truncated;
	uint64_t id, ep = ms_g.epoch, cur;
	struct ms_slot *s;

	if (depth == 0)
		return 0;
	n = ms_unwind(t, c, buf, depth, &first, &truncated, &id);
	if (id) /* the thread's cached stack, already written in this process */
		return id;
	id = hash_pcs(buf + first, n);
	s = ms_slots_get(&table, id, id);
	if (!s) { /* S5 */
		write_stack(t, id, buf + first, n, truncated);
		return id;
	}
	cur = __atomic_load_n(&s->value, __ATOMIC_ACQUIRE);
	if (cur == ep) {
		ms_unwind_remember(id);
		return id;
	}
	if (!__atomic_compare_exchange_n(&s->value, &cur, ep, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return id; /* another thread of this process won (S2) */
	/* A new stack may point into an object loaded behind our back. */
	ms_modules_check(t);
	if (!write_stack(t, id, buf + first, n, truncated))
		__atomic_compare_exchange_n(&s->value, &ep, cur, 0, __ATOMIC_ACQ_REL,
					    __ATOMIC_ACQUIRE); /* S4 */
	else
		ms_unwind_remember(id);
	return id;
}
