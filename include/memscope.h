/*
 * memscope.h — the ring ABI shared by the interposer (preload/, C) and the
 * analyzer (shm/, Go through cgo). This file is the single source of truth
 * for the layout; shm's layout test compares every size and offset below
 * with its Go mirror.
 *
 * A ring file is:
 *
 *   [ struct ms_ring_header, padded to MS_HEADER_SIZE ]
 *   [ slot 0: struct ms_chunk_header + chunk data ]  chunk_size bytes
 *   [ slot 1 ] ... [ slot chunk_count-1 ]
 *
 * Everything is native-endian; the magic doubles as an endianness check.
 * Fields are plain integers: C code accesses the shared ones with the
 * __atomic builtins (as the Linux perf ring does with READ_ONCE/smp_*),
 * Go code with sync/atomic. Each field says who writes it.
 *
 * ---- Chunk protocol (sequence numbers, slots, ownership) ----
 *
 * Chunks are numbered by a 64-bit sequence i taken from reserve_head; the
 * chunk with sequence i lives in slot i % chunk_count.
 *
 * I1  reserve_head only grows, by CAS, and only while
 *     reserve_head - last_read_to < chunk_count. Hence the previous
 *     occupant of slot i % N (sequence i - N) is below last_read_to: the
 *     consumer has finished with it and reset the slot (state =
 *     MS_STATE_FREE(i), then consumed = 0) before publishing last_read_to
 *     (release).
 * I2  slot.seq is MS_SEQ_CLAIMED(i) once the producer holding reservation i
 *     owns the slot, MS_SEQ_ABANDONED(i) if the consumer gave up on it
 *     first. Both moves are CASes from the previous occupant's value (0 for
 *     the first round), so exactly one of them wins: no slot has two owners.
 * I3  The owner writes pid and tid after claiming and before its first
 *     publish; a reader that sees len > 0 (acquire) may read them.
 * I4  state = SEALED | WRITING | GEN(i) | len once initialised. Before, it
 *     is the slot's initial value for sequence i: 0 in the first round
 *     (i < N, fresh file), MS_STATE_FREE(i) after a reset. Right after
 *     claiming, the owner CASes state from that initial value to GEN(i);
 *     the consumer may seal a claimed but uninitialised chunk (owner stuck
 *     or dead between its two CASes) by a CAS from the same value to
 *     SEALED | GEN(i). The initial value names the generation, so an owner
 *     that slept through the seal, the commit and the reset of its slot
 *     fails its CAS (a reset to a plain 0 would let it succeed on a slot
 *     that is no longer its own). Bytes [0, len) of the chunk data are complete
 *     records and never change until the slot is reused. Only the owner
 *     grows len. GEN(i) is never 0, and a thread that slept through a whole
 *     wrap of the ring still expects its own GEN, so its CAS fails on a
 *     reused slot (ABA-safe for 2^30-1 chunk generations).
 * I5  To append, the owner CASes state from GEN|len to GEN|len|WRITING,
 *     writes the record at offset len, then stores GEN|(len+reclen)
 *     (release), clearing WRITING. The consumer never changes state while
 *     WRITING is set (unless the owning thread is gone), so the owner is
 *     never caught writing into a slot that was sealed and reused.
 * I6  SEALED is final: set by the owner when the next record does not fit
 *     or the thread exits, or by the consumer (CAS from an unsealed,
 *     non-WRITING value) when the chunk has been idle for seal_after_ns or
 *     its owner is gone. An owner whose CAS fails finds SEALED and moves to
 *     a fresh chunk, so the record it was about to write is written there:
 *     nothing is lost or duplicated.
 * I7  Records never straddle chunks; every record is 8-byte aligned and
 *     its len (header included) is a multiple of 8, >= 16, and fits in the
 *     chunk.
 * I8  Per thread, records are published in program order; a thread's
 *     chunks have increasing sequences. A reader that snapshots states from
 *     the highest sequence down and then delivers in increasing sequence
 *     order delivers every thread's records in order.
 */
#ifndef MEMSCOPE_H
#define MEMSCOPE_H

#include <stdint.h>

#define MS_MAGIC 0x45504f43534d454dULL /* bytes "MEMSCOPE" little-endian */
#define MS_VERSION 4

#define MS_HEADER_SIZE 4096u
#define MS_CHUNK_HEADER_SIZE 64u
#define MS_MIN_CHUNK_SIZE 4096u           /* holds the largest record */
#define MS_MAX_CHUNK_SIZE (1u << 24)      /* len must fit in 31 bits */
#define MS_DEFAULT_CHUNK_SIZE 16384u
#define MS_DEFAULT_RING_SIZE (64ull << 20) /* N * chunk_size */
#define MS_MIN_CHUNK_COUNT 2u
#define MS_DEFAULT_SEAL_AFTER_NS 50000000ull        /* 50 ms */
#define MS_DEFAULT_CONSUMER_TIMEOUT_NS 10000000000ull /* 10 s */

