/*
 * handoff.c — main allocates ROUNDS blocks of 24 bytes and hands each to
 * a second thread, which frees it at once: glibc gives main back, soon
 * after, the blocks the other thread freed (once that thread's tcache
 * bin holds 7, its frees go to main's arena), so one address is freed by
 * one thread and allocated by the other within nanoseconds, ROUNDS
 * times: the case the analyzer's reuse rule (analyzer/engine/reuse.go)
 * pairs whatever order the two records' stamps came in. Then main leaks
 * 3 blocks of 40 bytes (handoff_leak). No stdio. Exit status 0.
 *   allocations: ROUNDS + 3 + 1 (the DTV of the thread, calloc in
 *   _dl_allocate_tls, kept with its cached stack); frees: ROUNDS.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#define ROUNDS 100000
#define DONE ((void *)1)

static void *mailbox; /* a block on its way to the freer, or NULL */
void *volatile sink;

__attribute__((noinline)) void *handoff_alloc(void)
{
	return malloc(24); /* LINE:handoff_alloc */
}

__attribute__((noinline)) void handoff_leak(void)
{
	sink = malloc(40); /* LINE:handoff_leak */
	memset(sink, 0, 40);
	sink = NULL;
}

static void *freer(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "freer", 0, 0, 0);
	for (;;) {
		void *p;
		while (!(p = __atomic_exchange_n(&mailbox, NULL, __ATOMIC_ACQUIRE)))
			sched_yield(); /* valgrind runs one thread at a time */
		if (p == DONE)
			return NULL;
		free(p);
	}
}

static void post(void *p)
{
	void *expect = NULL;
	while (!__atomic_compare_exchange_n(&mailbox, &expect, p, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
		expect = NULL;
		sched_yield();
	}
}

int main(void)
{
	pthread_t th;
	if (pthread_create(&th, NULL, freer, NULL) != 0) /* LINE:main_pthread_create */
		return 1;
	for (int i = 0; i < ROUNDS; i++) {
		void *p = handoff_alloc(); /* LINE:main_handoff_alloc */
		memset(p, 0, 24);
		post(p);
	}
	post(DONE);
	pthread_join(th, NULL);
	for (int i = 0; i < 3; i++)
		handoff_leak(); /* LINE:main_handoff_leak */
	return 0;
}
