/*
 * exitcheck.c — the library's half of the leak check at exit (DESIGN.md
 * §6.1): at a normal exit, after atexit handlers and destructors, the
 * process parks its exiting thread while the analyzer stops the other
 * threads, reads its memory and classifies every live block as
 * reachable, indirect or direct. The protocol is X1-X4 in
 * include/memscope.h; this file keeps the process's side:
 *
 *   1. park only if the consumer says it checks (MS_CAP_LEAK_CHECK) and
 *      its heartbeat is fresh, and only in the process the library was
 *      initialised for (not a vfork child sharing our memory); in bare
 *      mode first give the recorder we started the time to attach;
 *   2. take a free slot of exit_waiters with a CAS 0 -> pid (X1); none
 *      free: no check (the report says the check did not run);
 *   3. let the consumer ptrace us where Yama asks for it (PR_SET_PTRACER;
 *      EINVAL without Yama is fine), write PROCESS exit with
 *      MS_RECF_EXIT_CHECK and seal the chunk, so the consumer sees it now;
 *   4. bare mode's first process also asks for its reports before the
 *      release (MS_RECF_EXIT_REPORTS): they exist when the shell sees its
 *      exit status;
 *   5. bump exit_futex and wake the consumer if it waits there (X5);
 *   6. FUTEX_WAIT on the slot while it holds our pid, up to
 *      MEMSCOPE_LEAK_CHECK_TIMEOUT; on timeout free it ourselves with the
 *      CAS pid -> 0 (X2). Nothing else: the exit goes on as it would.
 *
 * No malloc, no stdio, no signals: the wait is a futex on shared memory,
 * the only trace of it a slot word in the ring.
 */
#include "memscope_internal.h"

#include <errno.h>
#include <stdint.h>
#include <linux/futex.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* How long a futex wait lasts before the deadline and the slot are checked again. */
#define MS_EXIT_WAIT_STEP_NS 50000000ull

static uint32_t *take_slot(struct ms_ring_header *h, uint32_t pid)
{
	for (unsigned k = 0; k < MS_EXIT_SLOTS; k++) {
		uint32_t expect = 0;
		if (__atomic_compare_exchange_n(&h->exit_waiters[k], &expect, pid, 0, __ATOMIC_ACQ_REL,
						__ATOMIC_ACQUIRE))
			return &h->exit_waiters[k];
	}
	return NULL;
}

static int consumer_checks(const struct ms_ring *r)
{
	const struct ms_ring_header *h = r->hdr;
	if (!(__atomic_load_n(&h->consumer_caps, __ATOMIC_ACQUIRE) & MS_CAP_LEAK_CHECK))
		return 0;
	uint64_t hb = __atomic_load_n(&h->consumer_heartbeat_ns, __ATOMIC_ACQUIRE);
	uint64_t now = ms_now_ns();
	return !(now > hb && now - hb > r->consumer_timeout_ns);
}

/*
 * Whether the consumer has died: its pidfd turns readable when it exits,
 * zombie or not (a killed recorder is reaped by init, which can take
 * seconds); without a pidfd, when kill(2) no longer finds it.
 */
static int consumer_gone(int pidfd, uint32_t consumer)
{
	if (pidfd >= 0) {
		struct pollfd p = {.fd = pidfd, .events = POLLIN};
		return poll(&p, 1, 0) > 0;
	}
	return consumer && kill((pid_t)consumer, 0) != 0 && errno == ESRCH;
}

/*
 * Waits while *slot == pid, until deadline (CLOCK_MONOTONIC ns) or until
 * the consumer process is gone (killed during the scan: no need to wait
 * out the timeout). The consumer's pidfd is the one descriptor the
 * library opens at run time, and only for this wait.
 */
static void wait_slot(uint32_t *slot, uint32_t pid, uint32_t consumer, uint64_t deadline)
{
	int pidfd = consumer ? (int)syscall(SYS_pidfd_open, (pid_t)consumer, 0) : -1;
	for (;;) {
		if (__atomic_load_n(slot, __ATOMIC_ACQUIRE) != pid)
			break;
		uint64_t now = ms_now_ns();
		if (now >= deadline || consumer_gone(pidfd, consumer)) {
			uint32_t expect = pid;
			/* X2: lost to the consumer's CAS means it finished just now. */
			__atomic_compare_exchange_n(slot, &expect, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
			break;
		}
		uint64_t left = deadline - now;
		if (left > MS_EXIT_WAIT_STEP_NS)
			left = MS_EXIT_WAIT_STEP_NS;
		struct timespec ts = {(time_t)(left / 1000000000ull), (long)(left % 1000000000ull)};
		syscall(SYS_futex, slot, FUTEX_WAIT, pid, &ts, NULL, 0);
	}
	if (pidfd >= 0)
		close(pidfd);
}

/*
 * Bare mode: the recorder we started may not have attached yet when a
 * short program ends. Wait for it (bounded) so the program gets its check
 * and the reports exist when the exit status reaches the shell.
 */
static void wait_consumer(const struct ms_ring *r, uint64_t deadline)
{
	pid_t recorder = (pid_t)ms_g.recorder_pid;
	while (!(__atomic_load_n(&r->hdr->consumer_caps, __ATOMIC_ACQUIRE) & MS_CAP_LEAK_CHECK) &&
	       ms_now_ns() < deadline) {
		/* A recorder that is gone (or was never ours) will not attach. */
		if (!recorder || (kill(recorder, 0) != 0 && errno == ESRCH))
			return;
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
}

void ms_exit_check(struct ms_tls *t, int status)
{
	/*
	 * Spill every callee-saved register into this frame, which stays on
	 * the stack above the wait: a pointer the program kept only in a
	 * register is then on the stack the analyzer scans, even when it reads
	 * a single-threaded process without stopping it (analyzer/reach
	 * Parked). Caller-saved registers hold nothing live across exit().
	 */
	__builtin_unwind_init();
	struct ms_ring *r = &ms_g.ring;
	uint32_t pid = ms_g.pid;
	uint32_t *slot = NULL;
	uint32_t consumer = 0;
	uint64_t timeout = ms_g.cfg.leak_check_timeout_ns;
	/* One bound for the whole wait: the recorder's attach and the check. */
	uint64_t deadline = ms_now_ns() + timeout;

	if (timeout > 0 && (uint32_t)getpid() == pid) {
		if (!ms_g.cfg.ring_path && ms_g.recorder_pid)
			wait_consumer(r, deadline);
		if (consumer_checks(r))
			slot = take_slot(r->hdr, pid);
	}
	if (slot) {
		consumer = __atomic_load_n(&r->hdr->consumer_pid, __ATOMIC_ACQUIRE);
		if (consumer)
			prctl(PR_SET_PTRACER, (unsigned long)consumer, 0, 0, 0);
	}
	uint32_t flags = slot ? MS_RECF_EXIT_CHECK : 0;
	/*
	 * Bare mode's first process: its shell sees the exit status as soon as
	 * it exits, so it also waits for its reports (a script's next command
	 * reads them).
	 */
	if (slot && pid == ms_g.bare_root_pid)
		flags |= MS_RECF_EXIT_REPORTS;
	ms_process_write(t, MS_PROCESS_EXIT, status & 0xff, flags);
	ms_ring_seal(r, &t->w);
	if (slot) {
		/* X5: an idle consumer starts the check now, not at its next poll. */
		__atomic_add_fetch(&r->hdr->exit_futex, 1, __ATOMIC_RELEASE);
		syscall(SYS_futex, &r->hdr->exit_futex, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
		wait_slot(slot, pid, consumer, deadline);
	}
}
