/*
 * pairs.c N DEPTH [rss] — benchmark workload: recurses DEPTH frames deep,
 * then times N malloc(64)/free pairs and prints the mean cost of one pair
 * in ns (2 events: ALLOC and FREE). With "rss", prints the peak resident
 * set (VmHWM, KiB) instead. Used by analyzer/e2e's benchmarks.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void *volatile sink;

static long long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

__attribute__((noinline)) double loop(long n)
{
	long long t0 = now_ns();
	for (long i = 0; i < n; i++) {
		sink = malloc(64);
		free(sink);
	}
	return (double)(now_ns() - t0) / (double)n;
}

__attribute__((noinline)) double recurse(int depth, long n)
{
	if (depth <= 0)
		return loop(n);
	double r = recurse(depth - 1, n);
	sink = 0; /* not a tail call */
	return r;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 1;
	double ns = recurse(atoi(argv[2]), atol(argv[1]));
	if (argc > 3 && strcmp(argv[3], "rss") == 0) {
		char line[256];
		FILE *f = fopen("/proc/self/status", "r");
		while (f && fgets(line, sizeof line, f))
			if (strncmp(line, "VmHWM:", 6) == 0)
				printf("%ld\n", strtol(line + 6, NULL, 10));
		return 0;
	}
	printf("%.1f\n", ns);
	return 0;
}
