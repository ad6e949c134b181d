/*
 * manystacks.c — allocations from 16384 distinct call stacks, so that the
 * library's stack table grows through its regions (preload/slots.c) while
 * threads insert the same stacks at once.
 *
 * walk(i, 14) recurses 14 levels; the level that reads bit b of i calls on
 * from line walk_one if the bit is 1, walk_zero if it is 0, so every i
 * below 2^14 has a stack of its own. First two threads, released together,
 * each walk every i (racing to insert the same stacks) and free every
 * block; then main walks every i and keeps the blocks of i = 5 and
 * i = 16000 (sink), freeing the others. Every block is 24 bytes.
 *   allocations: 3 x 16384 + 2 (glibc: the DTV of each thread, calloc in
 *   _dl_allocate_tls, kept with the cached stacks of the joined threads);
 *   still allocated: the two kept blocks and the two DTVs.
 * Exit status 0.
 */
#include <pthread.h>
#include <stdlib.h>

#define LEVELS 14
#define STACKS (1u << LEVELS)

void *volatile sink[2];
static pthread_barrier_t start;

__attribute__((noinline)) void *walk(unsigned bits, int level)
{
	if (level == 0)
		return malloc(24); /* LINE:walk_leaf */
	if (bits & 1)
		return walk(bits >> 1, level - 1); /* LINE:walk_one */
	return walk(bits >> 1, level - 1); /* LINE:walk_zero */
}

static void *racer(void *arg)
{
	(void)arg;
	pthread_barrier_wait(&start);
	for (unsigned i = 0; i < STACKS; i++)
		free(walk(i, LEVELS)); /* LINE:racer_walk */
	return NULL;
}

int main(void)
{
	pthread_t th[2];
	pthread_barrier_init(&start, NULL, 2);
	for (int i = 0; i < 2; i++)
		if (pthread_create(&th[i], NULL, racer, NULL) != 0) /* LINE:main_pthread_create */
			return 1;
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start);
	for (unsigned i = 0; i < STACKS; i++) {
		void *p = walk(i, LEVELS); /* LINE:main_walk */
		if (i == 5)
			sink[0] = p;
		else if (i == 16000)
			sink[1] = p;
		else
			free(p);
	}
	return 0;
}
