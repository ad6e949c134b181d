/*
 * ring.h — the producer side of the shared-memory ring (include/memscope.h).
 * Used by the interposer and, through cgo, by the Go ring tests. No malloc,
 * no locks, no stdio: every function here may run inside a malloc hook.
 */
#ifndef MS_RING_H
#define MS_RING_H

#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#include "../include/memscope.h"

/* Maps pages writable ahead of their first touch (ring.c, slots.c); older
 * kernels answer EINVAL and the page faults stay. */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* A process's view of one mapped ring. Read-only after ms_ring_attach. */
struct ms_ring {
	struct ms_ring_header *hdr;
	uint8_t *slots; /* slot 0 */
	uint64_t map_size;
	uint32_t chunk_size;
	uint32_t chunk_count;
	uint32_t data_cap; /* chunk_size - MS_CHUNK_HEADER_SIZE */
	int lossy;         /* MEMSCOPE_MODE=lossy or MS_RING_LOSSY */
	int tsc;           /* MS_RING_TSC: records are stamped with ms_tsc() */
	uint64_t consumer_timeout_ns;
};

/*
 * One producer thread's state. Zero-initialised is valid (no chunk yet).
 * The interposer keeps one per thread in initial-exec TLS.
 */
struct ms_writer {
	struct ms_chunk_header *chunk; /* owned chunk, or NULL */
	uint8_t *data;                 /* chunk data */
	uint32_t len;                  /* published length of chunk data */
	uint32_t pending;              /* size of the record between begin and end, 0 if none */
	uint64_t seq;                  /* sequence of chunk */
	uint64_t gen;                  /* MS_STATE_GEN(seq), cached: no division per record */
	uint64_t lost;                 /* dropped events not yet reported by a LOST record */
	uint32_t pid;
	uint32_t tid;
};

enum ms_attach_error {
	MS_ATTACH_OK = 0,
	MS_ATTACH_OPEN,    /* open/fstat failed (errno kept) */
	MS_ATTACH_OWNER,   /* not a regular file owned by us */
	MS_ATTACH_SIZE,    /* file too small or sizes inconsistent */
	MS_ATTACH_MAGIC,   /* not a memscope ring */
	MS_ATTACH_VERSION, /* another ABI version */
	MS_ATTACH_MAP,     /* mmap failed */
};

/* Maps the ring at path (and closes the fd). Returns MS_ATTACH_*. */
int ms_ring_attach(struct ms_ring *r, const char *path, int lossy);
const char *ms_ring_attach_strerror(int err);

/*
 * Reserves room for one record of size bytes (multiple of 8, >= 16,
 * <= data_cap) in w's chunk, taking a new chunk if needed. Returns where to
 * write it, or NULL if the event must be dropped (counted in w->lost and the
 * header). A size outside those bounds can never be written: it is dropped
 * and counted the same way. Note data_cap is only MS_MIN_CHUNK_SIZE - 64 =
 * 4032 bytes in the smallest ring, less than a PROCESS record with two
 * MS_PATH_MAX strings: cut strings (MS_RECF_TRUNCATED) to fit data_cap.
 * Between begin and end the caller only writes the record.
 */
void *ms_ring_begin(struct ms_ring *r, struct ms_writer *w, uint32_t size);

/* Publishes the record started by the last successful ms_ring_begin. */
void ms_ring_end(struct ms_ring *r, struct ms_writer *w);

/* Seals w's chunk (thread exit). The next begin takes a new chunk. */
void ms_ring_seal(struct ms_ring *r, struct ms_writer *w);

/*
 * Forgets w's chunk without touching it: the child of fork() inherits its
 * parent's chunk pointer but not its ownership.
 */
void ms_ring_forget(struct ms_writer *w);

/* CLOCK_MONOTONIC in ns (vDSO, no syscall). */
uint64_t ms_now_ns(void);

/*
 * The time-stamp counter, read with a plain rdtsc (about 8 ns here). rdtsc
 * is not ordered with other instructions: it may read the counter before
 * earlier instructions complete (never after later stores become
 * visible: they retire after it). So:
 *   - it may read a time from before the record's CAS completed, by at
 *     most the time instructions wait in the CPU (a cache miss or two):
 *     the consumer's watermark allows for it (shm.watermarkSlack). A
 *     free's record is stamped before the free can be seen by another
 *     thread.
 *   - two threads' records of one address can come out of order: an
 *     allocation stamped before the free of the block malloc reused, a
 *     free stamped before the allocation of the block it frees. Two
 *     CPUs' counters are not exactly in step (hundreds of ticks on the
 *     project's VM), and rdtsc may read before malloc's loads complete.
 *     The analyzer pairs them all the same (analyzer/engine/reuse.go).
 *     "lfence; rdtsc" for allocations did not prevent it (misorders
 *     were more frequent with it) and took a fifth of the time of a
 *     program allocating in a loop (micro in make bench).
 * Only where ms_tsc_invariant(); 14-27 ns for clock_gettime otherwise.
 */
static inline uint64_t ms_tsc(void)
{
#if defined(__x86_64__)
	uint32_t lo, hi;
	__asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
	return (uint64_t)hi << 32 | lo;
#else
	return ms_now_ns();
#endif
}

/* A record's timestamp: ms_tsc() in an MS_RING_TSC ring, else ms_now_ns(). */
static inline uint64_t ms_stamp(const struct ms_ring *r)
{
	return __builtin_expect(r->tsc, 1) ? ms_tsc() : ms_now_ns();
}

/*
 * Whether the TSC runs at a constant rate in every power state and is
 * the same on every CPU (CPUID 0x80000007 EDX bit 8, "invariant TSC"):
 * the condition for a ring creator to set MS_RING_TSC.
 */
int ms_tsc_invariant(void);

#endif
