/*
 * rulecache.c — the unwind rules of an object file, shared through a file
 * by the processes of a session.
 *
 * A build runs the same compiler tens of times, and each run computed the
 * same rules from the same .eh_frame (cfi.c): 145 000 rules and 311 ms of
 * CPU for the 124 processes of make bench's build row, a cold binary
 * search and a walk of a call frame program each, in pages each new
 * process maps again (about 6-12 us a page on the project's VM). A rule
 * depends only on the object file's bytes: the rule of return address ra
 * in an object loaded at bias is the rule of file address ra - bias
 * wherever the same file is loaded. So a process that computed enough
 * new rules for an object leaves them at its exit in a file beside the
 * ring, named by the object's GNU build ID, and the processes that load
 * the object after it look a rule up there (a binary search in a few
 * pages) before computing it.
 *
 * File DIR/.rules-HEXID (DIR: the ring's directory, private to the user;
 * the leading dot keeps it out of the ring listings), little endian:
 *   header  magic "MSRULES1" | u32 entry count | u32 build ID length |
 *           u8 build ID[32] | u64 checksum of the entries |
 *           u64 hash of libmemscope.so's own build ID              (64 B)
 *   entries u64 file address of a return address | u64 rule   (16 B each)
 * Entries are sorted by address, strictly; a rule is what compute_rule
 * returns (never 0, no generation bits). The library's build ID keeps a
 * file written by another build of the library, whose rules may differ,
 * from being used.
 *
 * Invariants:
 *   RC1 A file is written whole under a temporary name and renamed over
 *       the final one, so a reader maps a complete file. A file is used
 *       only if every check passes: regular, ours, its size that of its
 *       count, the magic, the build IDs of the object and of this library,
 *       addresses strictly increasing, rules non-zero without generation
 *       bits, the checksum.
 *       Anything else and the process computes its rules as without it.
 *   RC2 files[] only grows. One thread at a time adds an entry (it
 *       holds creating; another that finds it held computes its rule
 *       without a file this time, rather than wait or add a second
 *       entry for the same object: a thousand threads starting at once
 *       would fill the table with copies). It looks the object up again,
 *       fills the entry at index nfiles, then publishes it by
 *       incrementing nfiles (release); readers look below nfiles only. A fork child clears creating (the thread that held it is
 *       not there; the entry it was filling is not counted, and is
 *       filled again).
 *   RC3 An entry stands for the object mapped at [lo, hi) in code
 *       generation gen (cfi.c C3); one of another generation is not used
 *       (the object may have been unloaded, another loaded there).
 *   RC4 A file is written at exit for an object for which this process
 *       computed at least SAVE_MIN new rules and a sixteenth of what the
 *       file held: the file's rules and those the rule table holds for
 *       the entry's range in the entry's generation (computed or read in
 *       this process while that object was there: RC3, and a range holds
 *       one object in a generation, since unloading one moves it). An
 *       object unloaded since is saved all the same: its rules are those
 *       of its file. Two processes writing at once each rename a complete
 *       file; the last one stays.
 * A fork child inherits the entries and the mapped files: the same
 * objects at the same addresses.
 */
#include "memscope_internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h> /* rename: a system call, no stdio stream */
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_FILES 128
#define MAX_ID 32
/*
 * A path to a file of rules: the ring's directory and the name. Looked
 * up inside an allocation hook, on whatever stack the program gave the
 * thread (a coroutine's may be small): a ring directory longer than this
 * allows goes without files.
 */
#define PATH_CAP 512
#define MAX_ENTRIES (1u << 22)
#define SAVE_MIN 32

static const char magic[8] = {'M', 'S', 'R', 'U', 'L', 'E', 'S', '1'};

struct file_header {
	char magic[8];
	uint32_t count;
	uint32_t id_len;
	uint8_t id[MAX_ID];
	uint64_t sum;
	uint64_t lib; /* lib_hash() */
};

struct entry {
	uint64_t addr;
	uint64_t rule;
};

