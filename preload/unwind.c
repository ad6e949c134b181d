/*
 * unwind.c — call stacks of allocation calls, with libunwind.
 *
 * unw_backtrace walks the stack with its fast frame cache; the caching
 * policy is per thread, so no lock is taken (the global cache locks).
 * Frames inside libmemscope.so itself (the hook, this file) are skipped by
 * address, which stays right whatever the compiler inlines: the first pc
 * returned is the return address into the caller of malloc.
 *
 * unw_backtrace's frame cache costs each thread 256 KiB, mapped and
 * zeroed on its first walk and unmapped at its exit: about 0.8 ms of page
 * faults, 16x the life of a thread that makes a few allocations (100000
 * short threads took 84 s instead of 5 s). So a thread's first
 * MS_WARM_UNWINDS stacks are walked frame by frame with unw_step, which
 * gives the same return addresses through libunwind's per-thread DWARF
 * cache (static TLS, nothing mapped); a thread that allocates more than
 * that pays for the frame cache once and gets its speed.
 */
#include "memscope_internal.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

void ms_unwind_init(void)
{
	unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
}

static int is_self(uintptr_t pc)
{
	return pc >= ms_g.self_lo && pc < ms_g.self_hi;
}

#define MS_WARM_UNWINDS 64

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

unsigned ms_unwind(struct ms_tls *t, void **buf, unsigned depth, unsigned *first, int *truncated)
{
	int want = (int)depth + MS_UNWIND_SLACK + 1;
	int n, i = 0;

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
