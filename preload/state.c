/*
 * state.c — the library's global and per-thread state, the record
 * helpers every file writes through, and the one-time initialisation.
 *
 * The entry points (hooks.c) call into this file and the others; nothing
 * calls back into hooks.c. Initialisation is lazy, on the first hook call
 * after environ exists (calls can come before constructors), or from the
 * constructor for programs that never allocate. If the ring cannot be
 * joined, one line goes to stderr and every call passes straight through
 * forever (MS_PASSTHROUGH).
 */
#include "memscope_internal.h"

#include <sys/auxv.h>
#include <unistd.h>

extern char **environ;

struct ms_global ms_g;

__thread struct ms_tls ms_thread __attribute__((tls_model("initial-exec")));

void *ms_rec_begin(struct ms_tls *t, uint32_t size)
{
	return ms_ring_begin(&ms_g.ring, &t->w, size);
}

void ms_rec_end(struct ms_tls *t)
{
	ms_ring_end(&ms_g.ring, &t->w);
}

void ms_flush_unrecorded(struct ms_tls *t)
{
	uint32_t n = __atomic_exchange_n(&t->unrecorded, 0, __ATOMIC_RELAXED);
	if (!n)
		return;
	struct ms_lost *r = ms_rec_open(t, MS_REC_LOST, sizeof *r, MS_RECF_UNRECORDED);
	if (!r) {
		/* The ring dropped it: the calls stay counted for the next try. */
		__atomic_fetch_add(&t->unrecorded, n, __ATOMIC_RELAXED);
		return;
	}
	r->count = n;
	ms_rec_end(t);
}

static void set_state(int s)
{
	__atomic_store_n(&ms_g.state, s, __ATOMIC_RELEASE);
}

static void read_exe(void)
{
	ssize_t n = readlink("/proc/self/exe", ms_g.exe, sizeof ms_g.exe);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof ms_g.exe)
		n = sizeof ms_g.exe - 1;
	ms_g.exe[n] = 0;
	ms_g.exe_len = (uint32_t)n;
}

void ms_init(struct ms_tls *t)
{
	int expect = MS_UNINIT;
	int event;

	if (!environ) /* too early: libc is not initialised yet; try later */
		return;
	if (!__atomic_compare_exchange_n(&ms_g.state, &expect, MS_INITIALIZING, 0,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return;
	ms_g.page_size = (uint32_t)getauxval(AT_PAGESZ);
	if (!ms_g.page_size)
		ms_g.page_size = 4096;
	ms_config_load(&ms_g.cfg);
	ms_g.pid = (uint32_t)getpid();
	ms_g.ppid = (uint32_t)getppid();
	if (ms_g.cfg.disabled) {
		set_state(MS_PASSTHROUGH);
		return;
	}
	read_exe();
	ms_modules_find_self();
	event = ms_g.cfg.ring_path && ms_g.cfg.marker_pid == (long)ms_g.pid ? MS_PROCESS_EXEC
									  : MS_PROCESS_START;
	if (ms_g.cfg.ring_path) {
		int err = ms_ring_attach(&ms_g.ring, ms_g.cfg.ring_path, ms_g.cfg.lossy);
		if (err != MS_ATTACH_OK) {
			char msg[MS_PATH_MAX + 64];
			size_t n = ms_strlcpy(msg, "MEMSCOPE_RING=", sizeof msg);
			n += ms_strlcpy(msg + n, ms_g.cfg.ring_path, sizeof msg - n);
			ms_strlcpy(msg + n, ": ", sizeof msg - n);
			ms_say(msg, ms_ring_attach_strerror(err), "; not tracing");
			set_state(MS_PASSTHROUGH);
			return;
		}
	} else if (ms_bare_start() != 0) {
		set_state(MS_PASSTHROUGH);
		return;
	} else {
		ms_g.bare_root_pid = ms_g.pid;
	}
	if (ms_stacks_init() != 0 || ms_process_init() != 0) {
		ms_say("cannot set up per-process state; not tracing", NULL, NULL);
		set_state(MS_PASSTHROUGH);
		return;
	}
	ms_unwind_init();
	ms_modules_init();
	t->w.pid = ms_g.pid;
	t->w.tid = (uint32_t)gettid();
	set_state(MS_ACTIVE);
	ms_process_announce(t, event);
	ms_thread_announce(t);
	ms_modules_announce_all(t);
}
