package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"memscope/shm"
)

// drainedRing is a ring with a consumer that decodes and discards every
// record, so that a program started with MEMSCOPE_RING joins an existing
// ring and pays only the library's own cost: no analyzer start, no
// report writing.
type drainedRing struct {
	ring *shm.Ring
	rd   *shm.Reader
	stop chan struct{}
	done chan error
	// records counts what was drained: proof the library joined.
	records int
	// capture, if set, receives every record drained, each as the pid
	// and tid (little-endian uint32s) followed by the record's bytes: the
	// format BenchmarkApplyCaptured (analyzer/engine) replays.
	capture *bufio.Writer
}

// newDrainedRing creates a ring this benchmark drains; monotonic stamps
// its records with CLOCK_MONOTONIC ns rather than TSC ticks (a capture
// is replayed without the ring's clock).
func newDrainedRing(name string, monotonic bool) (*drainedRing, error) {
	dir, err := shm.DefaultDir()
	if err != nil {
		return nil, err
	}
	ring, err := shm.Create(filepath.Join(dir, fmt.Sprintf("bench.%d.%s.ring", os.Getpid(), name)), shm.Options{MonotonicClock: monotonic})
	if err != nil {
		return nil, err
	}
	rd, err := ring.NewReader(shm.ReaderOptions{SealAfter: 5 * time.Millisecond})
	if err != nil {
		ring.Close()
		os.Remove(ring.Path())
		return nil, err
	}
	d := &drainedRing{ring: ring, rd: rd, stop: make(chan struct{}), done: make(chan error, 1)}
	go d.drain()
	return d, nil
}

// joinEnv is env with library preloaded and MEMSCOPE_RING naming d's
// ring: a program started with it joins the ring.
func (d *drainedRing) joinEnv(env []string, library string) []string {
	return append(withoutEnv(withoutEnv(env, "LD_PRELOAD"), "MEMSCOPE_RING"),
		"LD_PRELOAD="+library, "MEMSCOPE_RING="+d.ring.Path())
}

func (d *drainedRing) drain() {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	var idHdr [8]byte
	keep := func(r shm.Record) error {
		if d.capture != nil {
			binary.LittleEndian.PutUint32(idHdr[0:], r.Pid)
			binary.LittleEndian.PutUint32(idHdr[4:], r.Tid)
			d.capture.Write(idHdr[:])
			d.capture.Write(r.Data)
		}
		return nil
	}
	stopping := false
	for {
		n, err := d.rd.Poll(keep)
		d.records += n
		if err == nil {
			err = d.rd.Commit()
		}
		if err != nil || stopping {
			d.done <- err
			return
		}
		select {
		case <-d.stop:
			// One more pass: records published since the last one.
			stopping = true
		case <-tick.C:
		}
	}
}

// close stops the consumer, removes the ring and returns its dropped
// event count, and an error if nothing at all was written to it.
func (d *drainedRing) close() (uint64, error) {
	close(d.stop)
	err := <-d.done
	if err == nil && d.records == 0 {
		err = fmt.Errorf("no record reached the ring: the library did not join it")
	}
	dropped := d.rd.Stats().Dropped
	d.ring.Close()
	os.Remove(d.ring.Path())
	return dropped, err
}
