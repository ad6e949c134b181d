/*
 * env.c — configuration from the environment, and environment edits,
 * without malloc or stdio: this runs inside the first malloc call.
 *
 *   MEMSCOPE_RING         ring to join (set by `memscope-analyze run` or by
 *                         the bare-mode library for descendants); set but
 *                         empty: do not trace (what a MEMSCOPE_FOLLOW_FORK=0
 *                         parent leaves to its children's exec'd images)
 *   MEMSCOPE_RING_SIZE    bare mode ring capacity: bytes, or with K/M/G
 *   MEMSCOPE_DEPTH        stack depth 0..256 (0: no stacks), default 64
 *   MEMSCOPE_MODE         lossless (default) | lossy
 *   MEMSCOPE_CLOCK        tsc (default where invariant) | monotonic: the
 *                         clock of bare mode's ring (run/record choose theirs)
 *   MEMSCOPE_FOLLOW_FORK  1 (default) | 0: stop tracing in fork children
 *   MEMSCOPE_LEAK_CHECK_TIMEOUT  longest wait at exit for the leak check:
 *                         seconds, or with an ms suffix; 0: no check (5)
 *   MEMSCOPE_ANALYZER     memscope-analyze binary for bare mode
 *   MEMSCOPE_PID          set by the library: pid of the last traced image,
 *                         so an exec'd image knows it is an exec
 * An invalid value gives one line on stderr naming the variable, then the
 * default is used.
 */
#include "memscope_internal.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern char **environ;

size_t ms_strlcpy(char *dst, const char *src, size_t cap)
{
	size_t n = 0;
	if (cap == 0)
		return 0;
	while (src[n] && n + 1 < cap) {
		dst[n] = src[n];
		n++;
	}
	dst[n] = 0;
	return n;
}

char *ms_utoa(char *end, uint64_t v)
{
	char *p = end;
	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	return p;
}

void ms_say(const char *a, const char *b, const char *c)
{
	char buf[1024];
	size_t n = ms_strlcpy(buf, "memscope: ", sizeof buf);
	const char *parts[3] = {a, b, c};
	for (int i = 0; i < 3; i++)
		if (parts[i])
			n += ms_strlcpy(buf + n, parts[i], sizeof buf - 1 - n);
	buf[n++] = '\n';
	ssize_t r = write(2, buf, n);
	(void)r;
}

/* Index of NAME=... in environ, or -1. */
static int env_index(const char *name, size_t len)
{
	char **e = environ;
	if (!e)
		return -1;
	for (int i = 0; e[i]; i++)
		if (strncmp(e[i], name, len) == 0 && e[i][len] == '=')
			return i;
	return -1;
}

const char *ms_getenv(const char *name)
{
	size_t len = strlen(name);
	int i = env_index(name, len);
	return i < 0 ? NULL : environ[i] + len + 1;
}

int ms_env_put(char *const *entries, int n)
{
	int missing = 0, count = 0;
	char **e = environ;
	for (int k = 0; k < n; k++) {
		const char *eq = strchr(entries[k], '=');
		int i = env_index(entries[k], (size_t)(eq - entries[k]));
		if (i >= 0)
			e[i] = entries[k]; /* the array is ours to edit, the strings are not */
		else
			missing++;
	}
	if (!missing)
		return 0;
	while (e && e[count])
		count++;
	size_t bytes = (size_t)(count + missing + 1) * sizeof(char *);
	char **arr = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (arr == MAP_FAILED)
		return -1;
	for (int i = 0; i < count; i++)
		arr[i] = e[i];
	for (int k = 0; k < n; k++) {
		const char *eq = strchr(entries[k], '=');
		if (env_index(entries[k], (size_t)(eq - entries[k])) < 0)
			arr[count++] = entries[k];
	}
	arr[count] = NULL;
	/* glibc's setenv copies an environ it did not allocate; it never frees it. */
	environ = arr;
	return 0;
}

static int parse_u64(const char *s, uint64_t *out, int allow_suffix)
{
	uint64_t v = 0;
	const char *p = s;
	if (!*p)
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (p == s)
		return -1;
	if (allow_suffix && *p) {
		unsigned shift;
		switch (*p) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		default: return -1;
		}
		p++;
		if (*p == 'i')
			p++;
		if (*p == 'B' || *p == 'b')
			p++;
		if (v > (UINT64_MAX >> shift))
			return -1;
		v <<= shift;
	}
	if (*p)
		return -1;
	*out = v;
	return 0;
}

