package reach

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Thread is a stopped thread of the target.
type Thread struct {
	Tid  int
	SP   uint64   // stack pointer
	Regs []uint64 // every general-purpose register, and the TLS base
}

// Stopped is a process whose threads are all in a ptrace stop (PTRACE_SEIZE
// then PTRACE_INTERRUPT, which sends no signal the program could see).
// Every ptrace request must come from the OS thread that attached: the
// caller holds runtime.LockOSThread from Stop to Resume.
type Stopped struct {
	Pid     int
	Threads []Thread
	// pending holds signals that arrived while a thread was stopped for
	// us (a signal-delivery stop): they are delivered at detach.
	pending map[int]int
	// parked: not stopped at all (Parked): nothing to resume.
	parked bool
}

// stopTimeout bounds the wait for one thread to reach its stop.
const stopTimeout = 2 * time.Second

// Stop attaches to every thread of pid and stops it. Threads created
// while it attaches are found by listing the threads again until a pass
// finds none new (as LeakSanitizer's stop-the-world does); threads that
// end meanwhile are skipped. On error nothing stays attached.
func Stop(pid int) (*Stopped, error) {
	s := &Stopped{Pid: pid, pending: map[int]int{}}
	attached := map[int]bool{}
	var order []int
	for pass := 0; ; pass++ {
		tids, err := listThreads(pid)
		if err != nil {
			s.Resume()
			return nil, err
		}
		fresh := 0
		for _, tid := range tids {
			if attached[tid] {
				continue
			}
			attached[tid] = true
			fresh++
			if err := unix.PtraceSeize(tid); err != nil {
				if err == unix.ESRCH {
					continue // ended meanwhile
				}
				s.Resume()
				return nil, fmt.Errorf("ptrace(PTRACE_SEIZE, %d): %w", tid, err)
			}
			order = append(order, tid)
			s.Threads = append(s.Threads, Thread{Tid: tid})
			if err := unix.PtraceInterrupt(tid); err != nil && err != unix.ESRCH {
				s.Resume()
				return nil, fmt.Errorf("ptrace(PTRACE_INTERRUPT, %d): %w", tid, err)
			}
		}
		if fresh == 0 {
			break
		}
		if pass > 100 {
			s.Resume()
			return nil, errors.New("threads kept appearing while stopping the process")
		}
	}
	live := s.Threads[:0]
	for _, th := range s.Threads {
		ok, err := s.waitStop(th.Tid)
		if err != nil {
			s.Resume()
			return nil, err
		}
		if !ok {
			continue // it ended
		}
		var regs unix.PtraceRegs
		if err := unix.PtraceGetRegs(th.Tid, &regs); err != nil {
			if err == unix.ESRCH {
				continue
			}
			s.Resume()
			return nil, fmt.Errorf("ptrace(PTRACE_GETREGS, %d): %w", th.Tid, err)
		}
		th.Regs = unsafe.Slice((*uint64)(unsafe.Pointer(&regs)), unsafe.Sizeof(regs)/8)
		th.Regs = append([]uint64(nil), th.Regs...)
		th.SP = stackPointer(&regs)
		live = append(live, th)
	}
	s.Threads = live
	return s, nil
}

