/*
 * signalfd.c — a daemon-like loop: SIGTERM blocked and read from a
 * signalfd. It sends itself SIGTERM (process-directed: any thread with
 * SIGTERM unblocked, such as one a profiler added, would die of it),
 * allocates while handling it, prints "got SIGTERM\n" and exits 0.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

int main(void)
{
	sigset_t set;
	struct signalfd_siginfo si;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
		return 1;
	int fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (fd < 0)
		return 2;
	void *work = malloc(512);
	kill(getpid(), SIGTERM);
	if (read(fd, &si, sizeof si) != (ssize_t)sizeof si || si.ssi_signo != SIGTERM)
		return 3;
	free(work);
	const char msg[] = "got SIGTERM\n";
	if (write(1, msg, sizeof msg - 1) < 0)
		return 4;
	close(fd);
	return 0;
}
