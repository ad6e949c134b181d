/*
 * modules.c — MODULE records: every object loaded in the process, with
 * its load bias, PT_LOAD segments, GNU build ID and path, written at
 * process start (and again in a fork child, so that each process's stream
 * describes itself) and whenever the set changes.
 *
 * Changes are found by comparing dl_iterate_phdr's dlpi_adds/dlpi_subs
 * counters with the last scan's:
 *   - after our dlopen/dlclose wrappers return (the common case);
 *   - when a new stack is interned (stacks.c), which catches objects
 *     loaded behind our back (libc's internal dlopen for NSS, iconv...).
 * A scan diffs the loaded set against the known set and writes LOAD for
 * new objects and UNLOAD for vanished ones. A fork child writes LOAD for
 * the known set without scanning (see ms_modules_announce_known).
 *
 * Invariants:
 *   M1  Only the holder of scan_lock reads or writes the known set and
 *       last_adds/last_subs. Hooks only try the lock (never wait): a scan
 *       in progress elsewhere will see the same change. The dlopen/dlclose
 *       wrappers wait for it (they are not allocation hooks). A fork child
 *       resets the lock: the thread that held it does not exist there.
 *   M2  dlsym is never called from an allocation hook: the real
 *       dlopen/dlclose are resolved in the constructor or, if a call comes
 *       first, in the wrapper itself.
 *   M3  dlopen of a bare name (no '/') or of a name with '$' is a tail
 *       call: glibc finds the caller by return address, and the caller's
 *       RUNPATH and $ORIGIN must stay the program's, not ours. Such loads
 *       are found by the new-stack check instead.
 *   M4  In a fork child, the lock dl_iterate_phdr takes may be held for
 *       ever by a thread of the parent that does not exist there (glibc
 *       does not reset it), and libunwind calls dl_iterate_phdr for every
 *       PC it has not cached. So we export dl_iterate_phdr: in a fork child
 *       (ms_g.loader_unsafe), calls made from inside our hooks (tls.busy:
 *       libunwind's, our scans) iterate the known set, without the lock;
 *       every other call goes to glibc exactly as without us. The child
 *       leaves this mode once a dlopen/dlclose of the program succeeded
 *       there: the loader's locks then demonstrably work.
 */
#include "memscope_internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <elf.h>
#include <link.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>

#define MAX_KNOWN 1024
#define PATH_POOL (256u << 10)

struct known {
	uintptr_t phdr; /* dlpi_phdr: identifies a loaded object with bias */
	uint64_t bias;
	const char *name; /* dlpi_name, the loader's string (M4) */
	size_t tls_modid; /* dlpi_tls_modid (M4) */
	uint16_t phnum;   /* dlpi_phnum (M4) */
	uint32_t seen;  /* scan generation that last saw it */
	uint32_t path_off, path_len;
	uint16_t build_id_len;
	uint16_t nsegs;
	uint32_t flags; /* MS_RECF_TRUNCATED if segments or path were cut */
	uint8_t build_id[MS_BUILD_ID_MAX];
	struct ms_segment segs[MS_MAX_SEGMENTS];
};

static struct known *known; /* MAX_KNOWN entries, mmap'ed at first scan */
static char *path_pool;
static uint32_t path_used;
static unsigned nknown;
static uint32_t scan_gen;
static unsigned long long last_adds, last_subs;
static int scan_lock;

typedef int (*phdr_cb)(struct dl_phdr_info *, size_t, void *);

static void *(*real_dlopen)(const char *, int);
static int (*real_dlclose)(void *);
static int (*real_dl_iterate_phdr)(phdr_cb, void *);

static int lock_try(void)
{
	return __atomic_exchange_n(&scan_lock, 1, __ATOMIC_ACQUIRE) == 0;
}

static void lock_wait(void)
{
	while (!lock_try())
		sched_yield();
}

static void unlock(void)
{
	__atomic_store_n(&scan_lock, 0, __ATOMIC_RELEASE);
}

