/*
 * realloc.c — realloc chains: realloc(NULL, n) is a malloc, realloc(p, 0)
 * frees p (glibc returns NULL), growing and shrinking count one
 * allocation and one free each. One 300-byte block leaks (chain_leak).
 */
#include <stdlib.h>

void *volatile sink;
void *volatile null; /* volatile: the compiler turns realloc(NULL, n) into malloc(n) */

__attribute__((noinline)) int chain_free(void)
{
	void *p = realloc(null, 16); /* LINE:r16 */
	if (!p) return 1;
	p = realloc(p, 32);
	if (!p) return 2;
	p = realloc(p, 64);
	if (!p) return 3;
	p = realloc(p, 8); /* shrink: still one allocation and one free */
	if (!p) return 4;
	if (realloc(p, 0) != NULL) /* frees p */
		return 5;
	void *q = realloc(null, 0); /* malloc(0): a unique pointer */
	if (!q) return 6;
	free(q);
	return 0;
}

__attribute__((noinline)) void chain_leak(void)
{
	void *r = malloc(100);
	r = realloc(r, 200);
	r = realloc(r, 300); /* LINE:chain_leak */
	sink = r;
}

int main(void)
{
	int rc = chain_free();
	if (rc)
		return rc;
	chain_leak(); /* LINE:main_chain_leak */
	return 0;
}
