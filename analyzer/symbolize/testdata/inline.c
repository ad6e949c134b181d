/* Inlined frames: leaf and middle are always_inline (inlined even at -O0),
 * outer is a real function. Lines tagged @name are looked up by the test. */
#include "where.h"

__attribute__((noinline)) int probe(const char *label) { PROBE_BODY(label); }

static inline __attribute__((always_inline)) int leaf(int n)
{
	return probe("leaf") + n; /* @leaf */
}

static inline __attribute__((always_inline)) int middle(int n)
{
	int r = leaf(n * 2); /* @middle */
	return r + 1;
}

__attribute__((noinline)) int outer(int n)
{
	int r = middle(n + 1); /* @outer */
	return r * 3;
}

static __attribute__((noinline)) int helper(int n)
{
	return probe("helper") - n; /* @helper */
}

int main(int argc, char **argv)
{
	(void)argv;
	int r = outer(argc);  /* @main_outer */
	r += helper(argc);    /* @main_helper */
	r += probe("main");   /* @main */
	return r == 12345;
}