/* ms_ring_header.flags */
#define MS_RING_LOSSY 0x1u /* producers drop instead of waiting when full */
/*
 * Record timestamps (ms_record_header.ts) are the CPU's time-stamp counter,
 * read as "lfence; rdtsc", not CLOCK_MONOTONIC ns: set by the ring's
 * creator where the TSC is invariant (CPUID 0x80000007 EDX bit 8). The
 * consumer converts ticks to ns with its own calibration against
 * CLOCK_MONOTONIC. Every other time in the ring stays CLOCK_MONOTONIC ns.
 */
#define MS_RING_TSC 0x2u

/* ms_ring_header.consumer_caps */
#define MS_CAP_LEAK_CHECK 0x1u /* the consumer checks reachability at exit (X1-X4) */
#define MS_EXIT_SLOTS 64u     /* processes that can wait at exit at once */

/*
 * The library maps its own tables (stack hashes, the module list) each as
 * a mapping of its own, between PROT_NONE guard pages, whose first page
 * starts with {MS_PRIVATE_MAGIC, size of the mapping}. They hold no heap
 * pointer: the leak check does not scan them (preload/privmem.c).
 */
#define MS_PRIVATE_MAGIC 0x5441564952505350ull /* bytes "PSPRIVAT" */

/* ms_chunk_header.seq */
#define MS_SEQ_CLAIMED(i) (((uint64_t)(i) + 1) << 1)
#define MS_SEQ_ABANDONED(i) ((((uint64_t)(i) + 1) << 1) | 1)

/* ms_chunk_header.state */
#define MS_STATE_SEALED (1ull << 63)
#define MS_STATE_WRITING (1ull << 62)
#define MS_STATE_GEN_SHIFT 32
#define MS_STATE_GEN_MASK 0x3fffffffull /* after shifting */
#define MS_STATE_GEN(i) ((((uint64_t)(i) % MS_STATE_GEN_MASK) + 1) << MS_STATE_GEN_SHIFT)
#define MS_STATE_LEN_MASK 0xffffffffull
/* Reset value of a slot waiting for sequence i (I1, I4); len all ones is never a real length. */
#define MS_STATE_FREE(i) (MS_STATE_GEN(i) | MS_STATE_LEN_MASK)
/* Value of state a slot holds for sequence i before its owner initialises it (I4). */
#define MS_STATE_INITIAL(i, n) ((uint64_t)(i) < (uint64_t)(n) ? 0 : MS_STATE_FREE(i))

struct ms_ring_header {
	/* Written once by the creator before anyone else maps the file. */
	uint64_t magic;
	uint32_t version;
	uint32_t header_size;         /* MS_HEADER_SIZE */
	uint32_t chunk_size;          /* slot size incl. chunk header, power of two */
	uint32_t chunk_count;         /* N */
	uint64_t file_size;           /* header_size + N * chunk_size */
	uint64_t seal_after_ns;       /* consumer seals chunks idle this long */
	uint64_t consumer_timeout_ns; /* producers go lossy after a stale heartbeat this old */
	uint32_t flags;               /* MS_RING_* */
	uint32_t creator_uid;
	uint64_t created_ns;          /* CLOCK_MONOTONIC at creation */
	uint64_t _pad0[1];

	/* Producers: the only word every producer CASes. Own cache line. */
	uint64_t reserve_head; /* next chunk sequence to hand out (I1) */
	uint64_t _pad1[7];

	/* Consumer-owned cursors. Own cache line. */
	uint64_t last_read_to;   /* chunks < this are consumed and reusable (I1) */
	uint64_t next_read_from; /* chunks < this were seen by the consumer (>= last_read_to) */
	uint64_t consumer_heartbeat_ns; /* CLOCK_MONOTONIC, refreshed while consuming */
	uint32_t commit_futex;   /* bumped at each commit that frees slots; producers wait on it */
	uint32_t consumer_pid;   /* pid of the consuming process, 0 if none yet */
	uint64_t _pad2[4];

	/* Producer-written counters. Own cache line. */
	uint32_t full_waiters;   /* producers currently in futex wait */
	uint32_t _pad3;
	uint64_t dropped_events; /* events producers could not record (lossy) */
	uint64_t full_waits;     /* times a producer found the ring full */
	uint64_t full_wait_ns;   /* CLOCK_MONOTONIC ns producers spent waiting for a free chunk */
	uint64_t _pad4[4];

