/*
 * peak.c — allocates KIB kibibytes in one block, touches it, frees it:
 * a process whose peak heap is KIB KiB and a little more (the summary's
 * line of largest peaks, TestManyProcesses). Exit status 0.
 * Usage: peak KIB.
 */
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	size_t kib = argc > 1 ? (size_t)atol(argv[1]) : 1;
	char *p = malloc(kib * 1024); /* LINE:peak_block */
	if (p == NULL)
		return 1;
	memset(p, 1, kib * 1024);
	free(p);
	return 0;
}
