package cring

/*
#cgo CFLAGS: -std=gnu11 -Wall -Wextra -Werror -I${SRCDIR}/../../../include
#include <stddef.h>
#include <stdint.h>
#include "memscope.h"

struct cring_field {
	const char *name;
	uint64_t off;
	uint64_t size;
};

#define S(s) {#s, 0, sizeof(struct s)}
#define F(s, f) {#s "." #f, offsetof(struct s, f), sizeof(((struct s *)0)->f)}
#define FLEX(s, f) {#s "." #f, offsetof(struct s, f), 0}

static const struct cring_field cring_fields[] = {
	S(ms_ring_header),
	F(ms_ring_header, magic), F(ms_ring_header, version), F(ms_ring_header, header_size),
	F(ms_ring_header, chunk_size), F(ms_ring_header, chunk_count), F(ms_ring_header, file_size),
	F(ms_ring_header, seal_after_ns), F(ms_ring_header, consumer_timeout_ns), F(ms_ring_header, flags),
	F(ms_ring_header, creator_uid), F(ms_ring_header, created_ns), F(ms_ring_header, _pad0),
	F(ms_ring_header, reserve_head), F(ms_ring_header, _pad1),
	F(ms_ring_header, last_read_to), F(ms_ring_header, next_read_from),
	F(ms_ring_header, consumer_heartbeat_ns), F(ms_ring_header, commit_futex),
	F(ms_ring_header, consumer_pid), F(ms_ring_header, _pad2),
	F(ms_ring_header, full_waiters), F(ms_ring_header, _pad3), F(ms_ring_header, dropped_events),
	F(ms_ring_header, full_waits), F(ms_ring_header, full_wait_ns), F(ms_ring_header, _pad4),
	F(ms_ring_header, consumer_caps), F(ms_ring_header, exit_futex), F(ms_ring_header, _pad6),
	F(ms_ring_header, exit_waiters),

	S(ms_chunk_header),
	F(ms_chunk_header, seq), F(ms_chunk_header, state), F(ms_chunk_header, pid),
	F(ms_chunk_header, tid), F(ms_chunk_header, claim_ns), F(ms_chunk_header, consumed),
	F(ms_chunk_header, _pad),

	S(ms_record_header),
	F(ms_record_header, type), F(ms_record_header, len), F(ms_record_header, flags), F(ms_record_header, ts),

	S(ms_alloc),
	F(ms_alloc, h), F(ms_alloc, ptr), F(ms_alloc, size), F(ms_alloc, stack_id), F(ms_alloc, kind),
	F(ms_alloc, _pad), F(ms_alloc, align),

	S(ms_free),
	F(ms_free, h), F(ms_free, ptr),

	S(ms_realloc),
	F(ms_realloc, h), F(ms_realloc, old_ptr), F(ms_realloc, new_ptr), F(ms_realloc, size),
	F(ms_realloc, stack_id), F(ms_realloc, ts_before), F(ms_realloc, kind), F(ms_realloc, _pad),
	F(ms_realloc, _pad2),

	S(ms_stack),
	F(ms_stack, h), F(ms_stack, id), F(ms_stack, depth), F(ms_stack, _pad), FLEX(ms_stack, pcs),

	S(ms_segment),
	F(ms_segment, vaddr), F(ms_segment, memsz), F(ms_segment, offset), F(ms_segment, flags),
	F(ms_segment, _pad),

	S(ms_module),
	F(ms_module, h), F(ms_module, bias), F(ms_module, event), F(ms_module, nsegs),
	F(ms_module, build_id_len), F(ms_module, path_len), F(ms_module, build_id),

	S(ms_thread),
	F(ms_thread, h), F(ms_thread, tid), F(ms_thread, name_len), F(ms_thread, name),
	F(ms_thread, stack_sp),

	S(ms_process),
	F(ms_process, h), F(ms_process, pid), F(ms_process, ppid), F(ms_process, event),
	F(ms_process, status), F(ms_process, exe_len), F(ms_process, arg_len),

	S(ms_lost),
	F(ms_lost, h), F(ms_lost, count),
};

struct cring_named_value {
	const char *name;
	uint64_t value;
};

#define K(c) {#c, (uint64_t)(c)}

static const struct cring_named_value cring_consts[] = {
	K(MS_MAGIC), K(MS_VERSION), K(MS_HEADER_SIZE), K(MS_CHUNK_HEADER_SIZE), K(MS_MIN_CHUNK_SIZE),
	K(MS_MAX_CHUNK_SIZE), K(MS_DEFAULT_CHUNK_SIZE), K(MS_DEFAULT_RING_SIZE), K(MS_MIN_CHUNK_COUNT),
	K(MS_DEFAULT_SEAL_AFTER_NS), K(MS_DEFAULT_CONSUMER_TIMEOUT_NS), K(MS_RING_LOSSY),
	K(MS_STATE_SEALED), K(MS_STATE_WRITING), K(MS_STATE_GEN_SHIFT), K(MS_STATE_GEN_MASK),
	K(MS_STATE_LEN_MASK),
	K(MS_REC_ALLOC), K(MS_REC_FREE), K(MS_REC_REALLOC), K(MS_REC_STACK), K(MS_REC_MODULE),
	K(MS_REC_THREAD), K(MS_REC_PROCESS), K(MS_REC_LOST), K(MS_REC_MAX), K(MS_RECF_TRUNCATED),
	K(MS_RECF_EXIT_CHECK), K(MS_RECF_THREAD_EXIT), K(MS_RECF_EXIT_REPORTS), K(MS_RECF_UNRECORDED), K(MS_CAP_LEAK_CHECK), K(MS_EXIT_SLOTS), K(MS_PRIVATE_MAGIC),
	K(MS_KIND_MALLOC), K(MS_KIND_CALLOC), K(MS_KIND_REALLOC), K(MS_KIND_REALLOCARRAY),
	K(MS_KIND_POSIX_MEMALIGN), K(MS_KIND_ALIGNED_ALLOC), K(MS_KIND_MEMALIGN), K(MS_KIND_VALLOC),
	K(MS_KIND_PVALLOC), K(MS_KIND_MAX),
	K(MS_MAX_DEPTH), K(MS_BUILD_ID_MAX), K(MS_PATH_MAX), K(MS_MAX_SEGMENTS), K(MS_THREAD_NAME_MAX),
	K(MS_MODULE_LOAD), K(MS_MODULE_UNLOAD),
	K(MS_PROCESS_START), K(MS_PROCESS_FORK), K(MS_PROCESS_EXEC), K(MS_PROCESS_EXIT), K(MS_PROCESS_FORKED),
};

static size_t cring_field_count(void) { return sizeof cring_fields / sizeof cring_fields[0]; }
static struct cring_field cring_field_at(size_t i) { return cring_fields[i]; }
static size_t cring_const_count(void) { return sizeof cring_consts / sizeof cring_consts[0]; }
static struct cring_named_value cring_const_at(size_t i) { return cring_consts[i]; }

static uint64_t cring_seq_claimed(uint64_t i) { return MS_SEQ_CLAIMED(i); }
static uint64_t cring_seq_abandoned(uint64_t i) { return MS_SEQ_ABANDONED(i); }
static uint64_t cring_state_gen(uint64_t i) { return MS_STATE_GEN(i); }
static uint64_t cring_state_free(uint64_t i) { return MS_STATE_FREE(i); }
static uint64_t cring_state_initial(uint64_t i, uint64_t n) { return MS_STATE_INITIAL(i, n); }
*/
import "C"

