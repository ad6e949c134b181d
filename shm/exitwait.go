package shm

import (
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The consumer's half of the exit handshake of the leak check (X1-X4 in
// include/memscope.h): a process that exits normally takes a slot of
// exit_waiters with its pid, writes PROCESS exit with FlagExitCheck and
// waits, bounded, until the consumer frees the slot.

// EnableLeakChecks tells the library that this consumer checks
// reachability at exit (MS_CAP_LEAK_CHECK), so exiting processes wait for
// it; DisableLeakChecks withdraws it (the consumer is about to stop).
func (r *Ring) EnableLeakChecks() { r.setCaps(CapLeakCheck) }

// DisableLeakChecks clears MS_CAP_LEAK_CHECK: processes exiting from now
// on do not wait.
func (r *Ring) DisableLeakChecks() { r.setCaps(0) }

func (r *Ring) setCaps(v uint32) {
	if r.mem != nil {
		atomic.StoreUint32(r.u32(offConsumerCaps), v)
	}
}

func (r *Ring) exitSlot(k int) *uint32 { return r.u32(uintptr(offExitWaiters + 4*k)) }

// ExitWaiting reports whether pid is parked at exit waiting for its check.
func (r *Ring) ExitWaiting(pid uint32) bool {
	if r.mem == nil || pid == 0 {
		return false
	}
	for k := 0; k < ExitSlots; k++ {
		if atomic.LoadUint32(r.exitSlot(k)) == pid {
			return true
		}
	}
	return false
}

// ReleaseExit ends pid's wait at exit (X2): it frees pid's slot and wakes
// the process. It reports false if pid was not waiting (its wait timed
// out, or it never parked).
func (r *Ring) ReleaseExit(pid uint32) bool {
	if r.mem == nil || pid == 0 {
		return false
	}
	for k := 0; k < ExitSlots; k++ {
		slot := r.exitSlot(k)
		if atomic.CompareAndSwapUint32(slot, pid, 0) {
			// A shared futex: the waiter is another process.
			unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(slot)), futexWake, 1, 0, 0, 0)
			return true
		}
	}
	return false
}

// ExitSeq is the count of exit records written by processes that wait for
// a check (X5): read it before a poll, and hand it to AwaitExit if the
// poll found nothing.
func (r *Ring) ExitSeq() uint32 {
	if r.mem == nil {
		return 0
	}
	return atomic.LoadUint32(r.u32(offExitFutex))
}

// AwaitExit waits until a process writes an exit record that waits for a
// check after ExitSeq said seq, or for d: an idle consumer sleeps on it
// instead of for its poll interval, and starts the check as soon as the
// process parks.
func (r *Ring) AwaitExit(seq uint32, d time.Duration) {
	if r.mem == nil {
		time.Sleep(d)
		return
	}
	ts := unix.NsecToTimespec(d.Nanoseconds())
	// A shared futex: the waker is another process. EAGAIN: it changed.
	addr := uintptr(unsafe.Pointer(r.u32(offExitFutex)))
	if runtime.GOMAXPROCS(0) == 1 {
		unix.Syscall6(unix.SYS_FUTEX, addr, futexWait, uintptr(seq), uintptr(unsafe.Pointer(&ts)), 0, 0)
		return
	}
	// Raw, keeping the P: a goroutine in a system call keeps its P only
	// until Go's sysmon takes it back for other work, and every such
	// retake (or wake of a sleeping sysmon by the call's return) sets
	// sysmon polling every 20 µs. An idle consumer waits here up to a
	// thousand times a second: a build's analyzer made 7 700 sysmon sleeps
	// and 20 000 context switches with the runtime's system call, 1 900
	// and 9 000 raw, and used 9% less CPU. Other goroutines run on the
	// other Ps meanwhile, and those queued here run first (Gosched). A
	// signal (Go preempts a goroutine that ran 10 ms, the GC stops the
	// world) ends the wait with EINTR: the goroutine yields, a sure point
	// for the preemption to take effect (the raw call is none), then
	// waits out what is left.
	runtime.Gosched()
	start := r.clock.Now()
	for {
		_, _, errno := unix.RawSyscall6(unix.SYS_FUTEX, addr, futexWait, uintptr(seq), uintptr(unsafe.Pointer(&ts)), 0, 0)
		if errno != unix.EINTR {
			return
		}
		runtime.Gosched()
		waited := time.Duration(r.clock.Now() - start)
		if waited >= d {
			return
		}
		ts = unix.NsecToTimespec((d - waited).Nanoseconds())
	}
}
