package report

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"memscope/analyzer/engine"
)

// OutputMode is the permission of report files (before the umask): reports
// are meant to be shared like a compiler's output. The ring and sockets,
// which are private, are 0600 (DESIGN.md §8).
const OutputMode = 0o644

// FileBase returns "memscope.PROG.PID", the common stem of p's output
// files; PROG is the executable's base name with anything outside
// [A-Za-z0-9._+-] replaced by '_'.
func FileBase(p *engine.Process) string {
	name := []byte(progName(p))
	for i, c := range name {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '+' || c == '-') {
			name[i] = '_'
		}
	}
	s := string(name)
	if s == "" || s == "." || s == ".." {
		s = "prog"
	}
	return "memscope." + s + "." + strconv.FormatUint(uint64(p.Pid), 10)
}

// WriteFileAtomic writes dir/name with write: into a new temporary file in
// dir (O_CREAT|O_EXCL|O_NOFOLLOW, mode OutputMode), buffered, then renamed
// over dir/name, so that no reader ever sees it half-written. The final
// name is never followed: if it is a symbolic link the write is refused.
// On any error the temporary file is removed and dir/name is untouched.
// Nothing is fsynced: a report can be made again, and two fsyncs per file
// were half the cost of profiling a short process (a test suite runs
// hundreds).
func WriteFileAtomic(dir, name string, write func(io.Writer) error) (err error) {
	if name == "" || strings.ContainsRune(name, '/') || name == "." || name == ".." {
		return fmt.Errorf("output file name %q is not a plain file name", name)
	}
	final := filepath.Join(dir, name)
	if fi, err := os.Lstat(final); err == nil {
		if fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%s: refusing to replace a symbolic link", final)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s: exists and is not a regular file", final)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", final, err)
	}

	var f *os.File
	var tmp string
	for attempt := 0; ; attempt++ {
		var rnd [6]byte
		if _, err := rand.Read(rnd[:]); err != nil {
			return fmt.Errorf("%s: temporary name: %w", final, err)
		}
		tmp = filepath.Join(dir, "."+name+".tmp-"+hex.EncodeToString(rnd[:]))
		fd, err := unix.Open(tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, OutputMode)
		if err == nil {
			f = os.NewFile(uintptr(fd), tmp)
			break
		}
		if errors.Is(err, unix.EEXIST) && attempt < 10 {
			continue
		}
		return fmt.Errorf("%s: create temporary file: %w", final, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	bw := bufio.NewWriterSize(f, 64<<10)
	if err := write(bw); err != nil {
		return fmt.Errorf("%s: %w", final, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("%s: %w", final, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", final, err)
	}
	// Re-check right before the rename: rename(2) replaces a link rather
	// than following it, but a link placed here means someone expects us
	// to write through it, which we refuse.
	if fi, err := os.Lstat(final); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%s: refusing to replace a symbolic link", final)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("%s: %w", final, err)
	}
	return nil
}
