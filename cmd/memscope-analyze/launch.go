package main

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"memscope/analyzer/engine"
	"memscope/analyzer/session"
)

// resolveProgram finds PROG as execvp would and checks it can be run.
func resolveProgram(prog string) (string, error) {
	path := prog
	if !strings.Contains(prog, "/") {
		found, err := exec.LookPath(prog) // ErrDot: found through "." in PATH, as execvp would
		if err != nil && !errors.Is(err, exec.ErrDot) {
			return "", fmt.Errorf("program %q not found in PATH", prog)
		}
		path = found
	}
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("program %s does not exist", path)
		}
		return "", fmt.Errorf("program %s: %w", path, err)
	}
	if st.IsDir() {
		return "", fmt.Errorf("program %s is a directory", path)
	}
	if err := unix.Access(path, unix.X_OK); err != nil {
		return "", fmt.Errorf("program %s is not executable", path)
	}
	return path, nil
}

// isStaticELF reports whether path is an ELF executable without a
// dynamic loader, into which LD_PRELOAD cannot load anything.
func isStaticELF(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false // scripts and the like: their interpreter decides
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}

// findLibrary returns the interposer to preload: --lib, or
// libmemscope.so beside this executable.
func findLibrary(flagLib string) (string, error) {
	if flagLib != "" {
		abs, err := filepath.Abs(flagLib)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("--lib %s: %w", flagLib, err)
		}
		return abs, nil
	}
	exe, err := os.Executable()
	if err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			cand := filepath.Join(filepath.Dir(exe), "libmemscope.so")
			if _, err := os.Stat(cand); err == nil {
				return cand, nil
			}
		}
	}
	return "", errors.New("libmemscope.so not found beside memscope-analyze; build it with make or pass --lib")
}

// childEnv is the environment of PROG: ours, with the library preloaded
// (ahead of anything already in LD_PRELOAD) and the ring's settings.
func childEnv(lib string, settings map[string]string) []string {
	env := os.Environ()
	out := make([]string, 0, len(env)+len(settings)+1)
	preload := lib
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if k == "LD_PRELOAD" {
			if v != "" {
				preload = lib + ":" + v
			}
			continue
		}
		if _, ok := settings[k]; ok {
			continue
		}
		out = append(out, kv)
	}
	out = append(out, "LD_PRELOAD="+preload)
	for k, v := range settings {
		out = append(out, k+"="+v)
	}
	return out
}

// startTraced starts PROG as our child in our process group, with files
// as its fds 0-2 (ours for run), so that the terminal treats it exactly as
// if it had been started by the shell.
func startTraced(path string, argv, env []string, files []uintptr) (int, error) {
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   env,
		Files: files,
	})
	if err != nil {
		return 0, fmt.Errorf("cannot start %s: %w", path, err)
	}
	return pid, nil
}

// reapChildren waits for every process of the tree (we are its
// subreaper, so orphans come to us too) and sends their exits on the
// returned channel, which is closed when no child is left.
func reapChildren() <-chan session.Exit {
	ch := make(chan session.Exit, 64)
	go func() {
		defer close(ch)
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WALL, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return // ECHILD: the tree is gone
			}
			if ws.Stopped() || ws.Continued() {
				// A ptrace stop of a process the leak check stopped (the
				// checker learns of it from /proc): not an end.
				continue
			}
			ch <- session.Exit{Pid: uint32(pid), Status: session.StatusOf(ws)}
		}
	}()
	return ch
}

// exitCodeOf is PROG's status as a shell reports it (the code, or
// 128+signal), or 255 if its end was never seen.
func exitCodeOf(s engine.ExitStatus) int {
	if code, ok := s.ShellCode(); ok {
		return code
	}
	return 255
}

// forwardSignals passes signals meant for the run to PROG. SIGINT and
// SIGQUIT from the terminal already reach PROG (same process group); we
// only must not die of them before the reports are written. Other
// termination signals sent to us alone are passed on.
func forwardSignals(pid int) (stop func()) {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, unix.SIGINT, unix.SIGQUIT, unix.SIGTERM, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-ch:
				sig := s.(syscall.Signal)
				if sig == unix.SIGINT || sig == unix.SIGQUIT {
					if fg, err := unix.IoctlGetInt(0, unix.TIOCGPGRP); err == nil && fg == unix.Getpgrp() {
						continue // the terminal sent it to the whole group
					}
				}
				_ = unix.Kill(pid, sig)
			}
		}
	}()
	return func() { signal.Stop(ch); close(done) }
}
