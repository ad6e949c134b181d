/*
 * liveheap.c — `make bench`'s leak check workload: N blocks of SIZE bytes
 * (default 1,000,000 x 100: 100 MB in 1 M blocks) still allocated at
 * exit, chained from a global head, so the check follows 900,000
 * pointers; every 10th block is left out of the chain: a direct leak.
 *   liveheap [N [SIZE [wait]]]
 * With "wait" it then blocks until its stdin ends (the live benchmark
 * snapshots it meanwhile) and writes "ready" to stdout first.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct node {
	struct node *next;
};

struct node *head;

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	long size = argc > 2 ? atol(argv[2]) : 100;
	if (size < (long)sizeof(struct node))
		size = sizeof(struct node);
	for (long i = 0; i < n; i++) {
		struct node *b = malloc((size_t)size);
		if (!b)
			return 1;
		if (i % 10 == 9) {
			b->next = NULL; /* lost */
			continue;
		}
		b->next = head;
		head = b;
	}
	if (argc > 3 && strcmp(argv[3], "wait") == 0) {
		char c;
		if (write(1, "ready\n", 6) != 6)
			return 1;
		while (read(0, &c, 1) > 0)
			;
	}
	return 0;
}
