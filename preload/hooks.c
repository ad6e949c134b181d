/*
 * hooks.c — the allocation entry points of libmemscope.so.
 *
 * Each hook calls glibc's allocator first (__libc_*), then, if the call
 * succeeded and recording is on, writes one record into the calling
 * thread's chunk. Rules (DESIGN.md §5):
 *   - no malloc of our own, no locks, no stdio in here;
 *   - per-thread state in initial-exec TLS (state.c; no __tls_get_addr,
 *     which may malloc); busy makes nested calls (libunwind,
 *     dl_iterate_phdr, our own init, a signal handler that interrupts us)
 *     go straight to libc, unrecorded;
 *   - causal timestamps, read inside the record (ms_rec_open): ALLOC
 *     after the real call, FREE before it, REALLOC both (its record is
 *     open across the real call: ts_before for the old block, ts for the
 *     new one);
 *   - a failed call records nothing (a failed realloc, an empty REALLOC),
 *     and errno is exactly what libc left:
 *     we save it after the real call and restore it after recording;
 *   - the caller's frame (MS_CALLER()) is taken here, in the exported
 *     function, where the stack walk starts (unwind.c).
 * The hooks call into the other files (state.c initialises on the first
 * call); nothing calls back into this one.
 */
#include "memscope_internal.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

#define MS_EXPORT __attribute__((visibility("default")))

extern void *__libc_malloc(size_t);
extern void __libc_free(void *);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);
extern void *__libc_pvalloc(size_t);

/*
 * Returns the calling thread's state with busy set if this call is to be
 * recorded, NULL if it passes through. Pair with leave().
 */
static inline struct ms_tls *enter(void)
{
	struct ms_tls *t = ms_tls();
	int s;
	if (__builtin_expect(t->busy, 0)) {
		/*
		 * A signal handler that interrupted one of our hooks (or
		 * callbacks) calls the allocator: recording it would corrupt
		 * the record in progress, so it passes through, counted.
		 */
		if (__atomic_load_n(&ms_g.state, __ATOMIC_ACQUIRE) == MS_ACTIVE)
			__atomic_fetch_add(&t->unrecorded, 1, __ATOMIC_RELAXED);
		return NULL;
	}
	s = __atomic_load_n(&ms_g.state, __ATOMIC_ACQUIRE);
	if (__builtin_expect(s != MS_ACTIVE, 0)) {
		if (s != MS_UNINIT)
			return NULL;
		int e = errno;
		t->busy = 1;
		ms_init(t);
		t->busy = 0;
		errno = e;
		if (__atomic_load_n(&ms_g.state, __ATOMIC_ACQUIRE) != MS_ACTIVE)
			return NULL;
	}
	t->busy = 1;
	if (__builtin_expect(!t->announced, 0))
		ms_thread_announce(t);
	return t;
}

static inline void leave(struct ms_tls *t)
{
	if (__builtin_expect(t->unrecorded != 0, 0))
		ms_flush_unrecorded(t);
	t->busy = 0;
}

static void record_alloc(void *p, size_t size, int kind, size_t align, const struct ms_caller *c)
{
	struct ms_tls *t = enter(); /* may initialise, writing PROCESS start */
	if (!t)
		return;
	int e = errno;
	uint64_t stack = ms_stack_capture(t, c);
	/* Stamped in ms_rec_open: after the real call returned. */
	struct ms_alloc *r = ms_rec_open(t, MS_REC_ALLOC, sizeof *r, 0);
	if (r) {
		r->ptr = (uint64_t)(uintptr_t)p;
		r->size = size;
		r->stack_id = stack;
		r->kind = (uint16_t)kind;
		r->_pad = 0;
		r->align = (uint32_t)align;
		ms_rec_end(t);
	}
	errno = e;
	leave(t);
}

MS_EXPORT void *malloc(size_t n)
{
	void *p = __libc_malloc(n);
	if (p)
		record_alloc(p, n, MS_KIND_MALLOC, 0, MS_CALLER());
	return p;
}

MS_EXPORT void free(void *p)
{
	if (p) {
		struct ms_tls *t = enter();
		if (t) {
			int e = errno;
			/* Stamped in ms_rec_open: before the real free. */
			struct ms_free *r = ms_rec_open(t, MS_REC_FREE, sizeof *r, 0);
			if (r) {
				r->ptr = (uint64_t)(uintptr_t)p;
				ms_rec_end(t);
			}
			errno = e;
			leave(t);
		}
	}
	__libc_free(p);
}

MS_EXPORT void *calloc(size_t n, size_t size)
{
	void *p = __libc_calloc(n, size); /* checks n * size for overflow (ENOMEM) */
	if (p)
		record_alloc(p, n * size, MS_KIND_CALLOC, 0, MS_CALLER());
	return p;
}

