// lossy: allocations made while the analyzer is stopped, for the lossy
// mode test (analyzer/e2e TestAnalyzeLossy). No stdio, so the program's
// own calls are its only allocations.
//
// It allocates once and writes "ready\n", waits for a line on stdin,
// allocates BURST more times from the same call site (the test has
// stopped the analyzer: a lossy ring fills up and drops the rest),
// writes "done\n", waits for another line and exits 0. Nothing is
// freed: BURST + 1 blocks of 24 bytes, all allocated at LINE:burst.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BURST 100000

static void *blocks[BURST + 1];

__attribute__((noinline)) static void *one(void)
{
	return malloc(24); /* LINE:burst */
}

// wait_line reads stdin up to a newline; 0 at end of file or on error.
static int wait_line(void)
{
	char c;
	while (read(0, &c, 1) == 1)
		if (c == '\n')
			return 1;
	return 0;
}

int main(void)
{
	static const char *const say[2] = {"ready\n", "done\n"};
	int kept = 0;
	// One loop for both rounds, so every block has the same call stack.
	for (int round = 0; round < 2; round++) {
		int n = round == 0 ? 1 : BURST;
		for (int i = 0; i < n; i++)
			blocks[kept++] = one(); /* LINE:call */
		size_t len = strlen(say[round]);
		if (write(1, say[round], len) != (ssize_t)len || !wait_line())
			return 1;
	}
	return 0;
}
