/*
 * passring.c — 4 threads in a ring: each allocates ROUNDS blocks of
 * 16 + 8*i bytes (thread i = 0..3, pass_alloc), hands each to the next
 * thread and frees what the previous one handed it, so every block is
 * freed by another thread than its own and addresses move between four
 * CPUs' counters (handoff.c does it with two). Then main leaks one block
 * of 40 bytes (pass_leak). No stdio. Exit status 0.
 *   allocations: 4 * ROUNDS + 1 + 4 (the DTVs of the 4 threads, calloc
 *   in _dl_allocate_tls, kept with their cached stacks); frees: 4 * ROUNDS.
 *   bytes: ROUNDS * (16 + 24 + 32 + 40) + 40 + 4 DTVs.
 */
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define ROUNDS 25000

static void *mailbox[THREADS]; /* mailbox[i]: a block on its way to thread i */
void *volatile sink;

__attribute__((noinline)) void *pass_alloc(size_t n)
{
	return malloc(n); /* LINE:pass_alloc */
}

__attribute__((noinline)) void pass_leak(void)
{
	sink = malloc(40); /* LINE:pass_leak */
	sink = NULL;
}

static void post(int to, void *p)
{
	void *expect = NULL;
	while (!__atomic_compare_exchange_n(&mailbox[to], &expect, p, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
		expect = NULL;
		sched_yield(); /* valgrind runs one thread at a time */
	}
}

static void *take(int me)
{
	void *p;
	while (!(p = __atomic_exchange_n(&mailbox[me], NULL, __ATOMIC_ACQUIRE)))
		sched_yield();
	return p;
}

static void *member(void *arg)
{
	int me = (int)(long)arg;
	for (int i = 0; i < ROUNDS; i++) {
		void *p = pass_alloc(16u + 8u * (unsigned)me);
		memset(p, 0, 16);
		post((me + 1) % THREADS, p);
		free(take(me));
	}
	return NULL;
}

int main(void)
{
	pthread_t th[THREADS];
	for (long i = 0; i < THREADS; i++)
		if (pthread_create(&th[i], NULL, member, (void *)i) != 0) /* LINE:main_pthread_create */
			return 1;
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	pass_leak(); /* LINE:main_pass_leak */
	return 0;
}
