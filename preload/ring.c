/*
 * ring.c — producer side of the shared-memory event ring.
 *
 * The invariants I1-I8 this code keeps are stated in include/memscope.h.
 * In short, per record:
 *   fast path: one CAS (GEN|len -> GEN|len|WRITING), plain stores of the
 *              record, one release store (GEN|len+size);
 *   slow path: seal the full chunk, reserve a sequence (CAS on
 *              reserve_head while a slot is free), claim its slot (CAS on
 *              seq), initialise state (CAS 0 -> GEN).
 * When the ring is full the producer spins, then waits on commit_futex;
 * if the consumer's heartbeat is older than consumer_timeout_ns, or the
 * ring is lossy, the event is dropped and counted instead (never a hang).
 *
 * No malloc, no stdio, no locks: this runs inside malloc hooks.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "ring.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MS_SPINS_BEFORE_WAIT 128
#define MS_FUTEX_WAIT_NS 10000000L /* re-check the heartbeat every 10 ms */

#define load_relaxed(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define cas(p, expp, v) \
	__atomic_compare_exchange_n((p), (expp), (v), 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)

uint64_t ms_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int ms_tsc_invariant(void)
{
#if defined(__x86_64__)
	uint32_t a, b, c, d;
	__asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000000u), "c"(0));
	if (a < 0x80000007u)
		return 0;
	__asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000007u), "c"(0));
	return (d >> 8) & 1;
#else
	return 0;
#endif
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

const char *ms_ring_attach_strerror(int err)
{
	switch (err) {
	case MS_ATTACH_OK: return "ok";
	case MS_ATTACH_OPEN: return "cannot open ring file";
	case MS_ATTACH_OWNER: return "ring file is not a regular file owned by this user";
	case MS_ATTACH_SIZE: return "ring file size does not match its header";
	case MS_ATTACH_MAGIC: return "not a memscope ring (bad magic)";
	case MS_ATTACH_VERSION: return "ring was made by another memscope version";
	case MS_ATTACH_MAP: return "cannot map ring file";
	}
	return "unknown error";
}

static int header_is_consistent(const struct ms_ring_header *h, uint64_t file_size)
{
	uint64_t cs = h->chunk_size, n = h->chunk_count;
	if (h->header_size != MS_HEADER_SIZE)
		return 0;
	if (cs < MS_MIN_CHUNK_SIZE || cs > MS_MAX_CHUNK_SIZE || (cs & (cs - 1)) != 0)
		return 0;
	if (n < MS_MIN_CHUNK_COUNT || n > (1ull << 32) / 2)
		return 0;
	if (h->file_size != MS_HEADER_SIZE + n * cs || h->file_size != file_size)
		return 0;
	return 1;
}

int ms_ring_attach(struct ms_ring *r, const char *path, int lossy)
{
	struct stat st;
	struct ms_ring_header probe;
	void *map;
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return MS_ATTACH_OPEN;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return MS_ATTACH_OPEN;
	}
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
		close(fd);
		return MS_ATTACH_OWNER;
	}
	if ((uint64_t)st.st_size < MS_HEADER_SIZE ||
	    pread(fd, &probe, sizeof probe, 0) != (ssize_t)sizeof probe) {
		close(fd);
		return MS_ATTACH_SIZE;
	}
	if (probe.magic != MS_MAGIC) {
		close(fd);
		return MS_ATTACH_MAGIC;
	}
	if (probe.version != MS_VERSION) {
		close(fd);
		return MS_ATTACH_VERSION;
	}
	if (!header_is_consistent(&probe, (uint64_t)st.st_size)) {
		close(fd);
		return MS_ATTACH_SIZE;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return MS_ATTACH_MAP;
	r->hdr = map;
	r->slots = (uint8_t *)map + MS_HEADER_SIZE;
	r->map_size = (uint64_t)st.st_size;
	r->chunk_size = probe.chunk_size;
	r->chunk_count = probe.chunk_count;
	r->data_cap = probe.chunk_size - MS_CHUNK_HEADER_SIZE;
	r->lossy = lossy || (probe.flags & MS_RING_LOSSY) != 0;
#if defined(__x86_64__)
	r->tsc = (probe.flags & MS_RING_TSC) != 0;
#else
	if (probe.flags & MS_RING_TSC) {
		munmap(map, (size_t)st.st_size);
		return MS_ATTACH_VERSION; /* no TSC here: stamped with another clock */
	}
	r->tsc = 0;
#endif
	r->consumer_timeout_ns = probe.consumer_timeout_ns;
	return MS_ATTACH_OK;
}

