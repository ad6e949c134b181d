/*
 * process.c — PROCESS and THREAD records, fork, thread exit, and the
 * MEMSCOPE_PID environment marker.
 *
 *   - PROCESS start|exec at init; an image is an exec when MEMSCOPE_PID in
 *     its environment is its own pid (the marker each traced image, and
 *     each fork child, sets to its pid).
 *   - PROCESS exit {status} from an on_exit handler (exit() or a return
 *     from main) and from _exit/_Exit, which the library wraps; not from
 *     abort or a signal (the parent's wait status says those).
 *   - THREAD {tid, name} at a thread's first record, and again at its exit
 *     (the name is often set after the thread started).
 *   - Thread exit: a pthread key destructor writes THREAD and seals the
 *     thread's chunk, so the consumer need not wait for it to go idle.
 *   - fork (pthread_atfork): the forking thread numbers the fork before
 *     it; the parent writes PROCESS forked with the number after it, and
 *     the child, whose inherited chunk is the parent's, forgets that
 *     chunk, refreshes pid/tid and announces itself (PROCESS fork with the
 *     number, THREAD, every MODULE): the consumer then knows which of the
 *     parent's records the child's heap holds (include/memscope.h F1-F2).
 *     The child's stacks are written again (stacks.c S3).
 *     MEMSCOPE_FOLLOW_FORK=0: the child passes through, and its exec'd
 *     images too (MEMSCOPE_RING becomes empty in its environment).
 * Nothing here allocates; pthread_key_create, pthread_setspecific and
 * pthread_atfork may call malloc, which then passes through (tls.busy).
 */
#include "memscope_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MS_ARG0_MAX 1024u

extern char *program_invocation_name;

static pthread_key_t exit_key;
static char pid_env[32] = "MEMSCOPE_PID=";
static char no_ring_env[] = "MEMSCOPE_RING=";

/*
 * exiting: the thread is ending. Either way the record carries an address
 * on the thread's stack, so the leak check can tell thread stacks from
 * other memory (a stack kept for reuse, or in a fork child a stack of a
 * thread that only the parent has, is not a root).
 */
static void write_thread(struct ms_tls *t, int exiting)
{
	struct ms_thread *r = ms_rec_open(t, MS_REC_THREAD, sizeof *r, exiting ? MS_RECF_THREAD_EXIT : 0);
	if (!r)
		return;
	ms_rec_zero_payload(r, sizeof *r);
	r->tid = t->w.tid;
	r->stack_sp = (uint64_t)(uintptr_t)__builtin_frame_address(0);
	char name[MS_THREAD_NAME_MAX + 1] = {0};
	if (prctl(PR_GET_NAME, name, 0, 0, 0) == 0) {
		r->name_len = (uint32_t)strnlen(name, MS_THREAD_NAME_MAX);
		memcpy(r->name, name, r->name_len);
	}
	ms_rec_end(t);
}

void ms_thread_announce(struct ms_tls *t)
{
	t->announced = 1;
	t->w.pid = ms_g.pid;
	t->w.tid = (uint32_t)gettid();
	pthread_setspecific(exit_key, (void *)1); /* arms thread_exit */
	write_thread(t, 0);
}

static void thread_exit(void *unused)
{
	int e;
	struct ms_tls *t = ms_callback_enter(&e);
	(void)unused;
	if (!t)
		return;
	ms_flush_unrecorded(t); /* before the thread's end */
	write_thread(t, 1);
	ms_ring_seal(&ms_g.ring, &t->w);
	ms_callback_leave(t, e);
}

void ms_process_announce(struct ms_tls *t, int event)
{
	ms_process_write(t, event, 0, 0);
}

void ms_process_write(struct ms_tls *t, int event, int status, uint32_t flags)
{
	const char *arg0 = program_invocation_name ? program_invocation_name : "";
	uint32_t exe_len = ms_g.exe_len, arg_len = (uint32_t)strlen(arg0);
	if (arg_len > MS_ARG0_MAX) {
		arg_len = MS_ARG0_MAX;
		flags |= MS_RECF_TRUNCATED;
	}
	uint32_t size = (uint32_t)((sizeof(struct ms_process) + exe_len + arg_len + 7) & ~7u);
	struct ms_process *r = ms_rec_open(t, MS_REC_PROCESS, size, flags);
	if (!r)
		return;
	ms_rec_zero_payload(r, size);
	r->pid = ms_g.pid;
	r->ppid = ms_g.ppid;
	r->event = (uint32_t)event;
	r->status = status;
	r->exe_len = exe_len;
	r->arg_len = arg_len;
	memcpy((char *)(r + 1), ms_g.exe, exe_len);
	memcpy((char *)(r + 1) + exe_len, arg0, arg_len);
	ms_rec_end(t);
}

static void set_pid_marker(void)
{
	char digits[16];
	char *end = digits + sizeof digits - 1;
	*end = 0;
	char *p = ms_utoa(end, ms_g.pid);
	ms_strlcpy(pid_env + 13, p, sizeof pid_env - 13); /* after "MEMSCOPE_PID=" */
}

/* F1: number the fork; the child inherits the number with our TLS. */
static void prepare_fork(void)
{
	struct ms_tls *t = ms_tls();
	t->fork_seq = 0;
	if (__atomic_load_n(&ms_g.state, __ATOMIC_ACQUIRE) == MS_ACTIVE && ms_g.cfg.follow_fork)
		t->fork_seq = __atomic_add_fetch(&ms_g.forks, 1, __ATOMIC_RELAXED);
}