void ms_modules_init(void)
{
	struct ms_tls *t = ms_tls();
	uint32_t busy = t->busy;
	int e = errno;
	t->busy = 1; /* dlsym may allocate: not the program's doing */
	if (!__atomic_load_n(&real_dlopen, __ATOMIC_ACQUIRE))
		__atomic_store_n(&real_dlopen, (void *(*)(const char *, int))dlsym(RTLD_NEXT, "dlopen"),
				 __ATOMIC_RELEASE);
	if (!__atomic_load_n(&real_dlclose, __ATOMIC_ACQUIRE))
		__atomic_store_n(&real_dlclose, (int (*)(void *))dlsym(RTLD_NEXT, "dlclose"),
				 __ATOMIC_RELEASE);
	if (!__atomic_load_n(&real_dl_iterate_phdr, __ATOMIC_ACQUIRE))
		__atomic_store_n(&real_dl_iterate_phdr,
				 (int (*)(phdr_cb, void *))dlsym(RTLD_NEXT, "dl_iterate_phdr"),
				 __ATOMIC_RELEASE);
	t->busy = busy;
	errno = e;
}

void ms_modules_after_fork(void)
{
	__atomic_store_n(&scan_lock, 0, __ATOMIC_RELAXED);
}

/* ---- finding ourselves ---- */

static int self_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	uintptr_t me = (uintptr_t)data, lo = UINTPTR_MAX, hi = 0;
	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		uintptr_t a = info->dlpi_addr + ph->p_vaddr;
		if (a < lo)
			lo = a;
		if (a + ph->p_memsz > hi)
			hi = a + ph->p_memsz;
	}
	if (me < lo || me >= hi)
		return 0;
	ms_g.self_lo = lo;
	ms_g.self_hi = hi;
	ms_strlcpy(ms_g.self_path, info->dlpi_name ? info->dlpi_name : "", sizeof ms_g.self_path);
	return 1;
}

void ms_modules_find_self(void)
{
	dl_iterate_phdr(self_cb, (void *)(uintptr_t)&ms_modules_find_self);
}

/* ---- MODULE records ---- */

unsigned ms_build_id(uintptr_t bias, const ElfW(Phdr) *ph, unsigned phnum, uintptr_t lo, uintptr_t hi,
		     uint8_t *out)
{
	for (unsigned i = 0; i < phnum; i++) {
		if (ph[i].p_type != PT_NOTE)
			continue;
		size_t align = ph[i].p_align == 8 ? 8 : 4;
		uintptr_t p = bias + ph[i].p_vaddr, end = p + ph[i].p_filesz;
		if (p < lo || end > hi || end < p)
			continue;
		while (end - p >= sizeof(ElfW(Nhdr))) {
			const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
			uintptr_t d = p + sizeof *n + ((n->n_namesz + align - 1) & ~(align - 1));
			if (d > end || n->n_descsz > end - d)
				break;
			if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 &&
			    memcmp((const void *)(p + sizeof *n), "GNU", 4) == 0) {
				unsigned len = n->n_descsz > MS_BUILD_ID_MAX ? MS_BUILD_ID_MAX : n->n_descsz;
				memcpy(out, (const void *)d, len);
				return len;
			}
			uintptr_t next = d + ((n->n_descsz + align - 1) & ~(align - 1));
			if (next > end)
				break;
			p = next;
		}
	}
	return 0;
}

static unsigned build_id_of(const struct dl_phdr_info *info, uint8_t *out)
{
	return ms_build_id(info->dlpi_addr, info->dlpi_phdr, info->dlpi_phnum, 0, UINTPTR_MAX, out);
}

static const char *path_of(const struct dl_phdr_info *info)
{
	if (!info->dlpi_name || !info->dlpi_name[0])
		return ms_g.exe; /* the main program */
	return info->dlpi_name;
}

static unsigned segments_of(const struct dl_phdr_info *info, struct ms_segment *segs, uint32_t *flags)
{
	unsigned n = 0;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type != PT_LOAD)
			continue;
		if (n == MS_MAX_SEGMENTS) {
			*flags |= MS_RECF_TRUNCATED;
			break;
		}
		segs[n].vaddr = ph->p_vaddr;
		segs[n].memsz = ph->p_memsz;
		segs[n].offset = ph->p_offset;
		segs[n].flags = ph->p_flags;
		segs[n]._pad = 0;
		n++;
	}
	return n;
}

