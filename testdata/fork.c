/*
 * fork.c — the parent leaks 111 bytes before fork and 333 after; the
 * child (which inherits the 111-byte block) leaks 222 and exits 0. The
 * parent exits 0 if the child did.
 */
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

void *volatile sink[3];

__attribute__((noinline)) void *before_fork(void)
{
	return malloc(111); /* LINE:before_fork */
}

__attribute__((noinline)) void *in_child(void)
{
	return malloc(222); /* LINE:in_child */
}

__attribute__((noinline)) void *after_fork(void)
{
	return malloc(333); /* LINE:after_fork */
}

int main(void)
{
	int st;
	sink[0] = before_fork(); /* LINE:main_before_fork */
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		sink[1] = in_child(); /* LINE:main_in_child */
		exit(0);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return 2;
	sink[2] = after_fork(); /* LINE:main_after_fork */
	return 0;
}
