/*
 * plugin.c — built as libplugin.so and dlopen'ed by dlopen.c:
 * plugin_work leaks 77 bytes (plugin_leak) and frees a 33-byte temporary.
 */
#include <stdlib.h>

__attribute__((noinline)) void *plugin_leak(void)
{
	return malloc(77); /* LINE:plugin_leak */
}

void *plugin_work(void)
{
	void *tmp = malloc(33);
	free(tmp);
	return plugin_leak(); /* LINE:plugin_work */
}