// Field is the offset and size of a struct field (Name "struct.field"),
// or the size of a struct (Name "struct", Off 0). A flexible array member
// has Size 0.
type Field struct {
	Name string
	Off  uint64
	Size uint64
}

// Fields lists every struct and field of include/memscope.h as the C
// compiler lays them out.
func Fields() []Field {
	out := make([]Field, int(C.cring_field_count()))
	for i := range out {
		f := C.cring_field_at(C.size_t(i))
		out[i] = Field{Name: C.GoString(f.name), Off: uint64(f.off), Size: uint64(f.size)}
	}
	return out
}

// Consts returns the value of every constant of include/memscope.h.
func Consts() map[string]uint64 {
	n := int(C.cring_const_count())
	out := make(map[string]uint64, n)
	for i := 0; i < n; i++ {
		c := C.cring_const_at(C.size_t(i))
		out[C.GoString(c.name)] = uint64(c.value)
	}
	return out
}

// SeqClaimed is MS_SEQ_CLAIMED(i).
func SeqClaimed(i uint64) uint64 { return uint64(C.cring_seq_claimed(C.uint64_t(i))) }

// SeqAbandoned is MS_SEQ_ABANDONED(i).
func SeqAbandoned(i uint64) uint64 { return uint64(C.cring_seq_abandoned(C.uint64_t(i))) }

// StateGen is MS_STATE_GEN(i).
func StateGen(i uint64) uint64 { return uint64(C.cring_state_gen(C.uint64_t(i))) }

// StateFree is MS_STATE_FREE(i).
func StateFree(i uint64) uint64 { return uint64(C.cring_state_free(C.uint64_t(i))) }

// StateInitial is MS_STATE_INITIAL(i, n).
func StateInitial(i, n uint64) uint64 {
	return uint64(C.cring_state_initial(C.uint64_t(i), C.uint64_t(n)))
}
