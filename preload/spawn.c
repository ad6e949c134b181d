/*
 * spawn.c — bare mode: `LD_PRELOAD=libmemscope.so ./app` without
 * MEMSCOPE_RING. The library creates a ring in the private directory of
 * DESIGN.md §8 (header initialised exactly as shm.Create does), exports
 * MEMSCOPE_RING so that descendants join it, and starts
 * `memscope-analyze record --ring PATH` detached:
 *
 *   target --clone(exit signal 0)--> intermediate --clone--> analyzer
 *
 * The intermediate exits at once and is reaped with __WCLONE: a child
 * with exit signal 0 raises no SIGCHLD and is invisible to the target's
 * waitpid(-1) (which only sees __WCLONE children when asked). The
 * analyzer is then reparented away from the target (to init or a
 * subreaper above it), runs in its own session (terminal signals meant
 * for the target do not reach it), with stdin and stdout on /dev/null,
 * stderr shared (for its summary), no other fd, an empty signal mask,
 * default dispositions, and LD_PRELOAD removed from its environment.
 * Whether exec worked comes back over a close-on-exec pipe.
 *
 * Only raw system calls run in the two children (no atfork handlers, no
 * locks, no malloc); every buffer is static.
 */
#include "memscope_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef __WCLONE
#define __WCLONE 0x80000000
#endif

extern char **environ;

#define MAX_CHILD_ENV 4096

static char dir[MS_PATH_MAX];
static char ring_path[MS_PATH_MAX];
static char analyzer[MS_PATH_MAX];
static char *child_env[MAX_CHILD_ENV];

static size_t cat(char *dst, size_t at, size_t cap, const char *s)
{
	return at + ms_strlcpy(dst + at, s, cap - at);
}

/* $XDG_RUNTIME_DIR/memscope or /dev/shm/memscope-UID, 0700, ours. */
static int private_dir(void)
{
	char num[24];
	const char *xdg = ms_getenv("XDG_RUNTIME_DIR");
	struct stat st;
	size_t n;
	num[23] = 0;
	if (xdg && xdg[0] == '/') {
		n = cat(dir, 0, sizeof dir, xdg);
		n = cat(dir, n, sizeof dir, "/memscope");
	} else {
		n = cat(dir, 0, sizeof dir, "/dev/shm/memscope-");
		n = cat(dir, n, sizeof dir, ms_utoa(num + 23, geteuid()));
	}
	if (n >= sizeof dir - 64)
		return -1;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return -1;
	if (lstat(dir, &st) != 0)
		return -1;
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 07777) != 0700) {
		errno = EPERM;
		return -1;
	}
	return 0;
}

/* Creates and maps the ring file; initialises the header like shm.Create. */
static int create_ring(void)
{
	char num[24];
	uint64_t cs = MS_DEFAULT_CHUNK_SIZE;
	uint64_t n = (ms_g.cfg.ring_size + cs - 1) / cs;
	uint64_t size;
	int fd = -1;
	void *map;

	if (n < MS_MIN_CHUNK_COUNT)
		n = MS_MIN_CHUNK_COUNT;
	size = MS_HEADER_SIZE + n * cs;
	num[23] = 0;
	for (int attempt = 0; attempt < 16 && fd < 0; attempt++) {
		size_t k = cat(ring_path, 0, sizeof ring_path, dir);
		k = cat(ring_path, k, sizeof ring_path, "/ring.");
		k = cat(ring_path, k, sizeof ring_path, ms_utoa(num + 23, ms_g.pid));
		k = cat(ring_path, k, sizeof ring_path, ".");
		cat(ring_path, k, sizeof ring_path, ms_utoa(num + 23, ms_now_ns() % 1000000007u));
		fd = open(ring_path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0 && errno != EEXIST)
			return -1;
	}
	if (fd < 0)
		return -1;
	if (ftruncate(fd, (off_t)size) != 0) {
		close(fd);
		unlink(ring_path);
		return -1;
	}
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (map == MAP_FAILED) {
		unlink(ring_path);
		return -1;
	}
	struct ms_ring_header *h = map;
	uint64_t now = ms_now_ns();
	h->version = MS_VERSION;
	h->header_size = MS_HEADER_SIZE;
	h->chunk_size = (uint32_t)cs;
	h->chunk_count = (uint32_t)n;
	h->file_size = size;
	h->seal_after_ns = MS_DEFAULT_SEAL_AFTER_NS;
	h->consumer_timeout_ns = MS_DEFAULT_CONSUMER_TIMEOUT_NS;
	h->flags = ms_g.cfg.lossy ? MS_RING_LOSSY : 0;
	if (!ms_g.cfg.clock_monotonic && ms_tsc_invariant())
		h->flags |= MS_RING_TSC;
	h->creator_uid = (uint32_t)geteuid();
	h->created_ns = now;
	/* The analyzer gets consumer_timeout to start before producers give up. */
	__atomic_store_n(&h->consumer_heartbeat_ns, now, __ATOMIC_RELEASE);
	/* The magic goes last: a ring with a valid magic is fully initialised. */
	__atomic_store_n(&h->magic, MS_MAGIC, __ATOMIC_RELEASE);
	munmap(map, size);
	return 0;
}