static void write_module(struct ms_tls *t, int event, uint64_t bias, const struct ms_segment *segs,
			 unsigned nsegs, uint32_t flags, const char *path, size_t path_len,
			 const uint8_t *bid, unsigned bid_len)
{
	if (path_len > MS_PATH_MAX) {
		path_len = MS_PATH_MAX;
		flags |= MS_RECF_TRUNCATED;
	}
	uint32_t fixed = sizeof(struct ms_module) + nsegs * sizeof(struct ms_segment);
	uint32_t size = (uint32_t)((fixed + path_len + 7) & ~7u);
	uint8_t *r = ms_rec_open(t, MS_REC_MODULE, size, flags);
	if (!r)
		return;
	struct ms_module *m = (struct ms_module *)r;
	ms_rec_zero_payload(r, size);
	m->bias = bias;
	m->event = (uint16_t)event;
	m->nsegs = (uint16_t)nsegs;
	m->build_id_len = (uint16_t)bid_len;
	m->path_len = (uint16_t)path_len;
	memcpy(m->build_id, bid, bid_len);
	memcpy(r + sizeof(struct ms_module), segs, nsegs * sizeof(struct ms_segment));
	memcpy(r + fixed, path, path_len);
	ms_rec_end(t);
}

static void write_known(struct ms_tls *t, int event, const struct known *k)
{
	write_module(t, event, k->bias, k->segs, k->nsegs, k->flags,
		     path_pool + k->path_off, k->path_len, k->build_id, k->build_id_len);
}

static struct known *remember(const struct dl_phdr_info *info, const char *path, size_t len)
{
	if (nknown == MAX_KNOWN)
		return NULL;
	struct known *k = &known[nknown++];
	k->phdr = (uintptr_t)info->dlpi_phdr;
	k->bias = info->dlpi_addr;
	k->name = info->dlpi_name;
	k->tls_modid = info->dlpi_tls_modid;
	k->phnum = info->dlpi_phnum;
	k->flags = 0;
	k->path_off = path_used;
	k->path_len = 0;
	if (len <= PATH_POOL - path_used) {
		memcpy(path_pool + path_used, path, len);
		k->path_len = (uint32_t)len;
		path_used += (uint32_t)len;
	} else {
		k->flags |= MS_RECF_TRUNCATED;
	}
	k->build_id_len = (uint16_t)build_id_of(info, k->build_id);
	k->nsegs = (uint16_t)segments_of(info, k->segs, &k->flags);
	return k;
}

static int scan_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct ms_tls *t = data;
	struct known *k = NULL;

	if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
		last_adds = info->dlpi_adds;
		last_subs = info->dlpi_subs;
	}
	for (unsigned i = 0; i < nknown; i++)
		if (known[i].phdr == (uintptr_t)info->dlpi_phdr && known[i].bias == info->dlpi_addr) {
			k = &known[i];
			break;
		}
	if (k) {
		k->seen = scan_gen;
		return 0;
	}
	const char *path = path_of(info);
	size_t len = strlen(path);
	k = remember(info, path, len);
	if (k) {
		k->seen = scan_gen;
		write_known(t, MS_MODULE_LOAD, k);
	} else { /* too many objects to remember: still describe it */
		struct ms_segment segs[MS_MAX_SEGMENTS];
		uint8_t bid[MS_BUILD_ID_MAX];
		uint32_t flags = 0;
		unsigned n = segments_of(info, segs, &flags);
		write_module(t, MS_MODULE_LOAD, info->dlpi_addr, segs, n, flags, path, len, bid,
			     build_id_of(info, bid));
	}
	return 0;
}

static int map_known(void)
{
	if (known)
		return 0;
	void *p = ms_map_private(MAX_KNOWN * sizeof(struct known) + PATH_POOL);
	if (!p)
		return -1;
	known = p;
	path_pool = (char *)p + MAX_KNOWN * sizeof(struct known);
	return 0;
}

/* Holding scan_lock: diff the loaded objects against the known set. */
static void scan_locked(struct ms_tls *t)
{
	if (map_known() != 0)
		return;
	scan_gen++;
	dl_iterate_phdr(scan_cb, t);
	/* Objects not seen in this scan were unloaded: UNLOAD, then forget. */
	unsigned w = 0;
	for (unsigned i = 0; i < nknown; i++) {
		if (known[i].seen != scan_gen) {
			write_known(t, MS_MODULE_UNLOAD, &known[i]);
			ms_cfi_code_changed(); /* another object may come at its address */
			continue;
		}
		known[w++] = known[i];
	}
	nknown = w;
}

