/*
 * entry.c — every allocation entry point once, with alignments checked,
 * and the failures that must record nothing and keep errno:
 * calloc overflow (ENOMEM), posix_memalign with a bad alignment (EINVAL,
 * errno untouched), malloc(huge), reallocarray overflow, free(NULL).
 * Exit status 0 if every check held, else the number of the failed check.
 * One block leaks: memalign(64, 48) in leak_aligned.
 */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/*
 * -DVALGRIND_BUILD: the build used for the valgrind cross-check. Valgrind's
 * allocator replacements do not set errno on failure and abort on pvalloc.
 */
#ifdef VALGRIND_BUILD
#define ERRNO_IS(e) 1
#else
#define ERRNO_IS(e) (errno == (e))
#endif

static int aligned(void *p, size_t a)
{
	return p && ((uintptr_t)p % a) == 0;
}

void *volatile sink;

__attribute__((noinline)) void leak_aligned(void)
{
	sink = memalign(64, 48); /* LINE:leak_aligned */
}

int main(void)
{
	long page = sysconf(_SC_PAGESIZE);
	volatile size_t huge = SIZE_MAX; /* volatile: no compile-time size warnings */
	void *volatile null = NULL;      /* volatile: the compiler turns realloc(NULL, n) into malloc(n) */
	void *p, *q;

	p = malloc(24);
	if (!p) return 1;
	free(p);
	p = calloc(4, 8);
	if (!p || ((char *)p)[31] != 0) return 2;
	free(p);
	p = realloc(null, 40); /* a malloc */
	if (!p) return 3;
	p = realloc(p, 4000); /* one allocation and one free */
	if (!p) return 4;
	free(p);
	p = reallocarray(null, 5, 8);
	if (!p) return 5;
	p = reallocarray(p, 10, 8);
	if (!p) return 6;
	free(p);
	if (posix_memalign(&p, 64, 100) != 0 || !aligned(p, 64)) return 7;
	free(p);
	p = aligned_alloc(128, 256);
	if (!aligned(p, 128)) return 8;
	free(p);
	p = memalign(256, 72);
	if (!aligned(p, 256)) return 9;
	free(p);
	p = valloc(100);
	if (!aligned(p, (size_t)page)) return 10;
	free(p);
#ifndef VALGRIND_BUILD /* valgrind 3.19 aborts on pvalloc: its cross-check is built without */
	p = pvalloc(100);
	if (!aligned(p, (size_t)page)) return 11;
	free(p);
#endif

	/* Failures: nothing recorded, errno as libc sets it. */
	errno = 0;
	q = calloc(huge / 2, 4);
	if (q || !ERRNO_IS(ENOMEM)) return 12;
	errno = 4321;
	if (posix_memalign(&q, 3, 16) != EINVAL || !ERRNO_IS(4321)) return 13;
	if (posix_memalign(&q, 24, 16) != EINVAL || !ERRNO_IS(4321)) return 14;
	errno = 0;
	q = malloc(huge);
	if (q || !ERRNO_IS(ENOMEM)) return 15;
	errno = 0;
	q = reallocarray(null, huge, 2);
	if (q || !ERRNO_IS(ENOMEM)) return 16;
	errno = 777;
	free(NULL);
	if (errno != 777) return 17;

	/* Success keeps errno. */
	errno = 555;
	p = malloc(10);
	if (!p || errno != 555) return 18;
	free(p);
	if (errno != 555) return 19;

	leak_aligned(); /* LINE:main_leak_aligned */
	return 0;
}