// waitStop waits until tid is in a ptrace stop. Its stop is reported to
// wait(2) of the tracer's thread group, where `run`'s reaper may take it
// first (it ignores stops): so the thread's state in /proc is the
// authority, and wait4 only tells which stop it is. It returns false if
// the thread ended.
func (s *Stopped) waitStop(tid int) (bool, error) {
	deadline := time.Now().Add(stopTimeout)
	for try := 0; ; try++ {
		var ws unix.WaitStatus
		got, err := unix.Wait4(tid, &ws, unix.WALL|unix.WNOHANG, nil)
		if err == nil && got == tid {
			switch {
			case ws.Exited() || ws.Signaled():
				return false, nil
			case ws.Stopped():
				// PTRACE_EVENT_STOP in the high bits: our interrupt or a
				// group stop. Otherwise a signal on its way to the program
				// stopped it: give it back at detach.
				if uint32(ws)>>16 != unix.PTRACE_EVENT_STOP {
					s.pending[tid] = int(ws.StopSignal())
				}
				return true, nil
			}
		}
		state, ok := taskState(s.Pid, tid)
		if !ok || state == 'Z' || state == 'X' {
			return false, nil
		}
		if state == 't' {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("thread %d did not stop within %v (state %c)", tid, stopTimeout, state)
		}
		// A running thread stops within microseconds: look again at once a
		// few times before sleeping (a sleep costs tens of them).
		if try < 50 {
			runtime.Gosched()
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
}

// Parked returns the process as it is when its only thread is tid, the
// one AwaitThreadParked saw in the library's wait at exit (a futex wait)
// with stack pointer sp: nothing runs in it that could change its memory,
// so it needs no stop. Its registers are not needed: the library spilled
// the callee-saved ones onto its stack before waiting. ok is false when
// the process has other threads, or tid was not seen waiting (sp 0): Stop
// it then. (Seen waiting, then alone: a thread is started only by a
// running one, and the waiting one runs nothing but its wait until it is
// released.)
func Parked(pid, tid int, sp uint64) (s *Stopped, ok bool) {
	if sp == 0 {
		return nil, false
	}
	tids, err := listThreads(pid)
	if err != nil || len(tids) != 1 || tids[0] != tid {
		return nil, false
	}
	return &Stopped{Pid: pid, Threads: []Thread{{Tid: tid, SP: sp}}, parked: true}, true
}

// inFutexWait reports whether thread tid of pid is in a futex wait, and
// its stack pointer there (/proc/PID/task/TID/syscall).
func inFutexWait(pid, tid int) (sp uint64, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/syscall", pid, tid))
	if err != nil {
		return 0, false
	}
	// "nr arg1 ... arg6 sp pc" while in a system call.
	f := strings.Fields(string(b))
	if len(f) != 9 {
		return 0, false
	}
	nr, err1 := strconv.ParseInt(f[0], 10, 64)
	sp, err2 := strconv.ParseUint(strings.TrimPrefix(f[7], "0x"), 16, 64)
	if err1 != nil || err2 != nil || nr != unix.SYS_FUTEX || sp == 0 {
		return 0, false
	}
	return sp, true
}

// AwaitThreadParked waits up to within for thread tid of pid, the one
// that wrote its exit record, to reach the library's futex wait: it writes
// that record a few calls before it waits, and a loaded machine may
// deschedule it in between. Parked, or Stop with other threads, then
// finds it there, its registers spilled and no deeper frame on its stack;
// caught on its way, the frames of those calls and every register would
// be scanned, with the stale pointers they hold, and the verdict would
// depend on the timing (python3 -c pass: 3 blocks of LeakSanitizer's 6
// found reachable on a busy machine). It reports whether it got there
// (false too when the thread is gone), and its stack pointer there.
func AwaitThreadParked(pid, tid int, within time.Duration) (sp uint64, ok bool) {
	deadline := time.Now().Add(within)
	for try := 0; ; try++ {
		if sp, ok := inFutexWait(pid, tid); ok {
			return sp, true
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d/task/%d", pid, tid)); err != nil || !time.Now().Before(deadline) {
			return 0, false
		}
		if try < 20 {
			runtime.Gosched()
		} else {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// Resume detaches from every thread, giving back the signals that arrived
// while it was stopped.
func (s *Stopped) Resume() {
	if s == nil || s.parked {
		return
	}
	for _, th := range s.Threads {
		sig := s.pending[th.Tid]
		unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(th.Tid), 0, uintptr(sig), 0, 0)
	}
	s.Threads = nil
}

func listThreads(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// taskState is the state letter of /proc/PID/task/TID/stat ('t': traced
// stop); ok is false if the thread is gone.
func taskState(pid, tid int) (byte, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
	if err != nil {
		return 0, false
	}
	i := bytes.LastIndex(b, []byte(") ")) // comm may hold ") "
	if i < 0 || i+2 >= len(b) {
		return 0, false
	}
	return b[i+2], true
}
