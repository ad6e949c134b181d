/*
 * crash.c MODE — allocates, then ends abruptly. Before the end: a 1000-byte
 * block leaks (crash_leak) and a 24-byte temporary is freed.
 * MODE: _exit (status 9), abort (SIGABRT), kill (SIGKILL to itself),
 * segv (SIGSEGV), exit (normal exit, status 0).
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile sink;

__attribute__((noinline)) void *crash_leak(void)
{
	return malloc(1000); /* LINE:crash_leak */
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return 1;
	void *tmp = malloc(24);
	free(tmp);
	sink = crash_leak(); /* LINE:main_crash_leak */
	if (strcmp(argv[1], "_exit") == 0)
		_exit(9);
	if (strcmp(argv[1], "abort") == 0)
		abort();
	if (strcmp(argv[1], "kill") == 0)
		kill(getpid(), SIGKILL);
	if (strcmp(argv[1], "segv") == 0)
		*(volatile int *)0 = 1;
	return 0;
}
