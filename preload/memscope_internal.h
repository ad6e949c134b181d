/*
 * memscope_internal.h — what the files of the interposer share. Nothing
 * here is exported from libmemscope.so (-fvisibility=hidden and the
 * version script): the only exported symbols are the hooks.
 *
 * Files, one concern each:
 *   hooks.c    the allocation entry points (they call the others, never called back)
 *   state.c    global and per-thread state, record helpers, initialisation
 *   unwind.c   call stacks: the validated stack cache, libunwind
 *   cfi.c      unwind rules compiled from .eh_frame, by return address
 *   rulecache.c  those rules shared through files by the session's processes
 *   stacks.c   stack interning table and STACK records
 *   slots.c    the hash tables of stacks.c and cfi.c, growing by regions
 *   modules.c  MODULE records, dlopen/dlclose
 *   process.c  PROCESS/THREAD records, fork, thread exit, env markers
 *   exitcheck.c  the wait at exit while the analyzer checks reachability
 *   privmem.c  memory for the library's own tables, which the check skips
 *   env.c      configuration from the environment (no malloc)
 *   spawn.c    bare mode: create a ring, start the analyzer detached
 *   ring.c     the ring writer (owned by shm/)
 */
#ifndef MS_INTERNAL_H
#define MS_INTERNAL_H

#include <errno.h>
#include <link.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "ring.h"

#define MS_HIDDEN __attribute__((visibility("hidden")))

/* ---- configuration (env.c) ---- */

struct ms_config {
	const char *ring_path;    /* MEMSCOPE_RING, NULL: bare mode */
	int disabled;             /* MEMSCOPE_RING set but empty: do not trace */
	const char *analyzer;     /* MEMSCOPE_ANALYZER, NULL if unset */
	uint64_t ring_size;       /* MEMSCOPE_RING_SIZE (bare mode) */
	unsigned depth;           /* MEMSCOPE_DEPTH, 0..MS_MAX_DEPTH; 0: no stacks */
	int lossy;                /* MEMSCOPE_MODE=lossy */
	int clock_monotonic;      /* MEMSCOPE_CLOCK=monotonic: bare mode's ring is not MS_RING_TSC */
	int follow_fork;          /* MEMSCOPE_FOLLOW_FORK */
	long marker_pid;          /* MEMSCOPE_PID (our own marker), -1 if absent */
	uint64_t leak_check_timeout_ns; /* MEMSCOPE_LEAK_CHECK_TIMEOUT; 0: no check at exit */
};

/* Reads the MEMSCOPE_* variables; reports bad values on stderr. */
MS_HIDDEN void ms_config_load(struct ms_config *c);
/* Value of NAME in environ (no malloc), or NULL. */
MS_HIDDEN const char *ms_getenv(const char *name);
/* Writes "memscope: " msg "\n" to stderr with one write(2). */
MS_HIDDEN void ms_say(const char *a, const char *b, const char *c);
/*
 * Makes each of the n entries ("NAME=value", in storage that lives as long
 * as the process) part of environ, replacing an existing NAME. No malloc:
 * a new array, if needed, is mmap'ed.
 */
MS_HIDDEN int ms_env_put(char *const *entries, int n);
/*
 * Maps size bytes of zeroed memory for a table of the library's own, in a
 * mapping the leak check recognises and skips (privmem.c). Only for
 * memory that never holds a heap pointer. NULL if mmap fails.
 */
MS_HIDDEN void *ms_map_private(size_t size);
/* The header page of such a mapping starts with MS_PRIVATE_MAGIC (memscope.h). */
/* Small string helpers (no libc calls that could allocate). */
MS_HIDDEN size_t ms_strlcpy(char *dst, const char *src, size_t cap);
MS_HIDDEN char *ms_utoa(char *end, uint64_t v); /* writes digits ending before end, returns start */

/* ---- per-thread state (state.c) ---- */

struct ms_tls {
	struct ms_writer w;
	uint32_t busy;      /* reentrancy: set while we record or initialise */
	uint32_t announced; /* THREAD record written, destructor armed */
	uint32_t unwinds;   /* stacks libunwind walked, up to MS_WARM_UNWINDS (unwind.c) */
	/*
	 * Allocator calls made while busy, by a signal handler that
	 * interrupted us: they pass through unrecorded, and are counted
	 * (atomic add: a handler can interrupt another) until
	 * ms_flush_unrecorded writes them as a LOST record.
	 */
	uint32_t unrecorded;
	/* The number of this thread's last fork in its process (include/memscope.h F1). */
	uint32_t fork_seq;
};

extern __thread struct ms_tls ms_thread MS_HIDDEN __attribute__((tls_model("initial-exec")));

