/*
 * phases.c — a program that allocates in steps a test drives, for the live
 * view: it reads one line from stdin per step and, when the step is done,
 * writes "step N" to stdout (so the test knows the heap at that point).
 *   step 1: 10 blocks of 1000 B from grow_a        heap 10000 B, 10 objects
 *   step 2: 5 blocks of 4000 B from grow_b         heap 30000 B, 15 objects
 *   step 3: grow_a's blocks freed                  heap 20000 B, 5 objects
 * At end of input it exits 0; grow_b's blocks stay in a global (reachable).
 * No stdio (its buffer would be one more block): read(2) and write(2).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void *a[10], *b[5];

__attribute__((noinline)) static void grow_a(void)
{
	for (int i = 0; i < 10; i++)
		a[i] = malloc(1000);
}

__attribute__((noinline)) static void grow_b(void)
{
	for (int i = 0; i < 5; i++)
		b[i] = malloc(4000);
}

static int next_line(void)
{
	char c;
	for (;;) {
		ssize_t n = read(0, &c, 1);
		if (n <= 0)
			return 0;
		if (c == '\n')
			return 1;
	}
}

static void say(const char *s)
{
	if (write(1, s, strlen(s)) < 0)
		_exit(2);
}

int main(void)
{
	if (!next_line())
		return 0;
	grow_a();
	say("step 1\n");
	if (!next_line())
		return 0;
	grow_b();
	say("step 2\n");
	if (!next_line())
		return 0;
	for (int i = 0; i < 10; i++)
		free(a[i]);
	say("step 3\n");
	while (next_line())
		;
	return 0;
}
