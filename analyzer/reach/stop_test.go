package reach

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// parker is a program that sleeps for argv[1] ms, then waits on a futex
// for 10 s, as the library waits at exit; with a second argument, a
// second thread waits too.
const parker = `
#include <linux/futex.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
static unsigned word;
static void *wait_forever(void *unused) { pause(); return unused; }
int main(int argc, char **argv) {
	struct timespec nap = {0, atoi(argv[1]) * 1000000L}, tenSeconds = {10, 0};
	pthread_t other;
	if (argc > 2)
		pthread_create(&other, NULL, wait_forever, NULL);
	nanosleep(&nap, NULL);
	syscall(SYS_futex, &word, FUTEX_WAIT, 0, &tenSeconds, NULL, 0);
	return 0;
}
`

func startParker(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc not installed")
	}
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "parker.c"), filepath.Join(dir, "parker")
	require.NoError(t, os.WriteFile(src, []byte(parker), 0o644))
	out, err := exec.Command("gcc", "-O1", "-pthread", "-o", bin, src).CombinedOutput()
	require.NoError(t, err, "%s", out)
	cmd := exec.Command(bin, args...)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Started: its one thread is in nanosleep (or the loader) now.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "comm"))
		if strings.TrimSpace(string(b)) == "parker" || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return cmd
}

// startTwoThreadParker starts a parker whose second thread waits too and
// returns its pid once both threads exist.
func startTwoThreadParker(t *testing.T) int {
	t.Helper()
	pid := startParker(t, "0", "two").Process.Pid
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if tids, _ := listThreads(pid); len(tids) == 2 {
			break
		}
	}
	return pid
}

// TestAwaitParked: a process on its way to its futex wait is waited for
// (AwaitThreadParked) and then found parked at the stack pointer of that
// wait, not before; one with two threads, its main thread in its wait, is
// not Parked (Stop is for it), while AwaitThreadParked waits for the
// thread that is on its way.
func TestAwaitParked(t *testing.T) {
	t.Run("on its way", func(t *testing.T) {
		cmd := startParker(t, "200")
		pid := cmd.Process.Pid
		sp, ok := AwaitThreadParked(pid, pid, 0)
		assert.False(t, ok, "still asleep: not in its wait yet")
		_, ok = Parked(pid, pid, sp)
		assert.False(t, ok, "still asleep: not parked yet")
		began := time.Now()
		sp, ok = AwaitThreadParked(pid, pid, 5*time.Second)
		require.True(t, ok, "in its futex wait")
		assert.Greater(t, time.Since(began), 50*time.Millisecond, "waited for it")
		want, ok := inFutexWait(pid, pid)
		require.True(t, ok)
		assert.Equal(t, want, sp, "the stack pointer of its wait")
		_, ok = Parked(pid, pid+1, sp)
		assert.False(t, ok, "not the thread seen waiting")
		s, ok := Parked(pid, pid, sp)
		require.True(t, ok, "parked once in its futex wait")
		assert.Equal(t, []Thread{{Tid: pid, SP: want}}, s.Threads)
		s.Resume() // nothing to resume: it never stopped
	})
	t.Run("two threads", func(t *testing.T) {
		pid := startTwoThreadParker(t)
		sp, ok := AwaitThreadParked(pid, pid, 5*time.Second)
		require.True(t, ok, "its main thread waits")
		_, ok = Parked(pid, pid, sp)
		assert.False(t, ok, "another thread runs: not parked")
	})
	t.Run("one of two threads on its way", func(t *testing.T) {
		cmd := startParker(t, "200", "two")
		pid := cmd.Process.Pid // its main thread: the one that will wait
		_, ok := AwaitThreadParked(pid, pid, 0)
		assert.False(t, ok, "still asleep")
		began := time.Now()
		_, ok = AwaitThreadParked(pid, pid, 5*time.Second)
		require.True(t, ok, "in its futex wait")
		assert.Greater(t, time.Since(began), 50*time.Millisecond, "waited for it")
		_, ok = AwaitThreadParked(pid, 1<<30, time.Second)
		assert.False(t, ok, "no such thread: not waited for")
	})
}