struct ms_rulefile {
	uint32_t gen;
	uintptr_t lo, hi, bias;
	uint32_t id_len;
	uint8_t id[MAX_ID];
	const struct entry *entries; /* the session's file, mapped; NULL if none */
	uint32_t count;
	uint32_t computed; /* rules computed here, not found in the file */
};

static struct ms_rulefile files[MAX_FILES];
static uint32_t nfiles;
static uint32_t creating; /* RC2 */
static uint64_t lib_id_hash; /* lib_hash(), 0 until computed */

static uint64_t checksum(const struct entry *e, uint32_t n)
{
	uint64_t h = 0x9e3779b97f4a7c15ull;
	for (uint32_t i = 0; i < n; i++) {
		h = (h ^ e[i].addr) * 0xff51afd7ed558ccdull;
		h = (h ^ e[i].rule) * 0xc4ceb9fe1a85ec53ull;
		h ^= h >> 29;
	}
	return h;
}

/*
 * The GNU build ID of the object o, read from its loaded notes through the
 * ELF header at its start (the loader maps it with the first segment);
 * its length, 0 if none or longer than MAX_ID.
 */
static unsigned build_id(const struct dl_find_object *o, uint8_t *id)
{
	uintptr_t lo = (uintptr_t)o->dlfo_map_start, hi = (uintptr_t)o->dlfo_map_end;
	const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)lo;
	uint8_t buf[MS_BUILD_ID_MAX];
	unsigned n;

	if (!o->dlfo_link_map || hi - lo < sizeof *eh || memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
	    eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_phentsize != sizeof(ElfW(Phdr)) ||
	    eh->e_phoff > hi - lo || (uintptr_t)eh->e_phnum * sizeof(ElfW(Phdr)) > hi - lo - eh->e_phoff)
		return 0;
	n = ms_build_id(o->dlfo_link_map->l_addr, (const ElfW(Phdr) *)(lo + eh->e_phoff), eh->e_phnum, lo, hi, buf);
	if (n > MAX_ID)
		return 0;
	memcpy(id, buf, n);
	return n;
}

/* A hash of libmemscope.so's build ID (never 0); 0 if it has none: then no file is used. */
static uint64_t lib_hash(void)
{
	uint64_t h = __atomic_load_n(&lib_id_hash, __ATOMIC_RELAXED);
	struct dl_find_object self;
	uint8_t id[MAX_ID];
	unsigned n;

	if (h)
		return h;
	if (_dl_find_object((void *)(uintptr_t)lib_hash, &self) != 0 || (n = build_id(&self, id)) == 0)
		return 0;
	h = 0xcbf29ce484222325ull;
	for (unsigned i = 0; i < n; i++)
		h = (h ^ id[i]) * 0x100000001b3ull;
	h |= 1;
	__atomic_store_n(&lib_id_hash, h, __ATOMIC_RELAXED);
	return h;
}

/* DIR/.rules-HEXID (or with tmp, DIR/.rules-HEXID.PID) into out; 0 if there is no ring directory. */
static int file_path(char *out, size_t cap, const uint8_t *id, unsigned id_len, int tmp)
{
	static const char hex[] = "0123456789abcdef";
	const char *ring = ms_g.cfg.ring_path ? ms_g.cfg.ring_path
			   : ms_g.ring_env[0]	 ? ms_g.ring_env + sizeof "MEMSCOPE_RING=" - 1
						 : NULL;
	const char *slash = ring ? strrchr(ring, '/') : NULL;
	size_t n;

	if (!slash || (size_t)(slash - ring) + 1 + 7 + 2 * id_len + 24 > cap)
		return 0;
	n = (size_t)(slash - ring) + 1;
	memcpy(out, ring, n);
	memcpy(out + n, ".rules-", 7);
	n += 7;
	for (unsigned i = 0; i < id_len; i++) {
		out[n++] = hex[id[i] >> 4];
		out[n++] = hex[id[i] & 15];
	}
	out[n] = 0;
	if (tmp) {
		char digits[24];
		char *d = ms_utoa(digits + sizeof digits - 1, ms_g.pid);
		digits[sizeof digits - 1] = 0;
		out[n++] = '.';
		ms_strlcpy(out + n, d, cap - n);
	}
	return 1;
}

