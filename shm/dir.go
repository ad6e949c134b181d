package shm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// DefaultDir returns the private directory rings and sockets live in
// (DESIGN.md §8): $XDG_RUNTIME_DIR/memscope, or /dev/shm/memscope-UID. It
// creates it 0700 if missing and checks it is a directory (not a symlink)
// owned by us with mode 0700.
func DefaultDir() (string, error) {
	dir := filepath.Join("/dev/shm", "memscope-"+strconv.Itoa(os.Geteuid()))
	if xdg := os.Getenv("XDG_RUNTIME_DIR"); xdg != "" && filepath.IsAbs(xdg) {
		dir = filepath.Join(xdg, "memscope")
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return "", fmt.Errorf("ring directory %s: %w", dir, err)
	}
	if err := CheckPrivateDir(dir); err != nil {
		return "", err
	}
	return dir, nil
}

// CheckPrivateDir checks that dir is a directory, not a symlink, owned by
// the effective user, with mode exactly 0700.
func CheckPrivateDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("ring directory %s: %w", dir, err)
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("ring directory %s: is a symlink", dir)
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		return fmt.Errorf("ring directory %s: not a directory", dir)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("ring directory %s: owned by uid %d, not by us (uid %d)", dir, st.Uid, os.Geteuid())
	case st.Mode&0o7777 != 0o700:
		return fmt.Errorf("ring directory %s: mode %04o, want 0700", dir, st.Mode&0o7777)
	}
	return nil
}
