/*
 * reach.c — one case per rule of the leak check at exit (DESIGN.md §6.1),
 * chosen by argv[1]. Every block has a size of its own so the report
 * shows which verdict it got; the expected verdicts are LeakSanitizer's
 * (each case was run with LD_PRELOAD=liblsan.so.0, built -O0 as the tests
 * build it) and are asserted by analyzer/e2e/reach_test.go.
 *
 *   global      101 B only in .data, 102 B only in .bss: reachable
 *   stack       103 B only in a live frame of main: reachable
 *   deadframe   104 B only in a frame that returned, far below the stack
 *               pointer at exit: direct
 *   register    105 B only in a register (r12) of a spinning thread: reachable
 *   tls         106 B only in __thread storage of a blocked thread: reachable
 *   tsd         107 B only in pthread_setspecific data: reachable
 *   tlsdl LIB   122 B only in the __thread storage of a dlopen'ed library
 *               (testdata/tlsplugin.c, dynamic TLS): reachable
 *   self        108 B pointing only to itself: direct
 *   list        a list 109 -> 110 -> 111 B whose head is lost: 109 direct,
 *               110 and 111 indirect
 *   cycle       112 B <-> 113 B, lost: both indirect
 *   big         32 MiB (mmapped by glibc) in a global: reachable;
 *               32 MiB + 1 lost: direct
 *   suppressed  114 B from suppressed_alloc, lost, holding 115 B: with
 *               leak:suppressed_alloc neither is reported
 *   fork        the parent leaks 116 B, its fork child 117 B: each direct
 *               in its own process (the child also holds the parent's 116)
 *   exitthread  a second thread calls exit while main waits: 118 B lost
 *               (direct), 119 B in a global (reachable)
 *   deadthread  a thread keeps 123 B only in its stack and ends; glibc
 *               keeps its stack mapped for the next thread: direct
 *   forkthread  a thread keeps 124 B only in its stack and blocks; then the
 *               process forks and the child exits: in the child, which has
 *               no such thread, direct; in the parent, reachable
 *   _exit       120 B lost, then _exit: not checked (unknown)
 *   traced      121 B lost while a child of ours ptrace-seizes us, so the
 *               analyzer's ptrace is refused: not checked (unknown); a
 *               second, idle thread makes the analyzer need ptrace (a
 *               single-threaded process parked at exit is read without)
 *   merged      32 MiB + 2 (mmapped by glibc) in a global, and 125 B whose
 *               only pointer is in a page the program maps right below (or
 *               above) the big block's chunk, which the kernel merges with the chunk's
 *               mapping: both reachable (valgrind's verdict: a page the
 *               program maps is a root; LSan scans no such page unless told
 *               with __lsan_register_root_region, and says 125 B direct).
 *               Exits 3 if the page cannot be placed there, 4 if the kernel
 *               did not merge the two: the case would not be the one meant
 *   bigheap     2,000,000 blocks of 32 B chained from a global, and an idle
 *               thread: a check (with ptrace) long enough to kill the
 *               analyzer in the middle of it
 * No stdio: its buffer would be one more block.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

void *data_ptr = (void *)1; /* .data */
void *bss_ptr;              /* .bss */
void *big_ptr;
void *exit_thread_ptr;
void *chain;
static volatile int ready;

/*
 * Runs fn 256 KiB below the current frame: what fn leaves in its frame is
 * below the stack pointer of everything main does afterwards, exit
 * included, so a lost block's last copies are in dead frames.
 */
__attribute__((noinline)) static void deep(void (*fn)(void))
{
	volatile char frame[256 << 10];
	frame[0] = 0;
	fn();
	frame[sizeof frame - 1] = 0;
}

static void dead_frame(void)
{
	void *volatile p __attribute__((unused)) = malloc(104);
}

static void self(void)
{
	void **p = malloc(108);
	p[0] = p;
}

static void list(void)
{
	void **a = malloc(109), **b = malloc(110), **d = malloc(111); /* LINE:list */
	a[0] = b;
	b[0] = d;
	d[0] = NULL;
}

