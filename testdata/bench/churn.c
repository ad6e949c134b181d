// churn: threads allocating and freeing concurrently in random order, the
// address stream of the engine's recorded benchmark (`make bench`).
//
//	churn THREADS OPS KEPT
//
// Each of THREADS threads performs OPS allocations of 16..512 bytes into a
// pool of KEPT slots: each allocation replaces (and frees) the block in a
// random slot, so blocks die in random order, not first-in first-out. Every
// eighth operation is a realloc of a random slot instead. The blocks come
// from glibc's per-thread arenas: real addresses, reused as glibc reuses
// them. Sizes and slots are drawn from a fixed PRNG per thread.
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct job {
	long ops;
	long kept;
	uint64_t seed;
};

// xorshift64*: deterministic and cheap next to malloc.
static uint64_t next_random(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

static void *run(void *arg)
{
	struct job *j = arg;
	void **slots = calloc((size_t)j->kept, sizeof(void *));
	if (!slots)
		abort();
	uint64_t s = j->seed;
	for (long i = 0; i < j->ops; i++) {
		uint64_t r = next_random(&s);
		size_t slot = (size_t)(r % (uint64_t)j->kept);
		size_t size = 16 + (size_t)((r >> 32) % 497);
		if (i % 8 == 7 && slots[slot]) {
			void *p = realloc(slots[slot], size);
			if (!p)
				abort();
			slots[slot] = p;
			continue;
		}
		free(slots[slot]);
		char *p = malloc(size);
		if (!p)
			abort();
		p[0] = 1;
		slots[slot] = p;
	}
	for (long k = 0; k < j->kept; k++)
		free(slots[k]);
	free(slots);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: churn THREADS OPS KEPT\n");
		return 2;
	}
	int threads = atoi(argv[1]);
	long ops = atol(argv[2]), kept = atol(argv[3]);
	if (threads < 1 || threads > 256 || ops < 0 || kept < 1) {
		fprintf(stderr, "churn: bad arguments\n");
		return 2;
	}
	struct job jobs[256];
	pthread_t tids[256];
	for (int t = 0; t < threads; t++) {
		jobs[t] = (struct job){ops, kept, 0x9e3779b97f4a7c15ull * (uint64_t)(t + 1)};
		if (pthread_create(&tids[t], NULL, run, &jobs[t]))
			abort();
	}
	for (int t = 0; t < threads; t++)
		pthread_join(tids[t], NULL);
	return 0;
}
