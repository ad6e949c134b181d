// alloc_loop: the micro and thread-scaling workload of `make bench`.
//
//	alloc_loop PAIRS DEPTH THREADS
//
// Each of THREADS threads descends DEPTH extra stack frames, then performs
// PAIRS malloc(32)/free pairs. Every thread does the same fixed amount of
// work, so N*PAIRS/time(N threads) over PAIRS/time(1 thread) is the
// throughput scaling. THREADS=1 runs in the main thread (no pthread at all).
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

struct job {
	long pairs;
	int depth;
};

__attribute__((noinline)) static void churn(long pairs)
{
	for (long i = 0; i < pairs; i++) {
		void *p = malloc(32);
		if (!p)
			abort();
		// The block escapes into an empty asm, so the compiler cannot
		// pair this malloc with its free and delete both (GCC does for
		// a block nobody looks at). No shared store: threads must not
		// contend on a cache line the allocator does not touch.
		__asm__ volatile("" : : "r"(p) : "memory");
		free(p);
	}
}

// descend recurses n frames before the loop. The empty asm after the call
// is a compiler barrier: the call is not in tail position, so it is neither
// a sibling call nor turned into a loop, and each level keeps a real frame.
__attribute__((noinline, noclone)) static void descend(int n, long pairs)
{
	if (n == 0)
		churn(pairs);
	else
		descend(n - 1, pairs);
	__asm__ volatile("" ::: "memory");
}

static void *thread_main(void *arg)
{
	const struct job *j = arg;
	descend(j->depth, j->pairs);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: alloc_loop PAIRS DEPTH THREADS\n");
		return 2;
	}
	struct job j = {.pairs = atol(argv[1]), .depth = atoi(argv[2])};
	int threads = atoi(argv[3]);
	if (j.pairs < 0 || j.depth < 0 || threads < 1 || threads > 256) {
		fprintf(stderr, "alloc_loop: bad arguments\n");
		return 2;
	}
	if (threads == 1) {
		thread_main(&j);
		return 0;
	}
	pthread_t tids[256];
	for (int t = 0; t < threads; t++)
		if (pthread_create(&tids[t], NULL, thread_main, &j) != 0) {
			fprintf(stderr, "alloc_loop: pthread_create failed\n");
			return 1;
		}
	for (int t = 0; t < threads; t++)
		pthread_join(tids[t], NULL);
	return 0;
}
