/*
 * sigsuspend.c — blocks SIGCHLD, forks a child that allocates and exits 4,
 * and waits for SIGCHLD with sigsuspend (breaks if a profiler adds a
 * thread that takes the signal, or a child the program does not know).
 * Prints "child 4\n" and exits 0.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got;

static void on_chld(int s)
{
	(void)s;
	got = 1;
}

int main(void)
{
	sigset_t block, old;
	struct sigaction sa;
	int st;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_chld;
	sigaction(SIGCHLD, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &old);
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		void *p = malloc(4096);
		free(p);
		_exit(4);
	}
	while (!got)
		sigsuspend(&old);
	if (waitpid(pid, &st, WNOHANG) != pid || !WIFEXITED(st))
		return 2;
	char msg[] = "child 0\n";
	msg[6] = (char)('0' + WEXITSTATUS(st));
	if (write(1, msg, sizeof msg - 1) < 0)
		return 3;
	if (waitpid(-1, &st, WNOHANG) != -1) /* no other child, ever */
		return 5;
	return 0;
}
