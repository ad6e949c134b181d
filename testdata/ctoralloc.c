/*
 * ctoralloc.c — a shared library whose constructor allocates, as
 * libselinux's does in every program that links it: the loader runs it
 * from its start code, which has no CFI, so the stack ends in a frame
 * without an FDE (preload/cfi.c no_fde_rule). Built with
 * gcc -g -O0 -shared -fPIC; preloaded after libmemscope.so.
 *   allocations: one 40-byte block kept (ctor_block), one 16-byte block freed.
 */
#include <stdlib.h>

void *volatile ctor_block;

__attribute__((constructor)) static void ctor_alloc(void)
{
	void *tmp = malloc(16); /* LINE:ctor_tmp */
	ctor_block = malloc(40); /* LINE:ctor_block */
	free(tmp);
}
