/*
 * resume.c — a program whose analyzer a test kills and replaces
 * (analyzer/e2e/resume_test.go). It says "ready", then runs one step per
 * line read from stdin and says "step N" when the step is done:
 *   step 1: 3000 blocks of 48 B from keep_small, kept in small[]
 *   step 2: every other one freed (1500); 200 of the rest grown to 200 B
 *           by realloc (grow_some)
 *   step 3: a list of 100 nodes of 32 B from make_list, its head dropped:
 *           1 direct leak of 32 B, 99 indirect (3168 B); then a child
 *           (fork) that leaks 7 blocks of 24 B from leak_in_child and
 *           exits 3, waited for
 *   step 4: 20000 malloc(32)/free pairs from churn, then 50 direct leaks
 *           of 16 B from leak_small
 *   step 5: small[] freed but its first 10 (reachable at exit)
 * At end of input it exits 0. No stdio: read(2) and write(2).
 */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SMALL 3000

void *small[SMALL];
void *volatile sink;

struct node {
	struct node *next;
	char pad[24];
};

__attribute__((noinline)) static void keep_small(void)
{
	for (int i = 0; i < SMALL; i++)
		small[i] = malloc(48);
}

__attribute__((noinline)) static void grow_some(void)
{
	for (int i = 0; i < SMALL; i += 2) {
		free(small[i]);
		small[i] = NULL;
	}
	for (int i = 1; i < 400; i += 2)
		small[i] = realloc(small[i], 200);
}

__attribute__((noinline)) static void make_list(void)
{
	struct node *head = NULL;
	for (int i = 0; i < 100; i++) {
		struct node *n = malloc(sizeof *n);
		n->next = head;
		head = n;
	}
	sink = head;
	sink = NULL;
}

__attribute__((noinline)) static void leak_in_child(void)
{
	for (int i = 0; i < 7; i++)
		sink = malloc(24);
	sink = NULL;
}

static void fork_leaking_child(void)
{
	pid_t c = fork();
	if (c == 0) {
		leak_in_child();
		exit(3);
	}
	if (c > 0)
		waitpid(c, NULL, 0);
}

__attribute__((noinline)) static void churn(void)
{
	for (int i = 0; i < 20000; i++) {
		sink = malloc(32);
		free(sink);
	}
	sink = NULL;
}

__attribute__((noinline)) static void leak_small(void)
{
	for (int i = 0; i < 50; i++)
		sink = malloc(16);
	sink = NULL;
}

__attribute__((noinline)) static void free_most(void)
{
	for (int i = 10; i < SMALL; i++) {
		free(small[i]);
		small[i] = NULL;
	}
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
	say("ready\n");
	if (!next_line())
		return 0;
	keep_small();
	say("step 1\n");
	if (!next_line())
		return 0;
	grow_some();
	say("step 2\n");
	if (!next_line())
		return 0;
	make_list();
	fork_leaking_child();
	say("step 3\n");
	if (!next_line())
		return 0;
	churn();
	leak_small();
	say("step 4\n");
	if (!next_line())
		return 0;
	free_most();
	say("step 5\n");
	while (next_line())
		;
	return 0;
}
