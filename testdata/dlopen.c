/*
 * dlopen.c — dlopen(argv[1]) (testdata/plugin.c built as a shared
 * library), call plugin_work (leaks 77 bytes inside the plugin), dlclose.
 * Exit status 0 if every step worked.
 */
#include <dlfcn.h>

void *volatile sink;

int main(int argc, char **argv)
{
	if (argc < 2)
		return 1;
	void *h = dlopen(argv[1], RTLD_NOW); /* LINE:main_dlopen */
	if (!h)
		return 2;
	void *(*work)(void) = (void *(*)(void))dlsym(h, "plugin_work");
	if (!work)
		return 3;
	sink = work(); /* LINE:main_work */
	if (dlclose(h) != 0)
		return 4;
	return 0;
}