static int executable(const char *p)
{
	struct stat st;
	return access(p, X_OK) == 0 && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* MEMSCOPE_ANALYZER, else beside libmemscope.so, else on PATH. */
static int find_analyzer(void)
{
	const char *name = "memscope-analyze";
	if (ms_g.cfg.analyzer) {
		ms_strlcpy(analyzer, ms_g.cfg.analyzer, sizeof analyzer);
		return executable(analyzer) ? 0 : -1;
	}
	const char *slash = strrchr(ms_g.self_path, '/');
	if (slash) {
		size_t n = (size_t)(slash - ms_g.self_path) + 1;
		if (n + 32 < sizeof analyzer) {
			memcpy(analyzer, ms_g.self_path, n);
			ms_strlcpy(analyzer + n, name, sizeof analyzer - n);
			if (executable(analyzer))
				return 0;
		}
	}
	const char *path = ms_getenv("PATH");
	while (path && *path) {
		const char *end = strchr(path, ':');
		size_t n = end ? (size_t)(end - path) : strlen(path);
		if (n > 0 && n + 32 < sizeof analyzer) {
			memcpy(analyzer, path, n);
			analyzer[n] = '/';
			ms_strlcpy(analyzer + n + 1, name, sizeof analyzer - n - 1);
			if (executable(analyzer))
				return 0;
		}
		path = end ? end + 1 : NULL;
	}
	return -1;
}

static long sys_close_range(unsigned lo, unsigned hi)
{
	return syscall(SYS_close_range, lo, hi, 0);
}

static void close_from(int lo, int except)
{
	if (lo < except && sys_close_range((unsigned)lo, (unsigned)except - 1) != 0)
		for (int fd = lo; fd < except; fd++)
			close(fd);
	if (sys_close_range((unsigned)except + 1, ~0u) != 0) {
		struct rlimit rl;
		int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
		for (int fd = except + 1; fd < max; fd++)
			close(fd);
	}
}

/* The analyzer's process, after the second clone. Never returns. */
static void analyzer_child(int status_fd)
{
	char *argv[] = {(char *)"memscope-analyze", (char *)"record", (char *)"--ring", ring_path, NULL};
	sigset_t all;
	int err;
	setsid();
	sigemptyset(&all);
	sigprocmask(SIG_SETMASK, &all, NULL);
	for (int s = 1; s < 65; s++) {
		struct sigaction sa;
		memset(&sa, 0, sizeof sa);
		sa.sa_handler = SIG_DFL;
		if (s != SIGKILL && s != SIGSTOP)
			sigaction(s, &sa, NULL);
	}
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, 0);
		dup2(null, 1);
	}
	close_from(3, status_fd);
	execve(analyzer, argv, child_env);
	err = errno;
	int64_t word = -(int64_t)err;
	ssize_t w = write(status_fd, &word, sizeof word);
	(void)w;
	syscall(SYS_exit_group, 127);
}

