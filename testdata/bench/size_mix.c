// size_mix: the "sizes" workload of `make bench`: allocation churn over a
// mix of sizes from 8 B to 1 MiB, drawn from a fixed PRNG so every run does
// exactly the same calls.
//
//	size_mix OPS
//
// Sizes: 80% small (8..256 B), 18% medium (256 B..64 KiB), 2% large
// (64 KiB..1 MiB), each uniform in its band. 75% of blocks are freed right
// away; 25% are kept alive in a pool of KEPT slots, replacing (and freeing)
// a random earlier survivor, so they live for about KEPT*4 allocations.
// Each block's first and last bytes are written, as a program filling it
// would at least touch them.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define KEPT 4096

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

// xorshift64*: deterministic and cheap next to malloc.
static uint64_t next_random(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

static size_t draw_size(void)
{
	uint64_t r = next_random();
	unsigned band = (unsigned)(r % 100);
	uint64_t u = r >> 8;
	if (band < 80)
		return 8 + u % (256 - 8 + 1);
	if (band < 98)
		return 256 + u % ((64u << 10) - 256 + 1);
	return (64u << 10) + u % ((1u << 20) - (64u << 10) + 1);
}

static void *kept[KEPT];

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: size_mix OPS\n");
		return 2;
	}
	long ops = atol(argv[1]);
	unsigned long checksum = 0;
	for (long i = 0; i < ops; i++) {
		size_t n = draw_size();
		unsigned char *p = malloc(n);
		if (!p)
			abort();
		p[0] = (unsigned char)i;
		p[n - 1] = (unsigned char)n;
		checksum += p[0] + p[n - 1];
		uint64_t r = next_random();
		if (r % 4 == 0) {
			size_t slot = (size_t)(r >> 8) % KEPT;
			free(kept[slot]);
			kept[slot] = p;
		} else {
			free(p);
		}
	}
	for (size_t i = 0; i < KEPT; i++)
		free(kept[i]);
	// The checksum keeps the writes (and so the blocks) observable.
	return checksum == 1 ? 3 : 0;
}