static struct ms_chunk_header *slot_of(const struct ms_ring *r, uint64_t seq)
{
	return (struct ms_chunk_header *)(r->slots + (seq % r->chunk_count) * (uint64_t)r->chunk_size);
}

static int consumer_is_stale(const struct ms_ring *r)
{
	uint64_t hb = load_acquire(&r->hdr->consumer_heartbeat_ns);
	uint64_t now = ms_now_ns();
	return now > hb && now - hb > r->consumer_timeout_ns;
}

static int ring_is_full(const struct ms_ring *r)
{
	uint64_t head = load_acquire(&r->hdr->reserve_head);
	uint64_t done = load_acquire(&r->hdr->last_read_to);
	return head - done >= r->chunk_count;
}

/*
 * Takes the next chunk sequence (I1). Returns 0 when the event must be
 * dropped: lossy ring, or a consumer silent for consumer_timeout_ns.
 */
static int reserve_seq(struct ms_ring *r, uint64_t *seq)
{
	struct ms_ring_header *h = r->hdr;
	unsigned spins = 0;
	uint64_t wait_from = 0; /* when this call found the ring full, 0: it has not */
	for (;;) {
		uint64_t head = load_relaxed(&h->reserve_head);
		uint64_t done = load_acquire(&h->last_read_to);
		if (head - done < r->chunk_count) {
			if (cas(&h->reserve_head, &head, head + 1)) {
				*seq = head;
				if (wait_from)
					__atomic_fetch_add(&h->full_wait_ns, ms_now_ns() - wait_from,
							   __ATOMIC_RELAXED);
				return 1;
			}
			continue;
		}
		if (!wait_from) {
			__atomic_fetch_add(&h->full_waits, 1, __ATOMIC_RELAXED);
			wait_from = ms_now_ns();
			/*
			 * Lossy, or the consumer is gone: drop now. Checking the
			 * heartbeat before spinning keeps a dropped event cheap
			 * (one vDSO clock read) once the consumer has gone away.
			 */
			if (r->lossy || consumer_is_stale(r))
				return 0;
		}
		if (spins < MS_SPINS_BEFORE_WAIT) {
			spins++;
			cpu_relax();
			continue;
		}
		if (consumer_is_stale(r)) {
			__atomic_fetch_add(&h->full_wait_ns, ms_now_ns() - wait_from, __ATOMIC_RELAXED);
			return 0;
		}
		/*
		 * Announce the wait before sampling the futex word, and re-check
		 * fullness after: a commit between our check and FUTEX_WAIT then
		 * either changes the word (EAGAIN) or sees full_waiters and wakes
		 * us. The timeout bounds any missed wake-up anyway.
		 */
		__atomic_fetch_add(&h->full_waiters, 1, __ATOMIC_SEQ_CST);
		uint32_t word = __atomic_load_n(&h->commit_futex, __ATOMIC_SEQ_CST);
		if (ring_is_full(r)) {
			struct timespec ts = {0, MS_FUTEX_WAIT_NS};
			syscall(SYS_futex, &h->commit_futex, FUTEX_WAIT, word, &ts, NULL, 0);
		}
		__atomic_fetch_sub(&h->full_waiters, 1, __ATOMIC_SEQ_CST);
	}
}

/* Claims the slot of seq (I2). Returns 0 if the consumer abandoned it. */
static int claim_slot(struct ms_ring *r, struct ms_chunk_header *c, uint64_t seq)
{
	uint64_t n = r->chunk_count;
	uint64_t prev_claimed = seq >= n ? MS_SEQ_CLAIMED(seq - n) : 0;
	uint64_t prev_abandoned = seq >= n ? MS_SEQ_ABANDONED(seq - n) : 0;
	uint64_t cur = load_acquire(&c->seq);
	for (;;) {
		if (cur != prev_claimed && cur != prev_abandoned)
			return 0; /* MS_SEQ_ABANDONED(seq): the consumer gave up on us */
		if (cas(&c->seq, &cur, MS_SEQ_CLAIMED(seq)))
			return 1;
	}
}

#define POPULATE_CHUNKS 64

/*
 * On the ring's first lap every page a producer writes is a page fault;
 * on the project's VM one costs about 12 us, against 7.4 us a page when
 * the kernel maps 64 chunks ahead in one madvise (measured on a 64 MiB
 * tmpfs file). So once the ring has handed out POPULATE_CHUNKS chunks
 * (a program that records less never pays for pages it does not use),
 * the thread that takes each POPULATE_CHUNKS-th chunk of the first lap
 * maps the next POPULATE_CHUNKS. Contents are untouched; an old kernel
 * (EINVAL) just leaves the faults.
 */
