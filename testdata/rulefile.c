/*
 * rulefile.c — allocations from 48 functions, each called from a line of
 * main of its own, so that a process computes the unwind rules of 97
 * return addresses of this executable: one in each function (after its
 * malloc), one in main after each call, and _start's (after its call of
 * __libc_start_main, whose rule ends the stack). The library leaves them
 * in the session's file of rules for this executable at exit, and the
 * next process of it reads them there (preload/rulecache.c). Writes "ok"
 * with write(2), which allocates nothing, frees every block, exits 0.
 */
#include <stdlib.h>
#include <unistd.h>

void *volatile sink;

#define SITE(n)                                         \
	__attribute__((noinline)) static void site##n(void) \
	{                                                   \
		sink = malloc(16 + n);                          \
		free(sink);                                     \
	}
#define SITES8(a) SITE(a##0) SITE(a##1) SITE(a##2) SITE(a##3) SITE(a##4) SITE(a##5) SITE(a##6) SITE(a##7)
SITES8(1)
SITES8(2)
SITES8(3)
SITES8(4)
SITES8(5)
SITES8(6)

#define CALL8(a)        \
	site##a##0();       \
	site##a##1();       \
	site##a##2();       \
	site##a##3();       \
	site##a##4();       \
	site##a##5();       \
	site##a##6();       \
	site##a##7()

int main(void)
{
	CALL8(1);
	CALL8(2);
	CALL8(3);
	CALL8(4);
	CALL8(5);
	CALL8(6);
	if (write(1, "ok\n", 3) != 3)
		return 1;
	return 0;
}