/* The calling thread's state (initial-exec TLS, never allocates). */
static inline struct ms_tls *ms_tls(void)
{
	return &ms_thread;
}

/* Global state, read-mostly after init. */
enum ms_state {
	MS_UNINIT = 0,
	MS_INITIALIZING = 1,
	MS_ACTIVE = 2,
	MS_PASSTHROUGH = 3,
};

struct ms_global {
	int state;                 /* enum ms_state, atomic */
	struct ms_ring ring;
	struct ms_config cfg;
	uint32_t pid, ppid;        /* refreshed after fork */
	uint64_t epoch;            /* per-process stack epoch (stacks.c) */
	uintptr_t self_lo, self_hi; /* our own text, skipped in stacks */
	char self_path[MS_PATH_MAX]; /* path of libmemscope.so as loaded */
	char exe[MS_PATH_MAX];     /* /proc/self/exe */
	uint32_t exe_len;
	char ring_env[MS_PATH_MAX + 16]; /* bare mode: "MEMSCOPE_RING=path" for descendants */
	int loader_unsafe;         /* fork child: the loader's lock may be held for ever (modules.c M4) */
	uint32_t recorder_pid;     /* bare mode: the memscope-analyze record we started */
	uint32_t bare_root_pid;    /* bare mode: the process that created the ring */
	uint32_t page_size;        /* the valloc alignment */
	uint32_t forks;            /* forks numbered so far in this image (F1), atomic */
};

extern struct ms_global ms_g MS_HIDDEN;

/*
 * Initialises the library once: configuration, the ring (or bare mode's),
 * per-process state, PROCESS/THREAD/MODULE records. Called with t->busy
 * set; leaves the state ACTIVE or PASSTHROUGH (or UNINIT when it is too
 * early: environ is not set yet).
 */
MS_HIDDEN void ms_init(struct ms_tls *t);

/*
 * Opens a record of size bytes in the calling thread's chunk (which the
 * caller owns: t->busy is set). Returns NULL when it must be dropped.
 */
MS_HIDDEN void *ms_rec_begin(struct ms_tls *t, uint32_t size);
MS_HIDDEN void ms_rec_end(struct ms_tls *t);

/*
 * ms_rec_begin, then the record header filled in: type, len = size, flags,
 * and ts, read here, after ms_rec_begin marked the chunk WRITING. The
 * payload after the header is the caller's to fill, every byte of it
 * (chunk memory is reused, so padding must be written too).
 *
 * Why the clock is read inside the record (the consumer's watermark,
 * shm/reader.go): the WRITING CAS is a full barrier, so a consumer that
 * read its clock (now) and then saw this chunk not WRITING knows that
 * the thread's next record in it carries ts >= now; one that saw it
 * WRITING knows the record in progress carries ts >= the now of its last
 * poll that saw the chunk quiet. Events below the least such bound can be
 * applied at once instead of after the reorder window. A clock read
 * before ms_rec_begin would break that: a thread preempted between the
 * two would publish a time the consumer had already passed. (A plain
 * rdtsc may still read the counter up to the CAS's latency early; the
 * consumer's watermark keeps a slack for it: ring.h ms_tsc.)
 */
static inline void *ms_rec_open(struct ms_tls *t, uint16_t type, uint32_t size, uint32_t flags)
{
	struct ms_record_header *h = ms_rec_begin(t, size);
	if (h) {
		h->type = type;
		h->len = (uint16_t)size;
		h->flags = flags;
		h->ts = ms_stamp(&ms_g.ring);
	}
	return h;
}

/* Zeroes the payload of a record opened with ms_rec_open. */
static inline void ms_rec_zero_payload(void *r, uint32_t size)
{
	memset((char *)r + sizeof(struct ms_record_header), 0, size - sizeof(struct ms_record_header));
}
/* Arms the thread-exit destructor and writes the THREAD record. */
MS_HIDDEN void ms_thread_announce(struct ms_tls *t);

/*
 * Callbacks that record outside the allocation hooks (thread exit, exit,
 * _exit, after dlopen/dlclose) start with ms_callback_enter: NULL when
 * the thread is already inside memscope (busy: a signal handler or our
 * own nested call) or the library is not recording; otherwise the
 * thread's state, busy and announced, with errno saved in *err. Pair with
 * ms_callback_leave, which puts errno back.
 */
static inline struct ms_tls *ms_callback_enter(int *err)
{
	struct ms_tls *t = ms_tls();
	if (t->busy || __atomic_load_n(&ms_g.state, __ATOMIC_ACQUIRE) != MS_ACTIVE)
		return NULL;
	*err = errno;
	t->busy = 1;
	if (!t->announced)
		ms_thread_announce(t);
	return t;
}

