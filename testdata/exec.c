/*
 * exec.c — fork + exec, and system().
 *   parent: leaks 64 bytes (parent_leak); forks a child that execs this
 *   program with the argument "child"; that image leaks 32 bytes
 *   (child_leak) and exits 3. Then system("exit 7") (/bin/sh, traced too).
 *   The parent exits 0 if both statuses were as expected.
 * The forked child's copy of the 64-byte block dies with its image at
 * exec: not a leak of anyone.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void *volatile sink;

__attribute__((noinline)) void *parent_leak(void)
{
	return malloc(64); /* LINE:parent_leak */
}

__attribute__((noinline)) void *child_leak(void)
{
	return malloc(32); /* LINE:child_leak */
}

int main(int argc, char **argv)
{
	int st;
	if (argc > 1 && strcmp(argv[1], "child") == 0) {
		sink = child_leak(); /* LINE:main_child_leak */
		return 3;
	}
	sink = parent_leak(); /* LINE:main_parent_leak */
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		execl(argv[0], argv[0], "child", (char *)NULL); /* argv[0] is a path */
		_exit(127);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 3)
		return 2;
	st = system("exit 7");
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 7)
		return 4;
	return 0;
}
