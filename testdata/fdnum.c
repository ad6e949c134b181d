/*
 * fdnum.c — prints the file descriptor open() returns, after allocating
 * from a few call stacks: "3\n" when the program opened nothing else, as
 * it must stay under the library (it must not hold descriptors of its own
 * in the program). Exit status 0. No stdio.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *volatile sink;

__attribute__((noinline)) static void *make(size_t n)
{
	void *p = malloc(n);
	memset(p, 1, n);
	return p;
}

int main(void)
{
	for (int i = 0; i < 4; i++) {
		sink = make(16 + (size_t)i);
		free(sink);
	}
	int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 1;
	char out[16];
	int n = 0;
	char digits[16];
	int d = 0;
	do {
		digits[d++] = (char)('0' + fd % 10);
		fd /= 10;
	} while (fd > 0);
	while (d > 0)
		out[n++] = digits[--d];
	out[n++] = '\n';
	return write(1, out, (size_t)n) == n ? 0 : 1;
}
