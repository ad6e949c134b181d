/*
 * unwind.c — call stacks of allocation calls.
 *
 * A hook passes the state of its caller (struct ms_caller: the return
 * address, the stack pointer at the call and rbp), so the walk starts at
 * the first frame that belongs in a report. Three layers, the cheapest
 * first; each returns exactly the return addresses libunwind's unw_step
 * returns (MEMSCOPE_UNWIND_CHECK=1 compares every stack with it):
 *
 *   1. The validated stack cache. Each thread keeps the frames of its last
 *      stack: for frame i its return address ip_i, its stack pointer sp_i
 *      (the CFA of frame i-1), its rbp and where the next frame's rbp was
 *      read from. The walk of a new stack stops at the first frame whose
 *      (ip, sp) equal a cached frame's, and rbp too if the older frames
 *      read it before restoring it (F_NEEDS_RBP), then checks, with
 *      independent loads, that every cached return address slot and saved
 *      rbp slot above it still holds the cached value. If they do, the
 *      older frames are the cached ones: a walk reads nothing else, and the
 *      rules of a return address do not change within a code generation
 *      (cfi.c C3). A loop that allocates from one place checks about one
 *      word per frame and reuses the previous stack id outright.
 *   2. Rules compiled from .eh_frame (cfi.c) for the frames that are new;
 *      a frame without an FDE where rbp is 0 ends the stack, as libunwind
 *      ends it (the loader's start code, below library constructors).
 *   3. libunwind for any stack with a frame the rules do not cover (signal
 *      frames, a CFA kept in rbx as in the loader's trampolines, stack
 *      realignment, other code without CFI): the whole stack goes to unw_step
 *      for a thread's first MS_WARM_UNWINDS stacks, then to unw_backtrace,
 *      whose 256 KiB frame cache a short thread should not pay for.
 *
 * Safety: nothing is written to the program's stack. The fresh walk reads
 * only what the rules point at, each CFA above the last and at most
 * MAX_FRAME above it (libunwind reads the same words without checks). The
 * cache is only kept for a complete walk (one that reached the END rule of
 * _start or clone3) whose outermost frame is this thread's root frame, at
 * the top of the thread's own stack; so every cached slot lies on that
 * stack, and a splice (a fresh frame at the sp of a cached one, hence on
 * that stack) only reads memory between the splice point and the root,
 * which stays mapped while the thread lives. Coroutine stacks are walked
 * with rules only and never cached: freed and mapped again smaller, they
 * cannot make a cached slot point past their end.
 *
 * A signal handler that allocates while this thread is in a hook passes
 * through (tls.busy, hooks.c), so it never sees the cache half written.
 */
#include "memscope_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#define UNW_LOCAL_ONLY
#include <libunwind.h>

extern void *__libc_stack_end;

#define MS_WARM_UNWINDS 64
#define MAX_FRAME ((uintptr_t)256 << 20) /* the largest CFA step the rules may take */
#define ROOT_SPAN ((uintptr_t)1 << 20)   /* root frame to the thread's TCB, at most */

/* One frame of the cache; slot carries the F_* flags in its low bits (8-aligned). */
struct frame {
	uintptr_t ip, sp, rbp;
	uintptr_t slot; /* where the next frame's rbp was read, 0 if unchanged */
};
#define F_NEEDS_RBP 1 /* this frame or an older one reads rbp before restoring it */
#define F_CFA_RBP 2   /* this frame's CFA is rbp-based */
#define F_FLAGS 3

#define VSC_FRAMES (MS_UNWIND_VSC_DEPTH + 1)

enum stop { STOP_END = 1, STOP_ZERO, STOP_LIMIT };

#define RULE_CACHE 128 /* per thread, direct-mapped: 2 KiB of TLS */

