/*
 * privmem.c — memory the library maps for its own tables (the stack
 * interning table, the known modules). The leak check at exit scans a
 * process's writable memory for pointers into its heap; these tables hold
 * hashes and paths, no heap pointer, and a stack table of thousands of
 * stacks was megabytes of wasted scanning. So each table is mapped as
 *
 *   [PROT_NONE page][header page: MS_PRIVATE_MAGIC, size][table][PROT_NONE page]
 *
 * The guard pages keep the kernel from merging the table with a
 * neighbouring mapping, so /proc/PID/maps shows it as a mapping of its
 * own whose first bytes are the magic: the analyzer skips exactly those
 * (analyzer/reach/roots.go). Where the kernel can name anonymous memory
 * (CONFIG_ANON_VMA_NAME) it is also named [anon:memscope].
 */
#include "memscope_internal.h"

#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif

void *ms_map_private(size_t size)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t body = (size + page - 1) / page * page;
	size_t total = body + 3 * page;
	char *p = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	char *header = p + page;
	if (mprotect(header, page + body, PROT_READ | PROT_WRITE) != 0) {
		munmap(p, total);
		return NULL;
	}
	uint64_t *h = (uint64_t *)header;
	h[0] = MS_PRIVATE_MAGIC;
	h[1] = page + body; /* the mapping's size, header included */
	int e = errno;
	prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)header, (unsigned long)(page + body),
	      (unsigned long)"memscope");
	errno = e;
	return header + page;
}