static void cycle(void)
{
	void **a = malloc(112), **b = malloc(113); /* LINE:cycle */
	a[0] = b;
	b[0] = a;
}

static void big(void)
{
	big_ptr = malloc(32 << 20);
	void *volatile lost __attribute__((unused)) = malloc((32 << 20) + 1);
}

/* The mapping of /proc/self/maps that holds addr: *lo, *hi. 0 if none. */
static int mapping_of(uintptr_t addr, uintptr_t *lo, uintptr_t *hi)
{
	static char buf[1 << 16];
	int fd = open("/proc/self/maps", O_RDONLY), found = 0;
	ssize_t n, len = 0;
	if (fd < 0)
		return 0;
	while ((n = read(fd, buf + len, sizeof buf - 1 - (size_t)len)) > 0)
		len += n;
	close(fd);
	buf[len] = 0;
	for (char *p = buf; *p && !found;) {
		uintptr_t a = 0, b = 0;
		while (*p && *p != '-')
			a = a * 16 + (uintptr_t)(*p <= '9' ? *p - '0' : *p - 'a' + 10), p++;
		if (*p)
			p++;
		while (*p && *p != ' ')
			b = b * 16 + (uintptr_t)(*p <= '9' ? *p - '0' : *p - 'a' + 10), p++;
		if (addr >= a && addr < b) {
			*lo = a, *hi = b;
			found = 1;
		}
		while (*p && *p != '\n')
			p++;
		if (*p)
			p++;
	}
	return found;
}

static int merged_status;

