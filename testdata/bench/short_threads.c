// short_threads: threads that live for one allocation, one after another,
// the shape of a thread pool that does not pool (`make bench`).
//
//	short_threads THREADS
//
// Each thread mallocs and frees 40 bytes and exits; main creates and joins
// them in sequence. What a profiler pays per thread (its per-thread state,
// caches, first records) is what this row measures.
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static void *one_allocation(void *arg)
{
	void *p = malloc(40);
	memset(p, 0, 40);
	free(p);
	return arg;
}

int main(int argc, char **argv)
{
	long threads = argc > 1 ? atol(argv[1]) : 10000;
	for (long i = 0; i < threads; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, one_allocation, NULL) != 0 || pthread_join(t, NULL) != 0)
			return 1;
	}
	return 0;
}
