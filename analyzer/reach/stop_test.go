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

// TestAwaitParked: a process on its way to its futex wait is waited for
// (AwaitThreadParked) and then found parked, not stopped before; one with
// two threads, its main thread in its wait, is not Parked (Stop is for
// it), while AwaitThreadParked waits for the thread that is on its way.
func TestAwaitParked(t *testing.T) {
	t.Run("on its way", func(t *testing.T) {
		cmd := startParker(t, "200")
		pid := cmd.Process.Pid
		assert.False(t, AwaitThreadParked(pid, pid, 0), "still asleep: not in its wait yet")
		_, ok := Parked(pid)
		assert.False(t, ok, "still asleep: not parked yet")
		began := time.Now()
		require.True(t, AwaitThreadParked(pid, pid, 5*time.Second), "in its futex wait")
		assert.Greater(t, time.Since(began), 50*time.Millisecond, "waited for it")
		s, ok := Parked(pid)
		require.True(t, ok, "parked once in its futex wait")
		require.Len(t, s.Threads, 1)
		assert.NotZero(t, s.Threads[0].SP)
		s.Resume() // nothing to resume: it never stopped
	})
	t.Run("two threads", func(t *testing.T) {
		cmd := startParker(t, "0", "two")
		pid := cmd.Process.Pid
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if tids, _ := listThreads(pid); len(tids) == 2 {
				break
			}
		}
		require.True(t, AwaitThreadParked(pid, pid, 5*time.Second), "its main thread waits")
		_, ok := Parked(pid)
		assert.False(t, ok, "another thread runs: not parked")
	})
	t.Run("one of two threads on its way", func(t *testing.T) {
		cmd := startParker(t, "200", "two")
		pid := cmd.Process.Pid // its main thread: the one that will wait
		assert.False(t, AwaitThreadParked(pid, pid, 0), "still asleep")
		began := time.Now()
		require.True(t, AwaitThreadParked(pid, pid, 5*time.Second), "in its futex wait")
		assert.Greater(t, time.Since(began), 50*time.Millisecond, "waited for it")
		assert.False(t, AwaitThreadParked(pid, 1<<30, time.Second), "no such thread: not waited for")
	})
}
