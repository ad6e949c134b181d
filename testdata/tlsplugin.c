/*
 * tlsplugin.c — a library that testdata/reach.c dlopens (its "tlsdl"
 * case): it keeps a pointer only in its own __thread storage. The 8 KiB
 * array puts that storage past glibc's surplus of static TLS for dlopen'ed
 * libraries, so it is dynamic TLS, which glibc allocates on first use.
 * Built as: gcc -g -O0 -shared -fPIC -o libtlsplugin.so tlsplugin.c
 */
#include <stdlib.h>

static __thread struct {
	char pad[8192];
	void *kept;
} tls;

void tls_keep(size_t n)
{
	tls.pad[0] = 1;
	tls.kept = malloc(n);
}