/* Maps the session's file for f's object, if there is a sound one (RC1). */
static void map_file(struct ms_rulefile *f)
{
	char path[PATH_CAP];
	struct stat st;
	const struct file_header *h;
	const struct entry *e;
	void *map;
	int fd, err = errno;

	if (!file_path(path, sizeof path, f->id, f->id_len, 0))
		return;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		errno = err;
		return;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
	    (uint64_t)st.st_size < sizeof *h || (uint64_t)st.st_size > sizeof *h + (uint64_t)MAX_ENTRIES * sizeof *e ||
	    ((uint64_t)st.st_size - sizeof *h) % sizeof *e != 0) {
		close(fd);
		errno = err;
		return;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	errno = err;
	if (map == MAP_FAILED)
		return;
	h = map;
	e = (const struct entry *)(h + 1);
	uint32_t n = (uint32_t)(((uint64_t)st.st_size - sizeof *h) / sizeof *e);
	int ok = memcmp(h->magic, magic, sizeof magic) == 0 && h->count == n && h->id_len == f->id_len &&
		 memcmp(h->id, f->id, f->id_len) == 0 && h->lib == lib_hash() && checksum(e, n) == h->sum;
	for (uint32_t i = 0; ok && i < n; i++)
		ok = e[i].rule != 0 && MS_RULE_GEN(e[i].rule) == 0 && (i == 0 || e[i - 1].addr < e[i].addr);
	if (!ok) {
		munmap(map, (size_t)st.st_size);
		errno = err;
		return;
	}
	f->entries = e;
	f->count = n;
}

/* The published entry of the object at lo in generation gen, or NULL. */
static struct ms_rulefile *find(uintptr_t lo, uint32_t gen)
{
	uint32_t n = __atomic_load_n(&nfiles, __ATOMIC_ACQUIRE);
	for (uint32_t i = 0; i < n; i++) {
		struct ms_rulefile *f = &files[i];
		if (f->lo == lo && f->gen == gen)
			return f;
	}
	return NULL;
}

struct ms_rulefile *ms_rulefile_of(const struct dl_find_object *obj, uint32_t gen)
{
	uintptr_t lo = (uintptr_t)obj->dlfo_map_start;
	struct ms_rulefile *f = find(lo, gen);

	if (f)
		return f->id_len ? f : NULL; /* RC3 */
	if (__atomic_exchange_n(&creating, 1, __ATOMIC_ACQUIRE))
		return NULL; /* RC2: another thread is adding one */
	f = find(lo, gen); /* added while we looked */
	if (f || __atomic_load_n(&nfiles, __ATOMIC_RELAXED) == MAX_FILES) {
		__atomic_store_n(&creating, 0, __ATOMIC_RELEASE);
		return f && f->id_len ? f : NULL;
	}
	f = &files[__atomic_load_n(&nfiles, __ATOMIC_RELAXED)];
	f->gen = gen;
	f->lo = lo;
	f->hi = (uintptr_t)obj->dlfo_map_end;
	f->bias = obj->dlfo_link_map ? obj->dlfo_link_map->l_addr : 0;
	f->id_len = lib_hash() ? build_id(obj, f->id) : 0;
	if (f->id_len)
		map_file(f);
	__atomic_add_fetch(&nfiles, 1, __ATOMIC_RELEASE); /* RC2 */
	__atomic_store_n(&creating, 0, __ATOMIC_RELEASE);
	return f->id_len ? f : NULL;
}

void ms_rulefiles_after_fork(void)
{
	__atomic_store_n(&creating, 0, __ATOMIC_RELAXED);
}

