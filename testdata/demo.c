/* demo.c — the program `make demo` profiles: a linked list that forgets
 * to free two of its nodes, and a buffer that grows by realloc. */
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

struct node {
	struct node *next;
	char payload[56];
};

static struct node *make_node(struct node *next)
{
	struct node *n = malloc(sizeof *n); /* 64 bytes */
	n->next = next;
	memset(n->payload, 'x', sizeof n->payload);
	return n;
}

static char *grow(char *buf, size_t n)
{
	return realloc(buf, n);
}

int main(void)
{
	struct node *list = NULL;
	for (int i = 0; i < 10; i++)
		list = make_node(list);
	/* Free all but the last two nodes: they leak. */
	for (int i = 0; i < 8; i++) {
		struct node *next = list->next;
		free(list);
		list = next;
	}
	list = NULL;

	char *buf = NULL;
	for (size_t n = 16; n <= 4096; n *= 2)
		buf = grow(buf, n);
	free(buf);

	puts("demo done");
	return 0;
}
