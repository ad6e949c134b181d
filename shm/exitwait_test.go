package shm

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestAwaitExit (X5): an idle consumer waiting on exit_futex wakes when a
// process bumps it and wakes it, as the library does after an exit record
// that waits for a check; a count that moved since ExitSeq returns at
// once, and with nothing happening it waits out its interval. With one
// P the wait goes through the runtime's system call, with more it keeps
// its P (a raw system call): both ways.
func TestAwaitExit(t *testing.T) {
	for _, procs := range []int{1, 2} {
		t.Run(fmt.Sprintf("GOMAXPROCS=%d", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			testAwaitExit(t)
		})
	}
}

func testAwaitExit(t *testing.T) {
	r := newTestRing(t, Options{})
	seq := r.ExitSeq()

	// Nothing happens: the full interval.
	began := time.Now()
	r.AwaitExit(seq, 30*time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(began), 30*time.Millisecond)

	// Another process bumps the count and wakes the futex: here a child
	// of the test (the shared mapping, as a traced process has it).
	woke := make(chan time.Duration, 1)
	go func() {
		began := time.Now()
		r.AwaitExit(seq, time.Minute)
		woke <- time.Since(began)
	}()
	time.Sleep(50 * time.Millisecond)
	cmd := exec.Command(os.Args[0], "-test.run=^TestAwaitExitBump$")
	cmd.Env = append(os.Environ(), "GO_WANT_BUMP="+r.Path())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	select {
	case d := <-woke:
		assert.Less(t, d, 30*time.Second, "woken, not timed out")
	case <-time.After(30 * time.Second):
		t.Fatal("AwaitExit was not woken")
	}
	assert.Equal(t, seq+1, r.ExitSeq())

	// The count moved since it was read: no wait.
	began = time.Now()
	r.AwaitExit(seq, time.Minute)
	assert.Less(t, time.Since(began), 30*time.Second)
}

// TestAwaitExitBump is TestAwaitExit's other process: it maps the ring
// named by GO_WANT_BUMP and does what the library does after its exit
// record (preload/exitcheck.c).
func TestAwaitExitBump(t *testing.T) {
	path := os.Getenv("GO_WANT_BUMP")
	if path == "" {
		t.Skip("run by TestAwaitExit")
	}
	r, err := Open(path)
	require.NoError(t, err)
	defer r.Close()
	bumpExitFutex(t, r)
}

// bumpExitFutex does what the library does after an exit record that
// waits for a check (preload/exitcheck.c, X5): it counts the exit in
// exit_futex and wakes the consumers waiting on it.
func bumpExitFutex(t *testing.T, r *Ring) {
	word := r.u32(offExitFutex)
	atomic.AddUint32(word, 1)
	_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(word)), futexWake, 1<<30, 0, 0, 0)
	require.Zero(t, errno)
}

// TestAwaitExitLetsTheWorldStop: a raw wait (more than one P) is not a
// point where Go can preempt its goroutine, so a stop of the world (a GC)
// interrupts it with a signal; the wait must then yield, not wait out its
// interval while the rest of the program stands still.
func TestAwaitExitLetsTheWorldStop(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2))
	r := newTestRing(t, Options{})
	seq := r.ExitSeq()
	woke := make(chan struct{})
	go func() {
		r.AwaitExit(seq, time.Minute)
		close(woke)
	}()
	time.Sleep(50 * time.Millisecond) // in the futex by now
	began := time.Now()
	runtime.GC()
	assert.Less(t, time.Since(began), 10*time.Second, "the GC waited for the futex wait")

	bumpExitFutex(t, r) // end the wait as an exiting process would
	select {
	case <-woke:
	case <-time.After(30 * time.Second):
		t.Fatal("AwaitExit was not woken")
	}
}