static void build_child_env(void)
{
	int n = 0;
	for (char **e = environ; e && *e && n < MAX_CHILD_ENV - 2; e++)
		if (strncmp(*e, "LD_PRELOAD=", 11) != 0 && strncmp(*e, "MEMSCOPE_RING=", 14) != 0 &&
		    strncmp(*e, "MEMSCOPE_PID=", 13) != 0)
			child_env[n++] = *e;
	child_env[n] = NULL;
}

/*
 * The status pipe carries 8-byte words: the intermediate writes the
 * analyzer's pid (> 0) or -errno of its clone; the analyzer writes
 * -errno if its exec fails (a successful exec closes the pipe).
 */
static int start_analyzer(void)
{
	int fds[2], err = 0, st;
	long mid;
	int64_t word;
	build_child_env();
	if (pipe2(fds, O_CLOEXEC) != 0)
		return -1;
	/* exit signal 0: no SIGCHLD, only waitable with __WCLONE. */
	mid = syscall(SYS_clone, 0L, NULL, NULL, NULL, NULL);
	if (mid < 0) {
		err = errno;
		close(fds[0]);
		close(fds[1]);
		errno = err;
		return -1;
	}
	if (mid == 0) {
		close(fds[0]);
		long pid = syscall(SYS_clone, 0L, NULL, NULL, NULL, NULL);
		if (pid == 0)
			analyzer_child(fds[1]);
		int64_t out = pid < 0 ? -(int64_t)errno : (int64_t)pid;
		ssize_t w = write(fds[1], &out, sizeof out);
		(void)w;
		syscall(SYS_exit_group, 0);
	}
	close(fds[1]);
	while (waitpid((pid_t)mid, &st, __WCLONE) < 0 && errno == EINTR)
		;
	ssize_t r;
	while ((r = read(fds[0], &word, sizeof word)) < 0 && errno == EINTR)
		;
	if (r == (ssize_t)sizeof word && word > 0) {
		ms_g.recorder_pid = (uint32_t)word;
		while ((r = read(fds[0], &word, sizeof word)) < 0 && errno == EINTR)
			;
	}
	close(fds[0]);
	if (r == (ssize_t)sizeof word && word < 0) { /* clone or exec failed */
		ms_g.recorder_pid = 0;
		errno = (int)-word;
		return -1;
	}
	return 0;
}

int ms_bare_start(void)
{
	const char *what;
	int err;
	if (private_dir() != 0) {
		err = errno;
		what = "cannot use the private ring directory ";
		ms_say(what, dir, err == EPERM ? " (not a 0700 directory owned by us); not tracing"
					       : " (cannot create it); not tracing");
		return -1;
	}
	if (create_ring() != 0) {
		ms_say("cannot create a ring in ", dir, "; not tracing");
		return -1;
	}
	if (find_analyzer() != 0) {
		unlink(ring_path);
		if (ms_g.cfg.analyzer)
			ms_say("MEMSCOPE_ANALYZER=", ms_g.cfg.analyzer, " is not an executable file; not tracing");
		else
			ms_say("cannot find memscope-analyze beside libmemscope.so or on PATH "
			       "(set MEMSCOPE_ANALYZER); not tracing", NULL, NULL);
		return -1;
	}
	/* The ring is attached before the analyzer can remove it. */
	err = ms_ring_attach(&ms_g.ring, ring_path, ms_g.cfg.lossy);
	if (err != MS_ATTACH_OK) {
		unlink(ring_path);
		ms_say("cannot map the new ring: ", ms_ring_attach_strerror(err), "; not tracing");
		return -1;
	}
	if (start_analyzer() != 0) {
		munmap(ms_g.ring.hdr, ms_g.ring.map_size);
		unlink(ring_path);
		ms_say("cannot start ", analyzer, "; not tracing");
		return -1;
	}
	size_t n = ms_strlcpy(ms_g.ring_env, "MEMSCOPE_RING=", sizeof ms_g.ring_env);
	ms_strlcpy(ms_g.ring_env + n, ring_path, sizeof ms_g.ring_env - n);
	return 0;
}