void ms_modules_announce_all(struct ms_tls *t)
{
	lock_wait();
	scan_locked(t);
	unlock();
}

/*
 * In a fork child: describe the objects again from what we know, without
 * dl_iterate_phdr, whose lock another thread of the parent may have held
 * at the fork (glibc does not reset it in the child).
 */
void ms_modules_announce_known(struct ms_tls *t)
{
	for (unsigned i = 0; i < nknown; i++)
		write_known(t, MS_MODULE_LOAD, &known[i]);
}

static int counters_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	unsigned long long *c = data;
	if (size < offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs)
		return 1;
	c[0] = info->dlpi_adds;
	c[1] = info->dlpi_subs;
	return 1; /* the counters are global: one object is enough */
}

static int changed(void)
{
	unsigned long long c[2] = {0, 0};
	dl_iterate_phdr(counters_cb, c);
	return c[0] != __atomic_load_n(&last_adds, __ATOMIC_RELAXED) ||
	       c[1] != __atomic_load_n(&last_subs, __ATOMIC_RELAXED);
}

void ms_modules_check(struct ms_tls *t)
{
	if (!changed() || !lock_try())
		return;
	scan_locked(t);
	unlock();
}

/* After the real dlopen/dlclose: record what changed (outside any hook; errno kept). */
static void after_change(void)
{
	int e;
	struct ms_tls *t = ms_callback_enter(&e);
	if (!t)
		return;
	if (changed()) {
		lock_wait();
		scan_locked(t);
		unlock();
	}
	ms_callback_leave(t, e);
}

__attribute__((visibility("default"))) void *dlopen(const char *file, int mode)
{
	void *(*real)(const char *, int) = __atomic_load_n(&real_dlopen, __ATOMIC_ACQUIRE);
	if (!real) {
		ms_modules_init();
		real = __atomic_load_n(&real_dlopen, __ATOMIC_ACQUIRE);
	}
	if (!file || !strchr(file, '/') || strchr(file, '$'))
		return real(file, mode); /* M3: a tail call */
	void *h = real(file, mode);
	if (h) {
		__atomic_store_n(&ms_g.loader_unsafe, 0, __ATOMIC_RELAXED); /* M4 */
		after_change();
	}
	return h;
}

__attribute__((visibility("default"))) int dlclose(void *handle)
{
	int (*real)(void *) = __atomic_load_n(&real_dlclose, __ATOMIC_ACQUIRE);
	if (!real) {
		ms_modules_init();
		real = __atomic_load_n(&real_dlclose, __ATOMIC_ACQUIRE);
	}
	int r = real(handle);
	if (r == 0)
		__atomic_store_n(&ms_g.loader_unsafe, 0, __ATOMIC_RELAXED); /* M4 */
	after_change();
	return r;
}

/* M4: the loaded objects as dl_iterate_phdr would give them, from the known set. */
static int iterate_known(phdr_cb cb, void *data)
{
	for (unsigned i = 0; i < nknown; i++) {
		struct dl_phdr_info info;
		memset(&info, 0, sizeof info);
		info.dlpi_addr = known[i].bias;
		info.dlpi_name = known[i].name ? known[i].name : "";
		info.dlpi_phdr = (const ElfW(Phdr) *)known[i].phdr;
		info.dlpi_phnum = known[i].phnum;
		info.dlpi_adds = last_adds;
		info.dlpi_subs = last_subs;
		info.dlpi_tls_modid = known[i].tls_modid;
		int r = cb(&info, sizeof info, data);
		if (r)
			return r;
	}
	return 0;
}

__attribute__((visibility("default"))) int dl_iterate_phdr(phdr_cb cb, void *data)
{
	if (__builtin_expect(__atomic_load_n(&ms_g.loader_unsafe, __ATOMIC_RELAXED), 0) && known &&
	    ms_tls()->busy)
		return iterate_known(cb, data);
	int (*real)(phdr_cb, void *) = __atomic_load_n(&real_dl_iterate_phdr, __ATOMIC_ACQUIRE);
	if (!real) { /* a call before our init (ms_modules_find_self, the program) */
		ms_modules_init();
		real = __atomic_load_n(&real_dl_iterate_phdr, __ATOMIC_ACQUIRE);
	}
	return real(cb, data);
}
