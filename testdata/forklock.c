/*
 * forklock.c — fork while another thread holds the dynamic loader's lock
 * (it sits inside dl_iterate_phdr). glibc does not reset that lock in the
 * child, so anything in the child that calls dl_iterate_phdr (libunwind
 * does, for every new PC) would wait for ever. The program itself never
 * does: with or without memscope the child must allocate from two new
 * call sites, exit 5, and the parent print "child status 5".
 *   child leaks: 11 B (child_site1), 22 B (child_site2).
 */
#define _GNU_SOURCE
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int inside;

static int slow_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)info;
	(void)size;
	(void)data;
	inside = 1;
	usleep(100000); /* hold the lock across the parent's fork */
	return 1;
}

static void *holder(void *arg)
{
	(void)arg;
	for (;;)
		dl_iterate_phdr(slow_cb, NULL);
	return NULL;
}

__attribute__((noinline)) void *child_site1(void)
{
	return malloc(11); /* LINE:child_site1 */
}

__attribute__((noinline)) void *child_site2(void)
{
	return malloc(22); /* LINE:child_site2 */
}

int main(void)
{
	pthread_t t;
	pthread_create(&t, NULL, holder, NULL);
	while (!inside)
		usleep(1000);
	usleep(20000);
	pid_t pid = fork();
	if (pid == 0) {
		void *volatile a = child_site1();
		void *volatile b = child_site2();
		(void)a;
		(void)b;
		_exit(5);
	}
	int st;
	waitpid(pid, &st, 0);
	printf("child status %d\n", WEXITSTATUS(st));
	return 0;
}
