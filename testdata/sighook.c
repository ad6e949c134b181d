/*
 * sighook.c — a signal handler that allocates while the main thread is
 * inside one of memscope's hooks (issue 17 §1: such calls pass through
 * unrecorded and must be counted, not lost silently).
 *
 *	sighook PAIRS
 *
 * The main thread makes PAIRS malloc(41)/free pairs while a 200 us
 * interval timer raises SIGALRM. The handler makes one malloc(23)/free
 * pair, but only when the interrupted instruction is in libmemscope.so's
 * own code: never inside glibc's allocator, whose state a handler must
 * not touch (malloc is not async-signal-safe), and so never when the
 * program runs without memscope. It prints "handler N": N pairs made,
 * so that recorded malloc(23) calls + unrecorded calls / 2 == N.
 */
#define _GNU_SOURCE
#include <link.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <ucontext.h>

static volatile sig_atomic_t pairs_made;
static uintptr_t ms_lo, ms_hi; /* libmemscope.so's executable segment */

static int find_memscope(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size;
	(void)data;
	if (!strstr(info->dlpi_name, "libmemscope"))
		return 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			ms_lo = info->dlpi_addr + ph->p_vaddr;
			ms_hi = ms_lo + ph->p_memsz;
		}
	}
	return 1;
}

static void on_alarm(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)si;
	uintptr_t pc = (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
	if (pc < ms_lo || pc >= ms_hi)
		return;
	void *p = malloc(23);
	__asm__ volatile("" : : "r"(p) : "memory");
	free(p);
	pairs_made++;
}

int main(int argc, char **argv)
{
	long pairs = argc > 1 ? atol(argv[1]) : 2000000;
	dl_iterate_phdr(find_memscope, NULL);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_alarm;
	sa.sa_flags = SA_RESTART | SA_SIGINFO;
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = {{0, 200}, {0, 200}};
	setitimer(ITIMER_REAL, &it, NULL);
	for (long i = 0; i < pairs; i++) {
		void *p = malloc(41);
		__asm__ volatile("" : : "r"(p) : "memory");
		free(p);
	}
	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_REAL, &off, NULL);
	printf("handler %ld\n", (long)pairs_made);
	return 0;
}
