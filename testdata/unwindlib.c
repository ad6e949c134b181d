/*
 * unwindlib.c — built twice for unwind.c, with EXTRA_FRAMES 0 and 2: the
 * same entry point allocating from different depths, so the second build,
 * loaded where the first was, has other unwind rules at the same addresses.
 */
#include <stdlib.h>

#ifndef EXTRA_FRAMES
#define EXTRA_FRAMES 0
#endif

__attribute__((noinline)) static void lib_alloc(int depth)
{
	if (depth <= 0) {
		void *p = malloc(131);
		/* The block escapes: the compiler may not drop the pair. */
		__asm__ volatile("" : : "r"(p) : "memory");
		free(p);
	} else {
		lib_alloc(depth - 1);
	}
	__asm__ volatile("" ::: "memory");
}

void unwindlib_work(int depth)
{
	lib_alloc(depth + EXTRA_FRAMES);
	__asm__ volatile("" ::: "memory");
}