/* Per-thread cache: two frame arrays, the current one and the next. */
struct vsc {
	uint32_t n;      /* frames of f[cur]; 0: nothing cached */
	uint32_t cur;
	uint32_t gen;    /* code generation of the cached frames */
	uint32_t stored; /* the last walk became the cached stack */
	uintptr_t root_sp, root_ip; /* the thread's outermost frame, once known */
	uint64_t id, id_epoch; /* the cached stack's id, and the process that wrote it */
	struct frame f[2][VSC_FRAMES];
	/* The last rules this thread looked up, by return address (cfi.c's are shared). */
	struct {
		uintptr_t ra;
		uint64_t rule;
	} rules[RULE_CACHE];
};

static __thread struct vsc vsc __attribute__((tls_model("initial-exec")));

static int check_mode;

void ms_unwind_init(void)
{
	const char *v = ms_getenv("MEMSCOPE_UNWIND_CHECK");
	check_mode = v && v[0] == '1' && !v[1];
	ms_cfi_init(); /* if it fails, every stack goes to libunwind */
}

/*
 * libunwind sets itself up on its first use (tdep_init): two mmaps and a
 * pipe it keeps open for validating addresses, which takes the program's
 * two lowest free file descriptors (a program's first open() returned 5
 * instead of 3). Most processes never need libunwind (their frames all
 * have rules), so it is first called, and set up, when a stack needs it.
 * Only the first caller sets the caching policy; a thread that comes
 * meanwhile does not wait (a fork child could wait forever for a thread
 * it does not have) and unwinds with libunwind's default global cache,
 * which gives the same frames.
 */
static int libunwind_policy_set;

static void libunwind_prepare(void)
{
	if (__atomic_load_n(&libunwind_policy_set, __ATOMIC_ACQUIRE))
		return;
	if (__atomic_exchange_n(&libunwind_policy_set, 1, __ATOMIC_ACQ_REL) == 0)
		unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
}

static int is_self(uintptr_t pc)
{
	return pc >= ms_g.self_lo && pc < ms_g.self_hi;
}

/* ---- layer 3: libunwind ---- */

/* unw_backtrace without its frame cache: the loop it falls back to. */
static int walk_frames(void **buf, int want)
{
	unw_context_t uc;
	unw_cursor_t cursor;
	int n = 0;

	if (unw_getcontext(&uc) < 0 || unw_init_local(&cursor, &uc) < 0)
		return 0;
	while (n < want) {
		unw_word_t ip;
		if (unw_get_reg(&cursor, UNW_REG_IP, &ip) < 0)
			break;
		buf[n++] = (void *)(uintptr_t)ip;
		if (unw_step(&cursor) <= 0)
			break;
	}
	return n;
}

/*
 * libunwind's stack, our own frames dropped: at most depth pcs from
 * buf[*first]. unw_step for the thread's first MS_WARM_UNWINDS calls,
 * then unw_backtrace (the same addresses, with its frame cache).
 */
static unsigned libunwind_stack(struct ms_tls *t, void **buf, unsigned depth, unsigned *first,
				int *truncated)
{
	int want = (int)depth + MS_UNWIND_SLACK + 1;
	int n, i = 0;

	libunwind_prepare();
	if (t->unwinds < MS_WARM_UNWINDS) {
		t->unwinds++;
		n = walk_frames(buf, want);
	} else {
		n = unw_backtrace(buf, want);
	}
	*first = 0;
	*truncated = 0;
	if (n <= 0)
		return 0;
	while (i < n && is_self((uintptr_t)buf[i]))
		i++;
	*first = (unsigned)i;
	n -= i;
	if ((unsigned)n > depth) {
		*truncated = 1;
		n = (int)depth;
	}
	return (unsigned)n;
}

/* ---- layer 1: the validated stack cache ---- */

