/* A shared library: an exported function with an inlined helper, and a
 * static function that only .symtab (not .dynsym) names. */
#include "where.h"

__attribute__((noinline)) int lib_probe(const char *label) { PROBE_BODY(label); }

static inline __attribute__((always_inline)) int lib_inlined(int n)
{
	return lib_probe("lib_inlined") * n; /* @lib_inlined */
}

static __attribute__((noinline)) int lib_static(int n)
{
	return lib_probe("lib_static") + n; /* @lib_static */
}

int lib_entry(int n)
{
	int r = lib_inlined(n); /* @lib_entry */
	return r + lib_static(n); /* @lib_entry_static */
}
