/* where.h: test helper. probe() prints "LABEL MODULE FILEADDR" for the call
 * site that called it: the return address minus one, minus the load bias of
 * the object containing it, i.e. what symbolize.Symbolize expects.
 * Compile with -fno-optimize-sibling-calls so that no probe call is a jump. */
#ifndef WHERE_H
#define WHERE_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct where_find {
	uintptr_t addr, bias;
	const char *name;
	int found;
};

static int where_cb(struct dl_phdr_info *info, size_t size, void *data)
{
	struct where_find *f = (struct where_find *)data;
	(void)size;
	for (int i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *p = &info->dlpi_phdr[i];
		uintptr_t lo = info->dlpi_addr + p->p_vaddr;
		if (p->p_type == PT_LOAD && f->addr >= lo && f->addr < lo + p->p_memsz) {
			f->bias = info->dlpi_addr;
			f->name = info->dlpi_name;
			f->found = 1;
			return 1;
		}
	}
	return 0;
}

static void where_print(const char *label, void *ret)
{
	struct where_find f = {(uintptr_t)ret - 1, 0, 0, 0};
	dl_iterate_phdr(where_cb, &f);
	printf("%s %s %#lx\n", label, f.found && f.name && f.name[0] ? f.name : "exe",
	       (unsigned long)(f.addr - f.bias));
	fflush(stdout);
}

#define PROBE_BODY(label)                                         \
	do {                                                      \
		where_print(label, __builtin_return_address(0)); \
		return (int)strlen(label);                        \
	} while (0)
#endif