/*
 * Checks the cached frames after k up to last: each one's return address
 * is still in its slot (just below its sp, the CFA of the frame before),
 * and its rbp, where an older frame reads it, in the slot it came from.
 * Returns 0 if all hold, else the index of the first frame that changed.
 *
 * The return addresses are compared without a branch each (the
 * differences or'ed together), and the frames walked again to find the
 * first that changed only if one did: 4% less of the program's CPU at
 * depth 40, where a loop allocating from one place checks 40 frames a
 * call. (The rbp checks keep their branch, rarely taken; taking their
 * loads out of it too was slower.) Reading the slots past one that
 * changed is as safe as reading them all: every cached slot lies on this
 * thread's stack between the frame at k and the root (see above).
 */
static unsigned validate(const struct frame *f, unsigned k, unsigned last)
{
	uintptr_t changed = 0;
	for (unsigned i = k + 1; i <= last; i++) {
		uintptr_t slot = f[i - 1].slot & ~(uintptr_t)F_FLAGS;
		changed |= *(const uintptr_t *)(f[i].sp - 8) ^ f[i].ip;
		if (slot && (f[i].slot & F_NEEDS_RBP) && *(const uintptr_t *)slot != f[i].rbp)
			changed = 1;
	}
	if (!changed)
		return 0;
	for (unsigned i = k + 1; i <= last; i++) {
		uintptr_t slot = f[i - 1].slot & ~(uintptr_t)F_FLAGS;
		if (*(const uintptr_t *)(f[i].sp - 8) != f[i].ip)
			return i;
		if (slot && (f[i].slot & F_NEEDS_RBP) && *(const uintptr_t *)slot != f[i].rbp)
			return i;
	}
	return 0;
}

/*
 * F_NEEDS_RBP of frames [0, n), from frame n-1 in; needs is the flag of
 * frame n (0 past the outermost frame of a complete walk, which reads
 * nothing). A spliced suffix keeps its flags: only the new frames need it.
 */
static void mark_needs_rbp(struct frame *f, unsigned n, uintptr_t needs)
{
	for (unsigned i = n; i-- > 0;) {
		uintptr_t slot = f[i].slot & ~(uintptr_t)F_FLAGS;
		if (f[i].slot & F_CFA_RBP)
			needs = 1;
		else if (slot)
			needs = 0;
		f[i].slot = (f[i].slot & ~(uintptr_t)F_NEEDS_RBP) | needs;
	}
}

/*
 * The thread's root frame: the outermost one, at the top of the stack the
 * thread started on (the main stack, below __libc_stack_end, or a thread's
 * stack, below its TCB). Set by the first complete walk that ends there.
 */
static int is_root(struct vsc *v, uintptr_t sp, uintptr_t ip)
{
	uintptr_t main_top = (uintptr_t)__libc_stack_end + 4096;
	uintptr_t tcb = (uintptr_t)pthread_self();

	if (v->root_sp)
		return sp == v->root_sp && ip == v->root_ip;
	if (!(sp < main_top && main_top - sp <= 65536) && !(sp < tcb && tcb - sp <= ROOT_SPAN))
		return 0;
	v->root_sp = sp;
	v->root_ip = ip;
	return 1;
}

/* ms_cfi_rule through the thread's small cache: the shared table is 1 MiB, mostly out of cache. */
static inline uint64_t rule_of(struct vsc *v, uintptr_t ra, uint32_t gen)
{
	unsigned h = (unsigned)((ra * 0x9e3779b97f4a7c15ull) >> 57) & (RULE_CACHE - 1);
	if (v->rules[h].ra == ra && MS_RULE_GEN(v->rules[h].rule) == gen)
		return v->rules[h].rule;
	uint64_t rule = ms_cfi_rule(ra);
	v->rules[h].ra = ra;
	v->rules[h].rule = rule;
	return rule;
}

enum walk_result { WALK_FALLBACK = -1, WALK_NEW = 0, WALK_SAME = 1 };

/*
 * Walks the stack from c: at most limit frames into out (limit = depth +
 * 1: a frame at index depth means truncated). Returns WALK_SAME if the
 * stack is the thread's previous one (out untouched then), WALK_NEW with
 * *n frames in out, or WALK_FALLBACK.
 */
