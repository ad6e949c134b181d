/*
 * threads.c — 8 threads storm the allocator at once: each names itself
 * "storm-N" (N = 1..8), makes ROUNDS malloc/free pairs of 16*N bytes and
 * leaks one block of 8*N bytes (storm_leak). Exit status 0.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#define THREADS 8
#define ROUNDS 1000

void *volatile sink[THREADS];
static pthread_barrier_t start;

__attribute__((noinline)) void *storm_leak(size_t n)
{
	return malloc(n); /* LINE:storm_leak */
}

__attribute__((noinline)) void storm_round(size_t n)
{
	void *p = malloc(n); /* LINE:storm_round */
	memset(p, 0, n);
	free(p);
}

static void *storm(void *arg)
{
	int n = (int)(intptr_t)arg;
	char name[16] = "storm-0";
	name[6] = (char)('0' + n);
	prctl(PR_SET_NAME, name, 0, 0, 0);
	pthread_barrier_wait(&start);
	for (int i = 0; i < ROUNDS; i++)
		storm_round(16u * (unsigned)n);
	sink[n - 1] = storm_leak(8u * (unsigned)n); /* LINE:storm_leak_call */
	return NULL;
}

int main(void)
{
	pthread_t th[THREADS];
	pthread_barrier_init(&start, NULL, THREADS);
	for (int i = 0; i < THREADS; i++)
		if (pthread_create(&th[i], NULL, storm, (void *)(intptr_t)(i + 1)) != 0) /* LINE:main_pthread_create */
			return 1;
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start);
	return 0;
}