uint64_t ms_rulefile_rule(const struct ms_rulefile *f, uintptr_t ra)
{
	uint64_t addr = (uint64_t)(ra - f->bias);
	uint32_t lo = 0, hi = f->count;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (f->entries[mid].addr < addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < f->count && f->entries[lo].addr == addr ? f->entries[lo].rule : 0;
}

void ms_rulefile_compiled(struct ms_rulefile *f)
{
	__atomic_add_fetch(&f->computed, 1, __ATOMIC_RELAXED);
}

/* ---- saving at exit (RC4) ---- */

struct collect {
	const struct ms_rulefile *f;
	struct entry *out;
	uint32_t n, cap;
};

static void collect_rule(uint64_t ra, uint64_t rule, void *arg)
{
	struct collect *c = arg;
	const uint64_t gen_bits = ~0ull << MS_RULE_GEN_SHIFT;
	if (ra - 1 < c->f->lo || ra - 1 >= c->f->hi || MS_RULE_GEN(rule) != c->f->gen || c->n == c->cap)
		return;
	c->out[c->n].addr = (uint64_t)(ra - c->f->bias);
	c->out[c->n].rule = rule & ~gen_bits;
	c->n++;
}

static void sift_down(struct entry *e, uint32_t i, uint32_t n)
{
	for (;;) {
		uint32_t big = i, l = 2 * i + 1, r = l + 1;
		if (l < n && e[l].addr > e[big].addr)
			big = l;
		if (r < n && e[r].addr > e[big].addr)
			big = r;
		if (big == i)
			return;
		struct entry t = e[i];
		e[i] = e[big];
		e[big] = t;
		i = big;
	}
}

/* Heapsort by address: no allocation, no recursion. */
static void sort_entries(struct entry *e, uint32_t n)
{
	for (uint32_t i = n / 2; i-- > 0;)
		sift_down(e, i, n);
	for (uint32_t end = n; end-- > 1;) {
		struct entry t = e[0];
		e[0] = e[end];
		e[end] = t;
		sift_down(e, 0, end);
	}
}

static int write_all(int fd, const void *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p = (const char *)p + k;
		n -= (size_t)k;
	}
	return 0;
}

static void save(const struct ms_rulefile *f)
{
	char path[PATH_CAP], tmp[PATH_CAP];
	/* The file's entries, then the table's rules of the object: those read from the file and those computed (and a few twice, slots.c T4). */
	uint32_t cap = 2 * f->count + f->computed + 64, n;
	size_t size = (size_t)cap * sizeof(struct entry);
	struct file_header h;
	struct entry *e;
	int fd;

	if (!file_path(path, sizeof path, f->id, f->id_len, 0) || !file_path(tmp, sizeof tmp, f->id, f->id_len, 1))
		return;
	e = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (e == MAP_FAILED)
		return;
	/* The file's rules and this process's; an address twice has the same rule twice (RC1). */
	if (f->count)
		memcpy(e, f->entries, (size_t)f->count * sizeof *e);
	struct collect c = {f, e + f->count, 0, cap - f->count};
	ms_cfi_each_rule(collect_rule, &c);
	sort_entries(e, f->count + c.n);
	n = 0;
	for (uint32_t i = 0; i < f->count + c.n; i++) {
		if (n > 0 && e[n - 1].addr == e[i].addr)
			continue;
		e[n++] = e[i];
	}
	if (n > MAX_ENTRIES)
		goto out;
	memset(&h, 0, sizeof h);
	memcpy(h.magic, magic, sizeof magic);
	h.count = n;
	h.id_len = f->id_len;
	memcpy(h.id, f->id, f->id_len);
	h.sum = checksum(e, n);
	h.lib = lib_hash();
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out;
	int bad = write_all(fd, &h, sizeof h) != 0 || write_all(fd, e, (size_t)n * sizeof *e) != 0;
	bad |= close(fd) != 0;
	if (bad || rename(tmp, path) != 0) /* RC1 */
		unlink(tmp);
out:
	munmap(e, size);
}

void ms_rulefiles_save(void)
{
	uint32_t n = __atomic_load_n(&nfiles, __ATOMIC_ACQUIRE);
	int err = errno;

	for (uint32_t i = 0; i < n; i++) {
		const struct ms_rulefile *f = &files[i];
		uint32_t computed = __atomic_load_n(&f->computed, __ATOMIC_RELAXED);
		if (f->id_len && computed >= SAVE_MIN &&
		    (uint64_t)computed * 16 >= f->count)
			save(f);
	}
	errno = err;
}