static int walk(const struct ms_caller *c, unsigned limit, void **out, unsigned *n_out)
{
	struct vsc *v = &vsc;
	uint32_t gen = ms_cfi_generation();
	const struct frame *prev = NULL;
	struct frame *next = NULL;
	unsigned pn = 0, k = 0, kmin = 0, j = 0;
	int spliced = 0;
	unsigned fresh = 0; /* with spliced: the frames walked before the cached suffix */
	uintptr_t ip = c->ip, sp = c->sp, rbp = c->rbp;
	enum stop stop;

	if (!gen)
		return WALK_FALLBACK;
	if (limit <= VSC_FRAMES) {
		next = v->f[v->cur ^ 1];
		if (v->gen == gen && v->n) {
			prev = v->f[v->cur];
			pn = v->n;
		}
	}
	for (;;) {
		if (pn) {
			while (k < pn && prev[k].sp < sp)
				k++;
			if (k < pn && k >= kmin && prev[k].sp == sp && prev[k].ip == ip &&
			    (!(prev[k].slot & F_NEEDS_RBP) || prev[k].rbp == rbp)) {
				/* A cached walk is complete (STOP_END): its frames from k are the rest. */
				unsigned take = pn - k, bad;
				if (take > limit - j)
					take = limit - j;
				bad = validate(prev, k, k + take - 1);
				if (!bad) {
					if (j == 0 && k == 0 && take == pn)
						return WALK_SAME;
					memcpy(next + j, prev + k, take * sizeof *next);
					for (unsigned i = 0; i < take; i++)
						out[j + i] = (void *)prev[k + i].ip;
					fresh = j;
					spliced = 1;
					j += take;
					stop = j == limit ? STOP_LIMIT : STOP_END;
					break;
				}
				kmin = bad; /* frames from bad on changed: splice only past them */
			}
		}
		out[j] = (void *)ip;
		if (next)
			next[j] = (struct frame){ip, sp, rbp, 0};
		if (++j == limit) {
			stop = STOP_LIMIT;
			break;
		}
		uint64_t rule = rule_of(v, ip, gen);
		if (rule & MS_RULE_FALLBACK)
			return WALK_FALLBACK;
		if (rule & MS_RULE_NO_FDE) {
			/* libunwind ends the stack here if rbp is 0 (cfi.c no_fde_rule). */
			if (rbp != 0)
				return WALK_FALLBACK;
			stop = STOP_ZERO; /* complete, but not this thread's root: not cached */
			break;
		}
		if (rule & MS_RULE_END) {
			stop = STOP_END;
			break;
		}
		uintptr_t cfa = ((rule & MS_RULE_CFA_RBP) ? rbp : sp) + (uint32_t)rule;
		if (cfa <= sp || cfa - sp > MAX_FRAME || (cfa & 7))
			return WALK_FALLBACK;
		int16_t rbp_off = (int16_t)(rule >> 32);
		uintptr_t ra = *(const uintptr_t *)(cfa - 8);
		if (next && (rule & MS_RULE_CFA_RBP))
			next[j - 1].slot = F_CFA_RBP;
		if (rbp_off) {
			uintptr_t slot = cfa + (intptr_t)rbp_off;
			if (slot < sp)
				return WALK_FALLBACK;
			rbp = *(const uintptr_t *)slot;
			if (next)
				next[j - 1].slot |= slot;
		}
		sp = cfa;
		if (ra == 0) {
			stop = STOP_ZERO;
			break;
		}
		ip = ra;
	}
	*n_out = j;
	if (next) {
		/* Keep only a complete walk rooted at the top of this thread's stack. */
		if (stop == STOP_END && is_root(v, next[j - 1].sp, next[j - 1].ip)) {
			if (spliced)
				mark_needs_rbp(next, fresh, next[fresh].slot & F_NEEDS_RBP);
			else
				mark_needs_rbp(next, j, 0);
			v->cur ^= 1;
			v->n = j;
			v->gen = gen;
			v->stored = 1;
			v->id_epoch = 0;
		} else if (stop != STOP_LIMIT) {
			v->n = 0;
		}
		/* STOP_LIMIT: a deeper stack than depth; the cached one stays as good as it was. */
	}
	return WALK_NEW;
}