static void bad(const char *name, const char *val, const char *want)
{
	char line[512];
	size_t n = ms_strlcpy(line, name, sizeof line);
	n += ms_strlcpy(line + n, "=", sizeof line - n);
	n += ms_strlcpy(line + n, val, 64 < sizeof line - n ? 64 : sizeof line - n);
	ms_strlcpy(line + n, " is invalid: ", sizeof line - n);
	ms_say(line, want, NULL);
}

void ms_config_load(struct ms_config *c)
{
	const char *v;
	uint64_t n;

	c->ring_path = NULL;
	c->analyzer = NULL;
	c->ring_size = MS_DEFAULT_RING_SIZE;
	c->depth = 64;
	c->lossy = 0;
	c->clock_monotonic = 0;
	c->follow_fork = 1;
	c->marker_pid = -1;
	c->leak_check_timeout_ns = 5000000000ull;

	c->disabled = 0;
	v = ms_getenv("MEMSCOPE_RING");
	if (v && *v)
		c->ring_path = v;
	else if (v)
		c->disabled = 1; /* set empty by a MEMSCOPE_FOLLOW_FORK=0 parent */
	v = ms_getenv("MEMSCOPE_ANALYZER");
	if (v && *v)
		c->analyzer = v;

	v = ms_getenv("MEMSCOPE_RING_SIZE");
	if (v) {
		uint64_t min = (uint64_t)MS_MIN_CHUNK_COUNT * MS_DEFAULT_CHUNK_SIZE;
		uint64_t max = (uint64_t)MS_DEFAULT_CHUNK_SIZE << 31;
		if (parse_u64(v, &n, 1) != 0 || n < min || n > max)
			bad("MEMSCOPE_RING_SIZE", v, "want bytes (K/M/G suffix allowed) from 32K to 32T; using 64M");
		else
			c->ring_size = n;
	}
	v = ms_getenv("MEMSCOPE_DEPTH");
	if (v) {
		if (parse_u64(v, &n, 0) != 0 || n > MS_MAX_DEPTH)
			bad("MEMSCOPE_DEPTH", v, "want 0..256; using 64");
		else
			c->depth = (unsigned)n;
	}
	v = ms_getenv("MEMSCOPE_MODE");
	if (v) {
		if (strcmp(v, "lossy") == 0)
			c->lossy = 1;
		else if (strcmp(v, "lossless") != 0)
			bad("MEMSCOPE_MODE", v, "want lossless or lossy; using lossless");
	}
	v = ms_getenv("MEMSCOPE_CLOCK");
	if (v) {
		if (strcmp(v, "monotonic") == 0)
			c->clock_monotonic = 1;
		else if (strcmp(v, "tsc") != 0)
			bad("MEMSCOPE_CLOCK", v, "want tsc or monotonic; using tsc");
	}
	v = ms_getenv("MEMSCOPE_FOLLOW_FORK");
	if (v) {
		if (strcmp(v, "0") == 0)
			c->follow_fork = 0;
		else if (strcmp(v, "1") != 0)
			bad("MEMSCOPE_FOLLOW_FORK", v, "want 0 or 1; using 1");
	}
	v = ms_getenv("MEMSCOPE_LEAK_CHECK_TIMEOUT");
	if (v) {
		size_t len = strlen(v);
		char digits[24];
		uint64_t unit = 1000000000ull;
		if (len > 2 && len < sizeof digits + 2 && strcmp(v + len - 2, "ms") == 0) {
			unit = 1000000ull;
			len -= 2;
		}
		if (len < sizeof digits) {
			memcpy(digits, v, len);
			digits[len] = 0;
		}
		if (len >= sizeof digits || parse_u64(digits, &n, 0) != 0 || n > 3600000)
			bad("MEMSCOPE_LEAK_CHECK_TIMEOUT", v, "want seconds (or N ms), 0 to skip the check; using 5");
		else
			c->leak_check_timeout_ns = n * unit;
	}
	v = ms_getenv("MEMSCOPE_PID");
	if (v && parse_u64(v, &n, 0) == 0 && n < (1u << 31))
		c->marker_pid = (long)n;
}
