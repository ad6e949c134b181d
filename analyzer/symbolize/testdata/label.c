/* A C function with an asm label, as glibc names its internal aliases:
 * DWARF gives it DW_AT_name "renamed" and DW_AT_linkage_name
 * "renamed_impl". The source name is reported. */
#include "where.h"

__attribute__((noinline)) int probe(const char *label) { PROBE_BODY(label); }

int renamed(int n) __asm__("renamed_impl");

__attribute__((noinline)) int renamed(int n)
{
	return probe("renamed") + n; /* @renamed */
}

int main(int argc, char **argv)
{
	(void)argv;
	return renamed(argc) == 12345;
}