/* ---- the check mode: every stack compared with libunwind's ---- */

/* Appends text, a decimal or a hex number to a message (no stdio here). */
struct msg {
	char buf[192];
	size_t n;
};

static void put_str(struct msg *m, const char *s)
{
	m->n += ms_strlcpy(m->buf + m->n, s, sizeof m->buf - m->n);
}

static void put_num(struct msg *m, uint64_t v, int hex)
{
	char tmp[24], *end = tmp + sizeof tmp - 1, *p = end;
	*end = 0;
	if (hex) {
		do
			*--p = "0123456789abcdef"[v & 15];
		while (v >>= 4);
		put_str(m, "0x");
	} else {
		p = ms_utoa(end, v);
	}
	put_str(m, p);
}

static void check_stack(struct ms_tls *t, void *const *ours, unsigned n, int truncated,
			unsigned depth)
{
	void *buf[MS_MAX_DEPTH + MS_UNWIND_SLACK + 1];
	unsigned first, m;
	int trunc;

	m = libunwind_stack(t, buf, depth, &first, &trunc);
	if (m != n || trunc != truncated) {
		struct msg msg = {.n = 0};
		put_str(&msg, "MEMSCOPE_UNWIND_CHECK: stacks differ in depth: ours has ");
		put_num(&msg, n, 0);
		put_str(&msg, truncated ? " frames and more, libunwind's " : " frames, libunwind's ");
		put_num(&msg, m, 0);
		put_str(&msg, trunc ? " and more" : "");
		ms_say(msg.buf, NULL, NULL);
		abort();
	}
	for (unsigned i = 0; i < n; i++) {
		if (ours[i] != buf[first + i]) {
			struct msg msg = {.n = 0};
			put_str(&msg, "MEMSCOPE_UNWIND_CHECK: stacks differ at frame ");
			put_num(&msg, i, 0);
			put_str(&msg, ": ours has return address ");
			put_num(&msg, (uintptr_t)ours[i], 1);
			put_str(&msg, ", libunwind's ");
			put_num(&msg, (uintptr_t)buf[first + i], 1);
			ms_say(msg.buf, NULL, NULL);
			abort();
		}
	}
}

unsigned ms_unwind(struct ms_tls *t, const struct ms_caller *c, void **buf, unsigned depth,
		   unsigned *first, int *truncated, uint64_t *known_id)
{
	struct vsc *v = &vsc;
	unsigned n = 0;
	int r;

	v->stored = 0;
	*known_id = 0;
	*first = 0;
	r = walk(c, depth + 1, buf, &n);
	if (r == WALK_FALLBACK) {
		v->n = 0;
		return libunwind_stack(t, buf, depth, first, truncated);
	}
	if (r == WALK_SAME) {
		const struct frame *f = v->f[v->cur];
		n = v->n; /* a cached walk is complete and at most depth deep */
		*truncated = 0;
		if (v->id_epoch == ms_g.epoch && !check_mode) {
			*known_id = v->id;
			return 0;
		}
		for (unsigned i = 0; i < n; i++)
			buf[i] = (void *)f[i].ip;
		v->stored = 1; /* its id may be remembered now */
	} else {
		*truncated = n > depth;
		if (n > depth)
			n = depth;
	}
	if (check_mode)
		check_stack(t, buf, n, *truncated, depth);
	return n;
}

void ms_unwind_remember(uint64_t id)
{
	struct vsc *v = &vsc;
	if (v->stored) {
		v->id = id;
		v->id_epoch = ms_g.epoch;
	}
}