	/*
	 * Exit handshake of the leak check (DESIGN.md §6.1). Own cache lines.
	 *
	 * X1  exit_waiters[k] is 0 (free) or the pid of a process parked at
	 *     exit. Only that process moves a slot 0 -> pid (CAS), before it
	 *     writes its PROCESS exit record with MS_RECF_EXIT_CHECK, so a
	 *     consumer that reads the record finds the slot.
	 * X2  Whoever moves the slot pid -> 0 (CAS) ends the wait: the consumer
	 *     when its check is done or abandoned (then FUTEX_WAKE on the slot),
	 *     or the process itself when its bounded wait times out. Exactly one
	 *     CAS wins; the other side does nothing, so a slot freed by a timeout
	 *     and taken by another process is never released on its behalf.
	 * X3  A process parks only while consumer_caps has MS_CAP_LEAK_CHECK and
	 *     the consumer's heartbeat is fresh; it never waits longer than
	 *     MEMSCOPE_LEAK_CHECK_TIMEOUT, whatever the consumer does.
	 * X4  The consumer stops the process's threads (ptrace) before it reads
	 *     the ring to the end for that pid, so no record of the process can
	 *     be published after the consumer's last read and before the scan.
	 * X5  After its exit record and seal, a process that took a slot adds 1
	 *     to exit_futex (release) and wakes its waiters (FUTEX_WAKE). An idle
	 *     consumer reads exit_futex before it polls and, finding nothing,
	 *     waits on it with the value read (bounded by its poll interval),
	 *     so it starts a check when the process parks, not at its next poll.
	 */
	uint32_t consumer_caps; /* MS_CAP_*, written by the consumer at attach */
	uint32_t exit_futex;    /* X5: bumped after each exit record that waits for a check */
	uint64_t _pad6[6];
	uint32_t exit_waiters[MS_EXIT_SLOTS];
};

struct ms_chunk_header {
	uint64_t seq;      /* MS_SEQ_CLAIMED/ABANDONED (I2) */
	uint64_t state;    /* SEALED | WRITING | GEN | len (I4-I6) */
	uint32_t pid;      /* owner process (I3) */
	uint32_t tid;      /* owner thread (I3) */
	uint64_t claim_ns; /* owner's record clock at claim (ts units); diagnostics */
	uint64_t consumed; /* consumer: bytes of data committed as read */
	uint64_t _pad[3];
};

/* ---- Records ---- */

enum ms_record_type {
	MS_REC_ALLOC = 1,
	MS_REC_FREE = 2,
	MS_REC_REALLOC = 3,
	MS_REC_STACK = 4,
	MS_REC_MODULE = 5,
	MS_REC_THREAD = 6,
	MS_REC_PROCESS = 7,
	MS_REC_LOST = 8,
	MS_REC_MAX = 8,
};

/* ms_record_header.flags */
#define MS_RECF_TRUNCATED 0x1u /* STACK hit the depth limit; MODULE/PROCESS string cut */
#define MS_RECF_EXIT_CHECK 0x2u /* PROCESS exit: the process waits for a leak check (X1) */
#define MS_RECF_THREAD_EXIT 0x4u /* THREAD: written as the thread ends; stack_sp is set */
#define MS_RECF_EXIT_REPORTS 0x8u /* PROCESS exit: with EXIT_CHECK, also wait for the reports (bare mode's first process) */
#define MS_RECF_UNRECORDED 0x10u /* LOST: count is allocator calls a signal handler made inside a hook, passed through unrecorded */

struct ms_record_header {
	uint16_t type; /* enum ms_record_type */
	uint16_t len;  /* whole record incl. this header, multiple of 8 (I7) */
	uint32_t flags;
	uint64_t ts;   /* CLOCK_MONOTONIC ns, or TSC ticks (MS_RING_TSC); causal per DESIGN §5.3 */
};

/* Allocation kinds (ms_alloc.kind, ms_realloc.kind). */
enum ms_alloc_kind {
	MS_KIND_MALLOC = 1,
	MS_KIND_CALLOC = 2,
	MS_KIND_REALLOC = 3,
	MS_KIND_REALLOCARRAY = 4,
	MS_KIND_POSIX_MEMALIGN = 5,
	MS_KIND_ALIGNED_ALLOC = 6,
	MS_KIND_MEMALIGN = 7,
	MS_KIND_VALLOC = 8,
	MS_KIND_PVALLOC = 9,
	MS_KIND_MAX = 9,
};

/* ts: after the allocator returned. */
struct ms_alloc {
	struct ms_record_header h;
	uint64_t ptr;
	uint64_t size;     /* requested size (calloc: n*size) */
	uint64_t stack_id; /* 0: no stack */
	uint16_t kind;     /* enum ms_alloc_kind */
	uint16_t _pad;
	uint32_t align;    /* requested alignment, 0 if none */
};

/* ts: before the allocator was called. free(NULL) is not recorded. */
struct ms_free {
	struct ms_record_header h;
	uint64_t ptr;
};

