/*
 * forkrace.c — the parent goes on right after fork(), before the child
 * has run: both run on one CPU as SCHED_BATCH, whose woken tasks do not
 * preempt the running one, and the parent forks right after a sleep, at
 * the start of a time slice; it stops the child (which would stop before
 * its first instruction), allocates and frees, then lets the child go.
 * So the child's first record comes after the parent's post-fork ones. The child must start with the parent's heap at the
 * fork all the same (include/memscope.h F1-F2), as valgrind's
 * per-process summary has it.
 *
 * Before the fork the parent allocates 111 bytes (kept) and 44 (freed
 * by the parent right after the fork: the child keeps its copy); after
 * it, the parent allocates 333, which the child never has. The child
 * allocates 222 and exits 0; the parent exits 0 if the child did.
 */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

void *volatile sink[4];

__attribute__((noinline)) void *kept(void)
{
	return malloc(111); /* LINE:kept */
}

__attribute__((noinline)) void *spare(void)
{
	return malloc(44); /* LINE:spare */
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
	cpu_set_t one;
	struct sched_param batch = {0};
	CPU_ZERO(&one);
	CPU_SET(sched_getcpu(), &one);
	/* The child inherits both. */
	if (sched_setaffinity(0, sizeof one, &one) != 0 || sched_setscheduler(0, SCHED_BATCH, &batch) != 0)
		return 3;
	sink[0] = kept();  /* LINE:main_kept */
	sink[1] = spare(); /* LINE:main_spare */
	usleep(2000);
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		sink[2] = in_child(); /* LINE:main_in_child */
		exit(0);
	}
	kill(pid, SIGSTOP);
	sink[3] = after_fork(); /* LINE:main_after_fork */
	free(sink[1]);
	kill(pid, SIGCONT);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return 2;
	return 0;
}
