/*
 * crowd.c — 1000 threads allocate at once on 2 cores, then 100000 short
 * threads run one after another (issue 18 §4). Each of the 1000 crowd
 * threads makes ROUNDS malloc/free pairs of 16*(n%8+1) bytes in
 * crowd_round and keeps one block of 24 bytes from crowd_keep in the
 * global kept[] (reachable at exit). Each of the SHORT threads in
 * sequence makes one malloc/free pair of 40 bytes in short_round.
 * Exit status 0. Usage: crowd [THREADS [ROUNDS [SHORT]]].
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static pthread_barrier_t start;
static int rounds = 100;
void *volatile *kept;

__attribute__((noinline)) void *crowd_keep(void)
{
	return malloc(24); /* LINE:crowd_keep */
}

__attribute__((noinline)) void crowd_round(size_t n)
{
	void *p = malloc(n); /* LINE:crowd_round */
	memset(p, 0, n);
	free(p);
}

static void *crowd(void *arg)
{
	int n = (int)(intptr_t)arg;
	pthread_barrier_wait(&start);
	for (int i = 0; i < rounds; i++)
		crowd_round(16u * (unsigned)(n % 8 + 1));
	kept[n] = crowd_keep();
	return NULL;
}

__attribute__((noinline)) void short_round(void)
{
	void *p = malloc(40); /* LINE:short_round */
	memset(p, 0, 40);
	free(p);
}

static void *short_lived(void *arg)
{
	(void)arg;
	short_round();
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = argc > 1 ? atoi(argv[1]) : 1000;
	int shorts = argc > 3 ? atoi(argv[3]) : 100000;
	if (argc > 2)
		rounds = atoi(argv[2]);
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	kept = calloc((size_t)threads, sizeof(void *)); /* LINE:main_kept */
	pthread_t *th = calloc((size_t)threads, sizeof(pthread_t)); /* LINE:main_th */
	if (kept == NULL || th == NULL)
		return 1;
	pthread_barrier_init(&start, NULL, (unsigned)threads);
	for (int i = 0; i < threads; i++)
		if (pthread_create(&th[i], &attr, crowd, (void *)(intptr_t)i) != 0)
			return 1;
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start);
	free(th);
	for (int i = 0; i < shorts; i++) {
		pthread_t t;
		if (pthread_create(&t, &attr, short_lived, NULL) != 0 || pthread_join(t, NULL) != 0)
			return 1;
	}
	return 0;
}
