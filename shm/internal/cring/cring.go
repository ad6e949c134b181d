// Package cring drives the real C ring writer (preload/ring.c) from Go,
// for the tests and benchmarks of package shm. It compiles ring.c itself,
// so the tests exercise exactly the code the interposer runs.
//
// A Writer is one producer thread's state: use each Writer from one
// goroutine locked to its OS thread (runtime.LockOSThread), as the
// interposer uses one per thread.
package cring

/*
#cgo CFLAGS: -std=gnu11 -O2 -Wall -Wextra -Werror -fno-strict-aliasing -D_GNU_SOURCE -I${SRCDIR}/../../../include
#include "../../../preload/ring.c"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static struct ms_ring *cring_attach(const char *path, int lossy, int *err)
{
	struct ms_ring *r = calloc(1, sizeof *r);
	if (!r) {
		*err = -1;
		return NULL;
	}
	*err = ms_ring_attach(r, path, lossy);
	if (*err != MS_ATTACH_OK) {
		free(r);
		return NULL;
	}
	return r;
}

static void cring_detach(struct ms_ring *r)
{
	munmap(r->hdr, r->map_size);
	free(r);
}

static struct ms_writer *cring_writer(uint32_t pid, uint32_t tid)
{
	struct ms_writer *w = calloc(1, sizeof *w);
	if (w) {
		w->pid = pid;
		w->tid = tid;
	}
	return w;
}

static int cring_append_raw(struct ms_ring *r, struct ms_writer *w, const void *b, uint32_t n)
{
	void *p = ms_ring_begin(r, w, n);
	if (!p)
		return 0;
	memcpy(p, b, n);
	ms_ring_end(r, w);
	return 1;
}

static inline void fill_alloc(struct ms_alloc *a, uint64_t ts, uint64_t ptr, uint64_t size,
			      uint64_t stack_id, uint16_t kind, uint32_t align)
{
	a->h.type = MS_REC_ALLOC;
	a->h.len = sizeof *a;
	a->h.flags = 0;
	a->h.ts = ts;
	a->ptr = ptr;
	a->size = size;
	a->stack_id = stack_id;
	a->kind = kind;
	a->_pad = 0;
	a->align = align;
}

static inline int append_alloc(struct ms_ring *r, struct ms_writer *w, uint64_t ts, uint64_t ptr,
			       uint64_t size, uint64_t stack_id, uint16_t kind, uint32_t align)
{
	struct ms_alloc *a = ms_ring_begin(r, w, sizeof *a);
	if (!a)
		return 0;
	fill_alloc(a, ts, ptr, size, stack_id, kind, align);
	ms_ring_end(r, w);
	return 1;
}

static int cring_append_alloc(struct ms_ring *r, struct ms_writer *w, uint64_t ts, uint64_t ptr,
			      uint64_t size, uint64_t stack_id, uint16_t kind, uint32_t align)
{
	return append_alloc(r, w, ts, ptr, size, stack_id, kind, align);
}

static int cring_append_free(struct ms_ring *r, struct ms_writer *w, uint64_t ts, uint64_t ptr)
{
	struct ms_free *f = ms_ring_begin(r, w, sizeof *f);
	if (!f)
		return 0;
	f->h.type = MS_REC_FREE;
	f->h.len = sizeof *f;
	f->h.flags = 0;
	f->h.ts = ts;
	f->ptr = ptr;
	ms_ring_end(r, w);
	return 1;
}

// Appends n ALLOC records (ptr = size = ts = first + i) in a C loop; returns
// the number written and stores the elapsed CLOCK_MONOTONIC ns in *ns.
static uint64_t cring_append_allocs(struct ms_ring *r, struct ms_writer *w, uint64_t first, uint64_t n,
				    uint64_t *ns)
{
	uint64_t ok = 0, t0 = ms_now_ns();
	for (uint64_t i = 0; i < n; i++)
		ok += (uint64_t)append_alloc(r, w, first + i, first + i, first + i, 0, MS_KIND_MALLOC, 0);
	*ns = ms_now_ns() - t0;
	return ok;
}

// Appends n ALLOC records (ptr = first + i) stamped as the interposer
// stamps them: the clock read after ms_ring_begin marked the chunk
// WRITING (ms_rec_open). Every yield_every records (0: never) it yields
// the CPU between the two, so that consumers see records in progress.
static uint64_t cring_append_stamped(struct ms_ring *r, struct ms_writer *w, uint64_t first, uint64_t n,
				     uint64_t yield_every)
{
	uint64_t ok = 0;
	for (uint64_t i = 0; i < n; i++) {
		struct ms_alloc *a = ms_ring_begin(r, w, sizeof *a);
		if (!a)
			continue;
		if (yield_every && i % yield_every == 0)
			sched_yield();
		fill_alloc(a, ms_stamp(r), first + i, 8, 0, MS_KIND_MALLOC, 0);
		ms_ring_end(r, w);
		ok++;
	}
	return ok;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// Ring is a ring mapped by the C writer (ms_ring_attach).
type Ring struct {
	c *C.struct_ms_ring
}

// Attach maps the ring at path the way the interposer does.
func Attach(path string, lossy bool) (*Ring, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var cerr C.int
	l := C.int(0)
	if lossy {
		l = 1
	}
	c := C.cring_attach(cpath, l, &cerr)
	if c == nil {
		if cerr < 0 {
			return nil, errors.New("cring: out of memory")
		}
		return nil, fmt.Errorf("ms_ring_attach %s: %s", path, C.GoString(C.ms_ring_attach_strerror(cerr)))
	}
	return &Ring{c: c}, nil
}

// Detach unmaps the ring. Its Writers must not be used afterwards.
func (r *Ring) Detach() {
	if r.c != nil {
		C.cring_detach(r.c)
		r.c = nil
	}
}

// DataCap is the room for records in one chunk.
func (r *Ring) DataCap() uint32 { return uint32(r.c.data_cap) }

// Writer is one producer thread's struct ms_writer, allocated in C.
type Writer struct {
	r *Ring
	c *C.struct_ms_writer
}

// NewWriter returns a writer for thread tid of process pid. Free it.
func (r *Ring) NewWriter(pid, tid uint32) *Writer {
	c := C.cring_writer(C.uint32_t(pid), C.uint32_t(tid))
	if c == nil {
		panic("cring: out of memory")
	}
	return &Writer{r: r, c: c}
}

// Free releases the writer's C memory (it does not seal its chunk).
func (w *Writer) Free() {
	if w.c != nil {
		C.free(unsafe.Pointer(w.c))
		w.c = nil
	}
}

// AppendAlloc writes an ALLOC record; false if the event was dropped.
func (w *Writer) AppendAlloc(ts, ptr, size, stackID uint64, kind uint16, align uint32) bool {
	return C.cring_append_alloc(w.r.c, w.c, C.uint64_t(ts), C.uint64_t(ptr), C.uint64_t(size),
		C.uint64_t(stackID), C.uint16_t(kind), C.uint32_t(align)) != 0
}

// AppendFree writes a FREE record; false if the event was dropped.
func (w *Writer) AppendFree(ts, ptr uint64) bool {
	return C.cring_append_free(w.r.c, w.c, C.uint64_t(ts), C.uint64_t(ptr)) != 0
}

// AppendRaw writes b (a whole encoded record) as one record; false if
// it was dropped.
func (w *Writer) AppendRaw(b []byte) bool {
	if len(b) == 0 {
		return C.cring_append_raw(w.r.c, w.c, nil, 0) != 0
	}
	return C.cring_append_raw(w.r.c, w.c, unsafe.Pointer(&b[0]), C.uint32_t(len(b))) != 0
}

// AppendStamped writes n ALLOC records (ptr = first+i) stamped as the
// interposer stamps records: the clock is read once the record is open
// (ms_rec_open). Every yieldEvery records (0: never) the thread yields
// with its record open. It returns how many were written.
func (w *Writer) AppendStamped(first, n, yieldEvery uint64) uint64 {
	return uint64(C.cring_append_stamped(w.r.c, w.c, C.uint64_t(first), C.uint64_t(n), C.uint64_t(yieldEvery)))
}

// AppendAllocs writes n ALLOC records (ptr = size = ts = first+i)
// in one C loop, without a cgo call per record. It returns how many were
// written (the rest were dropped) and the loop's CLOCK_MONOTONIC ns.
func (w *Writer) AppendAllocs(first, n uint64) (written, ns uint64) {
	var cns C.uint64_t
	ok := C.cring_append_allocs(w.r.c, w.c, C.uint64_t(first), C.uint64_t(n), &cns)
	return uint64(ok), uint64(cns)
}

// Seal seals the writer's chunk (ms_ring_seal, as at thread exit).
func (w *Writer) Seal() { C.ms_ring_seal(w.r.c, w.c) }

// Forget drops the writer's chunk without touching it (ms_ring_forget).
func (w *Writer) Forget() { C.ms_ring_forget(w.c) }

// Lost is the number of dropped events not yet reported by a LOST record.
func (w *Writer) Lost() uint64 { return uint64(w.c.lost) }

// HasChunk reports whether the writer holds a chunk.
func (w *Writer) HasChunk() bool { return w.c.chunk != nil }

// Seq is the sequence of the writer's chunk (meaningful if HasChunk).
func (w *Writer) Seq() uint64 { return uint64(w.c.seq) }

// Len is the published length of the writer's chunk.
func (w *Writer) Len() uint32 { return uint32(w.c.len) }

// NowNS is ms_now_ns: CLOCK_MONOTONIC in ns.
func NowNS() uint64 { return uint64(C.ms_now_ns()) }
