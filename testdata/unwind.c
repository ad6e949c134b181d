/*
 * unwind.c — the stacks an unwinder gets wrong, each allocating so the
 * library walks them. Run under MEMSCOPE_UNWIND_CHECK=1, which compares
 * every stack with libunwind's and aborts on the first difference; the
 * test builds it at -O0 (rbp-based frames) and -O2 (rsp-based frames).
 *
 *	unwind LIB_A LIB_B
 *
 * LIB_A and LIB_B: two builds of unwindlib.c, dlopen'ed one after the
 * other at (most likely) the same address, allocating from different
 * depths. Prints "ok" and exits 0 when every case ran. Sizes are odd
 * numbers libc does not allocate for itself, so a test can count each case.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#define BARRIER() __asm__ volatile("" ::: "memory")
/* The block escapes, so the compiler may not delete a malloc/free pair. */
#define ESCAPE(p) __asm__ volatile("" : : "r"(p) : "memory")

/* Allocates n bytes depth frames below the caller, and frees them. */
__attribute__((noinline)) static void churn_at(int depth, size_t n)
{
	if (depth == 0) {
		void *p = malloc(n);
		ESCAPE(p);
		free(p);
	} else {
		churn_at(depth - 1, n);
	}
	BARRIER();
}

/* Two call sites into churn_at at the same depth: same CFAs, other return addresses. */
__attribute__((noinline)) static void site_a(int depth) { churn_at(depth, 101); BARRIER(); }
__attribute__((noinline)) static void site_b(int depth) { churn_at(depth, 103); BARRIER(); }

static void same_depth_other_callers(void)
{
	for (int i = 0; i < 200; i++) {
		site_a(i % 5);
		site_b(i % 5);
		churn_at(i % 9, 107);
	}
}

/* ---- longjmp out of allocating frames ---- */

static jmp_buf jump;

__attribute__((noinline)) static void dive_and_jump(int depth)
{
	if (depth > 1000) /* never: tells the compiler the recursion ends */
		return;
	if (depth <= 0) {
		void *p = malloc(137);
		ESCAPE(p);
		free(p);
		longjmp(jump, 1);
	} else {
		dive_and_jump(depth - 1);
	}
	BARRIER();
}

static void longjmps(void)
{
	for (volatile int i = 0; i < 100; i++) {
		if (!setjmp(jump))
			dive_and_jump(i % 20);
		churn_at(i % 7, 107);
	}
}

/* ---- signal handlers that allocate, on the thread's stack and on an alternate one ---- */

static void allocating_handler(int sig)
{
	(void)sig;
	void *p = malloc(109);
	ESCAPE(p);
	free(p);
	churn_at(3, 113);
}

__attribute__((noinline)) static void raise_at(int depth, int sig)
{
	if (depth == 0)
		raise(sig);
	else
		raise_at(depth - 1, sig);
	BARRIER();
}

static void signals(void)
{
	static char altstack[64 * 1024];
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
	struct sigaction sa = {.sa_handler = allocating_handler};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR2, &sa, NULL);
	sigaltstack(&ss, NULL);
	for (int i = 0; i < 50; i++) {
		raise_at(i % 6, SIGUSR1);
		raise_at(i % 6, SIGUSR2);
		churn_at(i % 4, 113);
	}
}

/* ---- coroutines whose stacks are freed and mapped again, smaller ---- */

static ucontext_t main_ctx, co_ctx;

static void coroutine(void)
{
	for (int i = 0; i < 20; i++) {
		churn_at(i % 6, 127);
		swapcontext(&co_ctx, &main_ctx);
	}
}

static void run_coroutine_on(void *stack, size_t size)
{
	getcontext(&co_ctx);
	co_ctx.uc_stack.ss_sp = stack;
	co_ctx.uc_stack.ss_size = size;
	co_ctx.uc_link = &main_ctx;
	makecontext(&co_ctx, coroutine, 0);
	for (int i = 0; i < 21; i++) {
		swapcontext(&main_ctx, &co_ctx);
		churn_at(i % 3, 113);
	}
}

static void coroutines(void)
{
	size_t big = 256 * 1024, small = 64 * 1024;
	char *a = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED)
		abort();
	run_coroutine_on(a, big);
	munmap(a, big);
	/* The same base, smaller: the old stack's top is unmapped now. */
	char *b = mmap(a, small, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (b == MAP_FAILED)
		abort();
	run_coroutine_on(b, small);
	munmap(b, small);
}

/* ---- threads whose stacks glibc hands to the next thread ---- */

static void *thread_main(void *arg)
{
	int depth = (int)(long)arg;
	for (int i = 0; i < 4; i++)
		churn_at(depth + i, 107);
	return NULL;
}

static void reused_thread_stacks(void)
{
	for (long i = 0; i < 100; i++) {
		pthread_t th;
		if (pthread_create(&th, NULL, thread_main, (void *)(i % 13)) != 0)
			abort();
		pthread_join(th, NULL);
	}
}

/* ---- a library unloaded, another loaded at its address ---- */

static void libraries(const char *a, const char *b)
{
	const char *paths[2] = {a, b};
	for (int i = 0; i < 2; i++) {
		void *h = dlopen(paths[i], RTLD_NOW);
		if (!h) {
			fprintf(stderr, "unwind: %s\n", dlerror());
			exit(2);
		}
		void (*work)(int) = (void (*)(int))dlsym(h, "unwindlib_work");
		for (int k = 0; k < 10; k++)
			work(k % 4);
		dlclose(h);
	}
}

/* ---- code without unwind information ---- */

void nocfi_alloc(size_t n);
__asm__(".text\n"
	".globl nocfi_alloc\n"
	".type nocfi_alloc, @function\n"
	"nocfi_alloc:\n"
	"	push %rbp\n"
	"	mov %rsp, %rbp\n"
	"	call malloc@PLT\n"
	"	mov %rax, %rdi\n"
	"	call free@PLT\n"
	"	pop %rbp\n"
	"	ret\n"
	".size nocfi_alloc, .-nocfi_alloc\n");

/* ---- recursion deeper than the stack depth kept ---- */

static void deep(void)
{
	for (int i = 0; i < 20; i++)
		churn_at(60 + i * 10, 113); /* 60..250 frames */
}

/* ---- a vfork child that allocates before it execs ---- */

static void vforked(void)
{
	pid_t pid = vfork();
	if (pid == 0) {
		char *p = malloc(139);
		ESCAPE(p);
		free(p);
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	int status;
	waitpid(pid, &status, 0);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: unwind LIB_A LIB_B\n");
		return 2;
	}
	same_depth_other_callers();
	longjmps();
	signals();
	coroutines();
	reused_thread_stacks();
	libraries(argv[1], argv[2]);
	for (int i = 0; i < 10; i++)
		nocfi_alloc(113);
	deep();
	vforked();
	puts("ok");
	return 0;
}