/*
 * Writes the allocator calls counted in t->unrecorded as a LOST record
 * with MS_RECF_UNRECORDED (t->busy set). Out of line: rare.
 */
MS_HIDDEN void ms_flush_unrecorded(struct ms_tls *t);

static inline void ms_callback_leave(struct ms_tls *t, int err)
{
	if (__builtin_expect(t->unrecorded != 0, 0))
		ms_flush_unrecorded(t);
	t->busy = 0;
	errno = err;
}

/* ---- stacks (unwind.c, cfi.c, stacks.c) ---- */

/*
 * An insert-only hash table of {key, value} words (slots.c): key 0 is
 * empty. MS_SLOT_REGIONS regions, each four times the previous one.
 */
#define MS_SLOT_REGIONS 7
struct ms_slot {
	uint64_t key;
	uint64_t value;
};
struct ms_slots {
	struct ms_slot *base;
	unsigned bits0;  /* region 0 has 1 << bits0 slots */
	unsigned probes; /* window of a key's hash within a region */
	unsigned level;  /* the region inserts go to */
	uint32_t used[MS_SLOT_REGIONS];
};
/* Maps the table; -1 if mmap fails. */
MS_HIDDEN int ms_slots_init(struct ms_slots *t, unsigned bits0, unsigned probes);
/*
 * The slot of key (!= 0), inserted if it was not there; NULL when the
 * table is full near hash (or was never mapped). A key inserted
 * concurrently with a region change can get two slots (slots.c T4).
 */
MS_HIDDEN struct ms_slot *ms_slots_get(struct ms_slots *t, uint64_t key, uint64_t hash);
/* Calls fn for every slot with a key, in no order (a slot being inserted may be seen with value 0). */
MS_HIDDEN void ms_slots_each(const struct ms_slots *t, void (*fn)(uint64_t key, uint64_t value, void *arg),
			     void *arg);

/*
 * Where a hook was called from: the return address into its caller, the
 * caller's stack pointer after the call returns (the hook's CFA) and the
 * caller's rbp. The walk starts there, so none of our own frames is
 * walked. MS_CALLER() is a pointer to one for the exported hook it is
 * written in (not a function that hook calls): taking the frame address
 * gives the hook a frame pointer, so [rbp] is the caller's rbp and
 * [rbp + 8] the return address.
 */
struct ms_caller {
	uintptr_t ip, sp, rbp;
};
#define MS_CALLER()                                                                    \
	(&(struct ms_caller){                                                          \
		.ip = ((uintptr_t *)__builtin_frame_address(0))[1],                    \
		.sp = (uintptr_t)__builtin_frame_address(0) + 16,                      \
		.rbp = ((uintptr_t *)__builtin_frame_address(0))[0],                   \
	})

MS_HIDDEN void ms_unwind_init(void);
/* Our own frames above the caller of a hook in libunwind's walk, at most (slack included). */
#define MS_UNWIND_SLACK 8
/* Stacks up to this depth are cached per thread (unwind.c); deeper ones are walked each time. */
#define MS_UNWIND_VSC_DEPTH 128
/*
 * Fills buf (room for depth + MS_UNWIND_SLACK + 1 entries) with the return
 * addresses of the stack that called c, innermost first. Returns how many
 * (at most depth), starting at buf[*first]; *truncated is set if the stack
 * was deeper than depth. If the stack is the one this thread cached and
 * whose id ms_unwind_remember was given in this process, returns 0 with
 * *known_id set instead, buf untouched.
 */
MS_HIDDEN unsigned ms_unwind(struct ms_tls *t, const struct ms_caller *c, void **buf,
			     unsigned depth, unsigned *first, int *truncated, uint64_t *known_id);
/* The id of the stack ms_unwind just returned, once its STACK record is in this process's stream. */
MS_HIDDEN void ms_unwind_remember(uint64_t id);

/*
 * Unwind rules (cfi.c), one 64-bit word per return address:
 *   bits 0-31   CFA offset (positive) from rsp, or from rbp if MS_RULE_CFA_RBP
 *   bits 32-47  offset of the saved rbp from the CFA (negative), 0: rbp unchanged
 *   bits 48-51  MS_RULE_CFA_RBP, MS_RULE_END (outermost frame), MS_RULE_FALLBACK,
 *               MS_RULE_NO_FDE (no CFI: the stack ends here if rbp is 0)
 *   bits 52-63  the code generation the rule was computed in (never 0)
 * The caller's return address is always at CFA - 8.
 */