/*
 * A successful realloc/reallocarray. old == 0: it was a malloc. new == 0
 * (realloc(p, 0) in glibc): it was a free of old. ts_before orders the
 * release of old, h.ts the birth of new.
 */
struct ms_realloc {
	struct ms_record_header h;
	uint64_t old_ptr;
	uint64_t new_ptr;
	uint64_t size;
	uint64_t stack_id;
	uint64_t ts_before;
	uint16_t kind; /* MS_KIND_REALLOC or MS_KIND_REALLOCARRAY */
	uint16_t _pad;
	uint32_t _pad2;
};

/* Written once per process per id, by the thread that interned it. */
struct ms_stack {
	struct ms_record_header h;
	uint64_t id;     /* 64-bit hash of pcs, never 0 */
	uint32_t depth;  /* number of pcs */
	uint32_t _pad;
	uint64_t pcs[];  /* pcs[0]: return address into the caller of malloc */
};

#define MS_MAX_DEPTH 256u
#define MS_BUILD_ID_MAX 64u
#define MS_PATH_MAX 2048u
#define MS_MAX_SEGMENTS 16u

enum ms_module_event {
	MS_MODULE_LOAD = 1,
	MS_MODULE_UNLOAD = 2,
};

struct ms_segment {
	uint64_t vaddr;  /* p_vaddr: runtime address is bias + vaddr */
	uint64_t memsz;
	uint64_t offset; /* p_offset */
	uint32_t flags;  /* p_flags (PF_X = 1) */
	uint32_t _pad;
};

/*
 * A loaded object. Followed by nsegs struct ms_segment (PT_LOAD only), then
 * path_len bytes of path (no NUL), padded to 8.
 */
struct ms_module {
	struct ms_record_header h;
	uint64_t bias;  /* dlpi_addr: runtime address - ELF vaddr */
	uint16_t event; /* enum ms_module_event */
	uint16_t nsegs;
	uint16_t build_id_len;
	uint16_t path_len;
	uint8_t build_id[MS_BUILD_ID_MAX];
	/* struct ms_segment segs[nsegs]; char path[path_len]; */
};

#define MS_THREAD_NAME_MAX 16u

/*
 * stack_sp: an address on the thread's stack (0 if unknown). With
 * MS_RECF_THREAD_EXIT the thread is ending: glibc keeps the stacks of
 * ended threads mapped for reuse, and the leak check does not take them as
 * roots (their contents are dead frames); nor, in a fork child, the stacks
 * of the parent's other threads.
 */
struct ms_thread {
	struct ms_record_header h;
	uint32_t tid;
	uint32_t name_len;
	char name[MS_THREAD_NAME_MAX];
	uint64_t stack_sp;
};

/*
 * Fork, F1-F2: where in the parent's records the child's heap was copied.
 * The parent goes on allocating as soon as fork() returns, often before
 * the child has run at all, so the child's own first record comes after
 * parent events it did not inherit; its timestamp cannot say which.
 * F1  The forking thread numbers the fork (k, from 1, per image) before
 *     the fork; after it, the parent's forking thread writes PROCESS
 *     forked {status = k} before any record of its own that follows the
 *     fork, and the child writes PROCESS fork {ppid, status = k} before
 *     any record of its own. So every record of the forking thread
 *     before the parent's FORKED record is in the child's heap, none
 *     after it is.
 * F2  A consumer that applies the parent's FORKED record before the
 *     child's FORK record keeps a copy of the parent's state as of it for
 *     the child; one that applies the child's FORK first copies the
 *     parent's current state (the forking thread's records since the fork
 *     follow FORKED, not applied yet). Records of the parent's other
 *     threads go by timestamp. status 0 in a FORK record: not numbered
 *     (the library was not recording yet when the fork began), timestamps
 *     only.
 */
enum ms_process_event {
	MS_PROCESS_START = 1,  /* first image of a process traced from its start */
	MS_PROCESS_FORK = 2,   /* written by the child of fork(); ppid is the parent, status the fork's number (F1) */
	MS_PROCESS_EXEC = 3,   /* a new image joined the ring after execve() */
	MS_PROCESS_EXIT = 4,   /* normal exit seen by the library; status if known */
	MS_PROCESS_FORKED = 5, /* written by the parent after fork() returned; status is the fork's number (F1) */
};

/* Followed by exe_len bytes of the executable path, then arg_len bytes of argv[0], padded to 8. */
struct ms_process {
	struct ms_record_header h;
	uint32_t pid;
	uint32_t ppid;
	uint32_t event; /* enum ms_process_event */
	int32_t status;
	uint32_t exe_len;
	uint32_t arg_len;
};

/* Events this thread dropped (ring full, lossy) since its last record. */
struct ms_lost {
	struct ms_record_header h;
	uint64_t count;
};

#endif /* MEMSCOPE_H */
