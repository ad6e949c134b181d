/*
 * exits.c — processes that end without exit(). The library wraps _exit
 * and _Exit to record the exit status; children it was not told of must
 * pass through without touching the parent's state.
 *
 *   - a vfork child ends with _exit(3) (it shares the parent's memory);
 *   - posix_spawn of a missing program fails with ENOENT (glibc's child
 *     _exits inside the parent's memory);
 *   - a fork child allocates 22 bytes and ends with _Exit(9);
 *   - main keeps 111 bytes, then ends with _exit(42) from its SIGUSR1
 *     handler.
 * Nothing is freed. The fork child inherits the 111-byte block. No stdio:
 * stdout is "vfork 3\nspawn 2\nfork 9\n", written with write(2).
 */
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

void *volatile sink[2];

__attribute__((noinline)) void *in_main(void)
{
	return malloc(111); /* LINE:in_main */
}

__attribute__((noinline)) void *in_child(void)
{
	return malloc(22); /* LINE:in_child */
}

// say writes "WHAT N\n" for a small N.
static void say(const char *what, int n)
{
	char buf[32];
	size_t len = strlen(what);
	memcpy(buf, what, len);
	buf[len++] = ' ';
	if (n >= 10)
		buf[len++] = (char)('0' + n / 10 % 10);
	buf[len++] = (char)('0' + n % 10);
	buf[len++] = '\n';
	if (write(1, buf, len) != (ssize_t)len)
		_exit(1);
}

static void on_usr1(int sig)
{
	(void)sig;
	_exit(42);
}

int main(void)
{
	int st;
	sink[0] = in_main(); /* LINE:main_in_main */

	pid_t pid = vfork();
	if (pid == 0)
		_exit(3);
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return 1;
	say("vfork", WEXITSTATUS(st));

	char *argv[] = {"/nonexistent/program", NULL};
	int err = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
	if (err == 0)
		return 2;
	say("spawn", err);

	pid = fork();
	if (pid == 0) {
		sink[1] = in_child(); /* LINE:main_in_child */
		_Exit(9);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
		return 3;
	say("fork", WEXITSTATUS(st));

	signal(SIGUSR1, on_usr1);
	raise(SIGUSR1);
	return 4;
}
