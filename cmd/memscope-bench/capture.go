package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// captureRecords runs argv with the library joined to a ring this
// benchmark drains, and writes every record it wrote to path (see
// drainedRing.capture for the format), atomically. It fails if the
// program fails or any event was dropped: a capture is complete or none.
func captureRecords(library, path string, argv []string) (err error) {
	d, err := newDrainedRing("capture", true)
	if err != nil {
		return fmt.Errorf("capture: ring: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".capture-*")
	if err != nil {
		d.close()
		return fmt.Errorf("capture: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	d.capture = bufio.NewWriterSize(tmp, 1<<20)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = d.joinEnv(os.Environ(), library)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	runErr := cmd.Run()
	dropped, drainErr := d.close()
	switch {
	case runErr != nil:
		err = fmt.Errorf("capture: %s: %w", argv[0], runErr)
	case drainErr != nil:
		err = fmt.Errorf("capture: draining the ring: %w", drainErr)
	case dropped > 0:
		err = fmt.Errorf("capture: %d events dropped", dropped)
	}
	if err == nil {
		err = d.capture.Flush()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	return err
}