static void populate_ahead(struct ms_ring *r, uint64_t seq)
{
	if (seq < POPULATE_CHUNKS || seq % POPULATE_CHUNKS != 0 || seq + 1 >= r->chunk_count)
		return;
	uint64_t end = seq + 1 + POPULATE_CHUNKS;
	if (end > r->chunk_count)
		end = r->chunk_count;
	int e = errno;
	madvise(slot_of(r, seq + 1), (end - seq - 1) * (uint64_t)r->chunk_size, MADV_POPULATE_WRITE);
	errno = e;
}

/*
 * Gives w a fresh chunk: reserve, claim, write owner (I3), initialise
 * state (I4). Returns 0 if the event must be dropped.
 */
static int take_chunk(struct ms_ring *r, struct ms_writer *w)
{
	for (;;) {
		uint64_t seq;
		struct ms_chunk_header *c;
		uint64_t initial;
		if (!reserve_seq(r, &seq))
			return 0;
		c = slot_of(r, seq);
		if (!claim_slot(r, c, seq))
			continue;
		c->pid = w->pid;
		c->tid = w->tid;
		c->claim_ns = ms_stamp(r); /* not the vDSO: its pages would fault in every process */
		/*
		 * Fails only if the consumer sealed the still-empty chunk already
		 * (we were stalled for seal_after). The expected value names our
		 * generation (I4): if the slot has since been reset for a later
		 * sequence, this CAS fails too instead of taking a slot we no
		 * longer own.
		 */
		initial = MS_STATE_INITIAL(seq, r->chunk_count);
		if (!cas(&c->state, &initial, MS_STATE_GEN(seq)))
			continue;
		w->chunk = c;
		w->data = (uint8_t *)c + MS_CHUNK_HEADER_SIZE;
		w->len = 0;
		w->seq = seq;
		w->gen = MS_STATE_GEN(seq);
		populate_ahead(r, seq);
		return 1;
	}
}

/* Tries to open a record of size bytes in w's current chunk (I5). */
static void *try_append(struct ms_ring *r, struct ms_writer *w, uint32_t size)
{
	uint64_t expect = w->gen | w->len;
	if (w->len + size > r->data_cap) {
		/* Full: seal it ourselves (I6); failure means the consumer did. */
		cas(&w->chunk->state, &expect, expect | MS_STATE_SEALED);
		w->chunk = NULL;
		return NULL;
	}
	if (!cas(&w->chunk->state, &expect, expect | MS_STATE_WRITING)) {
		w->chunk = NULL; /* sealed by the consumer while we were idle */
		return NULL;
	}
	w->pending = size;
	return w->data + w->len;
}

static void write_lost_record(struct ms_ring *r, struct ms_writer *w)
{
	struct ms_lost *rec = try_append(r, w, sizeof *rec);
	if (!rec)
		return; /* keep w->lost; the next chunk carries it */
	rec->h.type = MS_REC_LOST;
	rec->h.len = sizeof *rec;
	rec->h.flags = 0;
	rec->h.ts = ms_stamp(r);
	rec->count = w->lost;
	w->lost = 0;
	ms_ring_end(r, w);
}

void *ms_ring_begin(struct ms_ring *r, struct ms_writer *w, uint32_t size)
{
	/*
	 * A record that can never fit (or breaks I7) would make the loop below
	 * seal and take fresh chunks forever: drop it, counted.
	 */
	if (size < sizeof(struct ms_record_header) || size % 8 != 0 || size > r->data_cap ||
	    size > UINT16_MAX) {
		w->lost++;
		__atomic_fetch_add(&r->hdr->dropped_events, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	for (;;) {
		if (w->chunk) {
			void *p = try_append(r, w, size);
			if (p)
				return p;
		}
		if (!take_chunk(r, w)) {
			w->lost++;
			__atomic_fetch_add(&r->hdr->dropped_events, 1, __ATOMIC_RELAXED);
			return NULL;
		}
		if (w->lost)
			write_lost_record(r, w);
	}
}

void ms_ring_end(struct ms_ring *r, struct ms_writer *w)
{
	(void)r;
	w->len += w->pending;
	w->pending = 0;
	store_release(&w->chunk->state, w->gen | w->len);
}

void ms_ring_seal(struct ms_ring *r, struct ms_writer *w)
{
	(void)r;
	if (w->chunk) {
		uint64_t expect = w->gen | w->len;
		cas(&w->chunk->state, &expect, expect | MS_STATE_SEALED);
		w->chunk = NULL;
	}
}

void ms_ring_forget(struct ms_writer *w)
{
	w->chunk = NULL;
	w->data = NULL;
	w->len = 0;
	w->pending = 0;
}
