/*
 * unwind.c — call stacks of allocation calls, with libunwind.
 *
 * unw_backtrace walks the stack with its fast frame cache; the caching
 * policy is per thread, so no lock is taken (the global cache locks).
 * Frames inside libmemscope.so itself (the hook, this file) are skipped by
 * address, which stays right whatever the compiler inlines: the first pc
 * returned is the return address into the caller of malloc.
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

unsigned ms_unwind(void **buf, unsigned depth, unsigned *first, int *truncated)
{
	int want = (int)depth + MS_UNWIND_SLACK + 1;
	int n = unw_backtrace(buf, want);
	int i = 0;

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