/*
 * F1: the parent's FORKED record, before anything the forking thread
 * records after the fork. Also after a fork that failed: a consumer
 * forgets a fork no child claims.
 */
static void parent_after_fork(void)
{
	int e;
	struct ms_tls *t;
	if (!ms_tls()->fork_seq || !(t = ms_callback_enter(&e)))
		return;
	ms_process_write(t, MS_PROCESS_FORKED, (int)t->fork_seq, 0);
	ms_callback_leave(t, e);
}

static void child_after_fork(void)
{
	struct ms_tls *t = ms_tls();
	if (__atomic_load_n(&ms_g.state, __ATOMIC_ACQUIRE) != MS_ACTIVE)
		return;
	int e = errno;
	ms_ring_forget(&t->w); /* the parent still owns it */
	t->w.lost = 0;         /* the parent reports its own drops */
	ms_g.ppid = ms_g.pid;
	ms_g.pid = (uint32_t)getpid();
	t->w.pid = ms_g.pid;
	t->w.tid = (uint32_t)gettid();
	t->announced = 0;
	__atomic_store_n(&ms_g.loader_unsafe, 1, __ATOMIC_RELAXED); /* modules.c M4 */
	ms_modules_after_fork();
	ms_rulefiles_after_fork();
	set_pid_marker(); /* in place: the string is ours, already in environ */
	if (!ms_g.cfg.follow_fork) {
		char *const entries[1] = {no_ring_env};
		__atomic_store_n(&ms_g.state, MS_PASSTHROUGH, __ATOMIC_RELEASE);
		ms_env_put(entries, 1);
		errno = e;
		return;
	}
	ms_stacks_new_process();
	if (!t->busy) { /* fork from a signal handler inside a hook: stay quiet */
		t->busy = 1;
		ms_process_write(t, MS_PROCESS_FORK, (int)t->fork_seq, 0);
		ms_thread_announce(t);
		ms_modules_announce_known(t);
		t->busy = 0;
	}
	errno = e;
}

/* PROCESS exit with what the parent's wait will see, then seal the chunk. */
static void write_exit(struct ms_tls *t, int status)
{
	ms_flush_unrecorded(t);
	ms_process_write(t, MS_PROCESS_EXIT, status & 0xff, 0);
	ms_ring_seal(&ms_g.ring, &t->w);
}

/*
 * exit(status), or a return from main: PROCESS exit with the status, then
 * the leak check (exitcheck.c). Registered with on_exit at init, which
 * comes before libc registers the loader's destructor pass, so it runs
 * last: after the program's atexit handlers, C++ static destructors and
 * every library's destructors (measured: glibc 2.41), which is where
 * LeakSanitizer checks too. _exit and _Exit skip it (exit_now below
 * writes theirs, with no check); abort and signals write none.
 */
static void at_exit(int status, void *unused)
{
	int e;
	struct ms_tls *t = ms_callback_enter(&e);
	(void)unused;
	if (!t)
		return;
	ms_flush_unrecorded(t); /* before the exit record */
	ms_exit_check(t, status);
	ms_rulefiles_save(); /* released by the check: the analyzer does not wait for this */
	ms_callback_leave(t, e);
}

/*
 * _exit(status) and _Exit(status): PROCESS exit, as at_exit writes it,
 * then the exit_group system call, which is all glibc's _exit does
 * (calling it directly keeps this async-signal-safe and needs no lookup of
 * the next definition). Shells end with _exit, and so do fork children
 * that must not run their parent's atexit handlers; such a process is
 * often reaped by its own parent at once, and this record is then the
 * only place its exit status can come from. glibc's exit() reaches its
 * own _exit directly, not through this one.
 *
 * Nothing is written in a child the library was not told of (vfork,
 * posix_spawn and raw clone run no fork handlers: ms_g and the writer
 * are still the parent's, shared or copied, so the pids differ), or from
 * a signal handler that interrupted a hook (busy).
 */
static __attribute__((noreturn)) void exit_now(int status)
{
	int e;
	struct ms_tls *t;
	/* The pid first: entering may write (THREAD), into the parent's chunk. */
	if ((uint32_t)getpid() == ms_g.pid && (t = ms_callback_enter(&e))) {
		write_exit(t, status); /* busy stays set: nothing else is recorded */
		ms_rulefiles_save();
	}
	for (;;)
		syscall(SYS_exit_group, status);
}

__attribute__((visibility("default"), noreturn)) void _exit(int status)
{
	exit_now(status);
}

__attribute__((visibility("default"), noreturn)) void _Exit(int status)
{
	exit_now(status);
}

int ms_process_init(void)
{
	char *entries[2];
	int n = 0;
	if (pthread_key_create(&exit_key, thread_exit) != 0)
		return -1;
	if (pthread_atfork(prepare_fork, parent_after_fork, child_after_fork) != 0)
		return -1;
	if (on_exit(at_exit, NULL) != 0)
		return -1;
	set_pid_marker();
	entries[n++] = pid_env;
	if (ms_g.ring_env[0])
		entries[n++] = ms_g.ring_env;
	ms_env_put(entries, n);
	return 0;
}