/*
 * The REALLOC record is opened before the real call and closed after it:
 * ts_before (the free of old, stamped when the record opens) precedes the
 * real realloc, ts (the new block) follows it, and the chunk stays WRITING
 * in between, so the consumer's watermark cannot pass ts_before while the
 * call runs (see ms_rec_open). A realloc that fails leaves old as it was:
 * its record then carries neither pointer (the analyzer applies nothing).
 */
static inline void *do_realloc(void *old, size_t n, int kind, const struct ms_caller *c)
{
	struct ms_tls *t = enter();
	if (!t)
		return __libc_realloc(old, n);
	int e = errno;
	/* realloc(p, 0) with p != NULL is a free in glibc: no stack, like FREE. */
	int frees_only = old && n == 0;
	uint64_t stack = frees_only ? 0 : ms_stack_capture(t, c);
	struct ms_realloc *r = ms_rec_open(t, MS_REC_REALLOC, sizeof *r, 0);
	errno = e;
	void *p = __libc_realloc(old, n);
	e = errno;
	if (r) {
		/*
		 * NULL is a failure (old still valid, errno ENOMEM), except for
		 * realloc(p, 0) with p != NULL, which glibc turns into free(p).
		 */
		int done = p || frees_only;
		uint64_t after = ms_stamp(&ms_g.ring);
		r->ts_before = r->h.ts;
		/* Unordered reads (ring.h ms_tsc) never make the record go backwards. */
		r->h.ts = after > r->ts_before ? after : r->ts_before;
		r->old_ptr = done ? (uint64_t)(uintptr_t)old : 0;
		r->new_ptr = (uint64_t)(uintptr_t)p;
		r->size = p ? n : 0;
		r->stack_id = p ? stack : 0;
		r->kind = (uint16_t)kind;
		r->_pad = 0;
		r->_pad2 = 0;
		ms_rec_end(t);
	}
	errno = e;
	leave(t);
	return p;
}

MS_EXPORT void *realloc(void *old, size_t n)
{
	return do_realloc(old, n, MS_KIND_REALLOC, MS_CALLER());
}

MS_EXPORT void *reallocarray(void *old, size_t n, size_t size)
{
	size_t bytes;
	if (__builtin_mul_overflow(n, size, &bytes)) {
		errno = ENOMEM; /* as glibc's __libc_reallocarray */
		return NULL;
	}
	return do_realloc(old, bytes, MS_KIND_REALLOCARRAY, MS_CALLER());
}

MS_EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
	/* glibc's check: a power-of-two multiple of sizeof(void *). */
	if (align % sizeof(void *) != 0 || align == 0 ||
	    ((align / sizeof(void *)) & (align / sizeof(void *) - 1)) != 0)
		return EINVAL;
	void *p = __libc_memalign(align, n); /* what __posix_memalign calls */
	if (!p)
		return ENOMEM;
	*out = p;
	record_alloc(p, n, MS_KIND_POSIX_MEMALIGN, align, MS_CALLER());
	return 0;
}

/* glibc 2.36: aligned_alloc is an alias of __libc_memalign. */
MS_EXPORT void *aligned_alloc(size_t align, size_t n)
{
	void *p = __libc_memalign(align, n);
	if (p)
		record_alloc(p, n, MS_KIND_ALIGNED_ALLOC, align, MS_CALLER());
	return p;
}

MS_EXPORT void *memalign(size_t align, size_t n)
{
	void *p = __libc_memalign(align, n);
	if (p)
		record_alloc(p, n, MS_KIND_MEMALIGN, align, MS_CALLER());
	return p;
}

MS_EXPORT void *valloc(size_t n)
{
	void *p = __libc_valloc(n);
	if (p)
		record_alloc(p, n, MS_KIND_VALLOC, ms_g.page_size, MS_CALLER());
	return p;
}

MS_EXPORT void *pvalloc(size_t n)
{
	void *p = __libc_pvalloc(n);
	if (p)
		record_alloc(p, n, MS_KIND_PVALLOC, ms_g.page_size, MS_CALLER());
	return p;
}

/*
 * For programs that never allocate (and to resolve dlopen/dlclose outside
 * any malloc hook). Runs after libc's own initialisation.
 */
__attribute__((constructor)) static void ms_constructor(void)
{
	struct ms_tls *t = ms_tls();
	if (__atomic_load_n(&ms_g.state, __ATOMIC_ACQUIRE) == MS_UNINIT && !t->busy) {
		int e = errno;
		t->busy = 1;
		ms_init(t);
		t->busy = 0;
		errno = e;
	}
	ms_modules_init();
}

/* Normal exit: seal the exiting thread's chunk so the consumer need not wait. */
__attribute__((destructor)) static void ms_destructor(void)
{
	struct ms_tls *t = ms_tls();
	if (t->busy || __atomic_load_n(&ms_g.state, __ATOMIC_ACQUIRE) != MS_ACTIVE)
		return;
	t->busy = 1;
	ms_ring_seal(&ms_g.ring, &t->w);
	t->busy = 0;
}