#define MS_RULE_CFA_RBP (1ull << 48)
#define MS_RULE_END (1ull << 49)
#define MS_RULE_FALLBACK (1ull << 50)
#define MS_RULE_NO_FDE (1ull << 51)
#define MS_RULE_GEN_SHIFT 52
#define MS_RULE_GEN(r) ((uint32_t)((r) >> MS_RULE_GEN_SHIFT))
#define MS_RULE_GEN_MAX 4095u
MS_HIDDEN int ms_cfi_init(void);
/* The rule of return address ra; MS_RULE_FALLBACK if the rules cannot step out of its frame. */
MS_HIDDEN uint64_t ms_cfi_rule(uintptr_t ra);
/* The current code generation; 0: rules are off (everything goes to libunwind). */
MS_HIDDEN uint32_t ms_cfi_generation(void);
/* An object was unloaded: rules and cached stacks computed before are stale. */
MS_HIDDEN void ms_cfi_code_changed(void);
/* Calls fn for every rule this process holds, with its return address (rules of any generation). */
MS_HIDDEN void ms_cfi_each_rule(void (*fn)(uint64_t ra, uint64_t rule, void *arg), void *arg);

/*
 * The rules of an object file shared by the processes of a session
 * (rulecache.c). ms_rulefile_of returns the object's entry for code
 * generation gen (NULL: no build ID, or no room); ms_rulefile_rule the
 * rule of return address ra from the session's file for it (0: not
 * there), and ms_rulefile_compiled counts a rule the caller computed
 * itself; ms_rulefiles_save, at exit, writes the files of the objects
 * for which this process computed enough new rules;
 * ms_rulefiles_after_fork resets what a fork child cannot inherit.
 */
/*
 * The GNU build ID among the notes of the PT_NOTE segments of an object
 * loaded at bias with program headers ph[phnum] (modules.c): up to
 * MS_BUILD_ID_MAX bytes into out, its length; 0 if none. Segments
 * outside [lo, hi) are not read (0, UINTPTR_MAX for the loader's own
 * program headers, whose notes it mapped).
 */
MS_HIDDEN unsigned ms_build_id(uintptr_t bias, const ElfW(Phdr) *ph, unsigned phnum, uintptr_t lo, uintptr_t hi,
			       uint8_t *out);

struct dl_find_object;
struct ms_rulefile;
MS_HIDDEN struct ms_rulefile *ms_rulefile_of(const struct dl_find_object *obj, uint32_t gen);
MS_HIDDEN uint64_t ms_rulefile_rule(const struct ms_rulefile *f, uintptr_t ra);
MS_HIDDEN void ms_rulefile_compiled(struct ms_rulefile *f);
MS_HIDDEN void ms_rulefiles_save(void);
MS_HIDDEN void ms_rulefiles_after_fork(void);

MS_HIDDEN int ms_stacks_init(void);
/* Called in the child after fork: every stack must be written again. */
MS_HIDDEN void ms_stacks_new_process(void);
/*
 * Returns the id of the calling stack (0 if stacks are off), writing its
 * STACK record first if this process has not written it yet.
 */
MS_HIDDEN uint64_t ms_stack_capture(struct ms_tls *t, const struct ms_caller *c);

/* ---- modules (modules.c) ---- */

MS_HIDDEN void ms_modules_init(void); /* resolves the real dlopen/dlclose */
/* Finds our own text range and path (ms_g.self_*). */
MS_HIDDEN void ms_modules_find_self(void);
/* Writes MODULE LOAD records for every object (process start/exec). */
MS_HIDDEN void ms_modules_announce_all(struct ms_tls *t);
/* The same from the known set, without dl_iterate_phdr (fork child). */
MS_HIDDEN void ms_modules_announce_known(struct ms_tls *t);
/*
 * Cheap check whether objects were loaded or unloaded behind our back
 * (libc-internal dlopen); if so, rescans. Safe in a hook.
 */
MS_HIDDEN void ms_modules_check(struct ms_tls *t);
MS_HIDDEN void ms_modules_after_fork(void);

/* ---- process (process.c) ---- */

MS_HIDDEN int ms_process_init(void); /* key, atfork handlers, markers */
MS_HIDDEN void ms_process_announce(struct ms_tls *t, int event);
MS_HIDDEN void ms_process_write(struct ms_tls *t, int event, int status, uint32_t flags);

/* ---- leak check at exit (exitcheck.c) ---- */

/*
 * Writes PROCESS exit with status and seals the thread's chunk; if the
 * consumer checks leaks, first takes an exit slot and, after the record,
 * waits (bounded) until the consumer has scanned the process (X1-X4).
 */
MS_HIDDEN void ms_exit_check(struct ms_tls *t, int status);

/* ---- bare mode (spawn.c) ---- */

/*
 * Creates a private ring, exports MEMSCOPE_RING, starts the analyzer
 * detached. On success the ring is attached in ms_g.ring. Returns 0, or
 * -1 after saying why on stderr.
 */
MS_HIDDEN int ms_bare_start(void);

#endif
