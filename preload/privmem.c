/*
 * privmem.c — memory the library maps for its own tables (the stack
 * interning table, the CFI rules, the known modules). The leak check at
 * exit scans a process's writable memory for pointers into its heap;
 * these tables hold hashes, rules and paths, no heap pointer, and a stack
 * table of thousands of stacks was megabytes of wasted scanning. So the
 * tables are mapped as
 *
 *   [PROT_NONE page][header page: MS_PRIVATE_MAGIC, size][tables][PROT_NONE rest]
 *
 * The PROT_NONE pages keep the kernel from merging the tables with a
 * neighbouring mapping, so /proc/PID/maps shows them as a mapping of
 * their own whose first bytes are the magic and its size: the analyzer
 * skips exactly those (analyzer/reach/roots.go). Where the kernel can
 * name anonymous memory (CONFIG_ANON_VMA_NAME) it is also named
 * [anon:memscope].
 *
 * Every table is carved from one reservation, behind one header: a
 * mapping per table cost every process started an mmap, an mprotect, a
 * prctl and a page fault on its header three times (page faults are
 * 10-20 us on the project's VM). The header's size follows the writable
 * part as tables are added. A table that does not fit (none, at today's
 * sizes) gets a mapping of its own, laid out the same way.
 */
#include "memscope_internal.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

#define ARENA_SIZE ((size_t)64 << 20) /* the tables at their largest: 46 MiB */

/*
 * Maps [guard][header][reserve bytes][guard], the header and the first rw
 * bytes readable and writable, and returns the header, its size set.
 */
static char *map_tables(size_t reserve, size_t rw, size_t page)
{
	size_t total = reserve + 3 * page;
	char *p = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	char *header = p + page;
	/* Named before the split: the parts made writable later keep the name, and merge. */
	int e = errno;
	prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)header, (unsigned long)(page + reserve),
	      (unsigned long)"memscope");
	errno = e;
	if (mprotect(header, page + rw, PROT_READ | PROT_WRITE) != 0) {
		munmap(p, total);
		return NULL;
	}
	uint64_t *h = (uint64_t *)header;
	h[0] = MS_PRIVATE_MAGIC;
	h[1] = page + rw; /* the readable mapping's size, header included */
	return header;
}

/* A table that does not fit the reservation: a mapping of its own. */
static void *map_alone(size_t body, size_t page)
{
	char *h = map_tables(body, body, page);
	return h ? h + page : NULL;
}

/*
 * The reservation's header page (NULL until the first table) and the
 * bytes handed out after it. Tables are taken at start-up and at the
 * first module scan, possibly by two threads at once: the reservation is
 * published by CAS (a loser unmaps its own), each table takes its range
 * by an atomic add, and the header's size only grows (a reader at exit
 * sees every table mapped: the process is parked).
 */
static char *arena;
static size_t arena_used;

void *ms_map_private(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t body = (size + page - 1) / page * page;
	if (body > ARENA_SIZE)
		return map_alone(body, page);
	char *a = __atomic_load_n(&arena, __ATOMIC_ACQUIRE);
	if (!a) {
		char *mine = map_tables(ARENA_SIZE, 0, page);
		if (!mine)
			return NULL;
		char *expect = NULL;
		if (__atomic_compare_exchange_n(&arena, &expect, mine, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
			a = mine;
		} else {
			munmap(mine - page, ARENA_SIZE + 3 * page);
			a = expect;
		}
	}
	size_t at = __atomic_fetch_add(&arena_used, body, __ATOMIC_RELAXED);
	if (at + body > ARENA_SIZE)
		return map_alone(body, page);
	char *table = a + page + at;
	if (mprotect(table, body, PROT_READ | PROT_WRITE) != 0)
		return NULL;
	uint64_t *h = (uint64_t *)a, end = page + at + body;
	uint64_t seen = __atomic_load_n(&h[1], __ATOMIC_RELAXED);
	while (seen < end && !__atomic_compare_exchange_n(&h[1], &seen, end, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	return table;
}
