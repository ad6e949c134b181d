/*
 * leaks.c — leaks of known sizes at known lines, some through several
 * call levels. No stdio: its buffer would be a libc allocation.
 *   leaked: 100 B (leak_direct), 3 x 200 B (level3 via level2, level1),
 *           300 B (leak_calloc); freed: one 50 B temporary.
 */
#include <stdlib.h>
#include <string.h>

void *volatile sink[8];

__attribute__((noinline)) void *leak_direct(size_t n)
{
	return malloc(n); /* LINE:leak_direct */
}

__attribute__((noinline)) void *level3(size_t n)
{
	void *p = malloc(n); /* LINE:level3 */
	memset(p, 1, n);
	return p;
}

__attribute__((noinline)) void *level2(size_t n)
{
	return level3(n); /* LINE:level2 */
}

__attribute__((noinline)) void *level1(size_t n)
{
	return level2(n); /* LINE:level1 */
}

__attribute__((noinline)) void *leak_calloc(void)
{
	return calloc(10, 30); /* LINE:leak_calloc */
}

int main(void)
{
	void *tmp = malloc(50); /* LINE:temp */
	memset(tmp, 2, 50);
	free(tmp);
	sink[0] = leak_direct(100); /* LINE:main_direct */
	for (int i = 0; i < 3; i++)
		sink[1 + i] = level1(200); /* LINE:main_level1 */
	sink[4] = leak_calloc(); /* LINE:main_calloc */
	return 0;
}