static void merged(void)
{
	uintptr_t lo, hi, lo2, hi2;
	big_ptr = malloc((32 << 20) + 2);
	if (!mapping_of((uintptr_t)big_ptr, &lo, &hi)) {
		merged_status = 3;
		return;
	}
	/* Right below the chunk (mmap places mappings top-down), else above. */
	uintptr_t at = lo - 4096;
	void **page = mmap((void *)at, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (page == MAP_FAILED) {
		at = hi;
		page = mmap((void *)at, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	}
	if (page == MAP_FAILED || (uintptr_t)page != at) {
		merged_status = 3;
		return;
	}
	page[0] = malloc(125);
	if (!mapping_of((uintptr_t)page, &lo2, &hi2) || lo2 != (at < lo ? at : lo) || hi2 != (at < lo ? hi : hi + 4096))
		merged_status = 4;
}

__attribute__((noinline)) static void *suppressed_alloc(void)
{
	void **p = malloc(114);
	p[0] = malloc(115);
	return p;
}

static void suppressed(void)
{
	void *volatile lost __attribute__((unused)) = suppressed_alloc();
}

static void lose116(void)
{
	void *volatile lost __attribute__((unused)) = malloc(116);
}

static void lose117(void)
{
	void *volatile lost __attribute__((unused)) = malloc(117);
}

static void lose120(void)
{
	void *volatile lost __attribute__((unused)) = malloc(120);
}

static void lose121(void)
{
	void *volatile lost __attribute__((unused)) = malloc(121);
}

static void *spin(void *arg)
{
	void *volatile p = malloc(105);
	/* Keep p in r12 only: wipe the stack copy, then spin for ever. */
	__asm__ volatile("mov (%0), %%r12\n\t"
			 "movq $0, (%0)\n\t"
			 "movl $1, (%1)\n\t"
			 "1: pause\n\t"
			 "jmp 1b\n\t"
			 :
			 : "r"(&p), "r"(&ready)
			 : "r12", "memory");
	return arg;
}

static __thread void *tls_ptr;

static void *hold_in_tls(void *arg)
{
	tls_ptr = malloc(106);
	ready = 1;
	for (;;)
		pause();
	return arg;
}

static void lose118(void)
{
	void *volatile lost __attribute__((unused)) = malloc(118);
}

static void *exit_from_thread(void *arg)
{
	deep(lose118);
	exit_thread_ptr = malloc(119);
	exit(0);
	return arg;
}

static void *keep_on_stack(void *arg)
{
	void *volatile p __attribute__((unused)) = malloc(123);
	return arg;
}

static void *keep_and_block(void *arg)
{
	void *volatile p __attribute__((unused)) = malloc(124);
	ready = 1;
	for (;;)
		pause();
	return arg;
}

static void *idle(void *arg)
{
	ready = 1;
	for (;;)
		pause();
	return arg;
}

static void start(void *(*fn)(void *))
{
	pthread_t t;
	ready = 0;
	pthread_create(&t, NULL, fn, NULL);
	while (!ready)
		usleep(100);
}

int main(int argc, char **argv)
{
	const char *c = argc > 1 ? argv[1] : "";
	if (!strcmp(c, "global")) {
		data_ptr = malloc(101);
		bss_ptr = malloc(102);
	} else if (!strcmp(c, "stack")) {
		void *volatile p = malloc(103);
		exit(p != NULL ? 0 : 1); /* main's frame is live during exit */
	} else if (!strcmp(c, "deadframe")) {
		deep(dead_frame);
	} else if (!strcmp(c, "register")) {
		start(spin);
	} else if (!strcmp(c, "tls")) {
		start(hold_in_tls);
	} else if (!strcmp(c, "tsd")) {
		pthread_key_t k;
		pthread_key_create(&k, NULL);
		pthread_setspecific(k, malloc(107));
	} else if (!strcmp(c, "tlsdl") && argc > 2) {
		void *lib = dlopen(argv[2], RTLD_NOW);
		void (*keep)(size_t) = lib ? (void (*)(size_t))dlsym(lib, "tls_keep") : NULL;
		if (!keep)
			return 3;
		keep(122);
	} else if (!strcmp(c, "self")) {
		deep(self);
	} else if (!strcmp(c, "list")) {
		deep(list);
	} else if (!strcmp(c, "cycle")) {
		deep(cycle);
	} else if (!strcmp(c, "big")) {
		deep(big);
	} else if (!strcmp(c, "suppressed")) {
		deep(suppressed);
	} else if (!strcmp(c, "fork")) {
		deep(lose116);
		pid_t pid = fork();
		if (pid == 0) {
			deep(lose117);
			exit(0);
		}
		waitpid(pid, NULL, 0);
	} else if (!strcmp(c, "exitthread")) {
		pthread_t t;
		pthread_create(&t, NULL, exit_from_thread, NULL);
		pthread_join(t, NULL); /* never returns: the thread exits the process */
	} else if (!strcmp(c, "deadthread")) {
		pthread_t t;
		pthread_create(&t, NULL, keep_on_stack, NULL);
		pthread_join(t, NULL);
	} else if (!strcmp(c, "forkthread")) {
		start(keep_and_block);
		pid_t pid = fork();
		if (pid == 0)
			exit(0);
		waitpid(pid, NULL, 0);
	} else if (!strcmp(c, "_exit")) {
		deep(lose120);
		_exit(0);
	} else if (!strcmp(c, "merged")) {
		deep(merged);
		if (merged_status)
			return merged_status;
	} else if (!strcmp(c, "bigheap")) {
		start(idle); /* two threads: the check stops them with ptrace */
		for (int i = 0; i < 2000000; i++) {
			void **b = malloc(32);
			b[0] = chain;
			chain = b;
		}
	} else if (!strcmp(c, "traced")) {
		int go[2];
		pid_t parent = getpid();
		if (pipe(go) != 0)
			return 2;
		if (fork() == 0) {
			char b = 0;
			int st;
			ptrace(PTRACE_SEIZE, parent, NULL, NULL);
			if (write(go[1], &b, 1) != 1)
				_exit(2);
			/* Pass on whatever stops the parent, until it is gone. */
			while (waitpid(parent, &st, __WALL) == parent && !WIFEXITED(st) && !WIFSIGNALED(st))
				ptrace(PTRACE_CONT, parent, NULL, (void *)(uintptr_t)(WIFSTOPPED(st) && (st >> 16) == 0 ? WSTOPSIG(st) : 0));
			_exit(0);
		}
		char b;
		if (read(go[0], &b, 1) != 1)
			return 2;
		start(idle);
		deep(lose121);
	} else {
		return 2;
	}
	return 0;
}
