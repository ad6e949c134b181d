package live

import (
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"memscope/analyzer/journal"
	"memscope/shm"
)

// RingState says who is still attached to a ring file.
type RingState int

const (
	// RingLive: its consumer (an analyzer) is running.
	RingLive RingState = iota
	// RingOrphaned: its consumer and every producer are gone; what the
	// ring holds can still be reported (record --ring), then it can go.
	RingOrphaned
	// RingUnconsumed: its consumer is gone but processes still write to
	// it (they wait, then drop): record --ring takes over.
	RingUnconsumed
	// RingBad: not a ring this analyzer can read.
	RingBad
)

func (s RingState) String() string {
	return [...]string{"live", "orphaned", "no analyzer", "unreadable"}[s]
}

// RingFile is a ring file of the private directory.
type RingFile struct {
	Path  string
	Size  int64
	State RingState
	Err   error // RingBad: why
}

// Rings lists the ring files in dir and who is still attached to each.
func Rings(dir string) ([]RingFile, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []RingFile
	for _, e := range ents {
		if !e.Type().IsRegular() || strings.HasSuffix(e.Name(), ".sock") || strings.HasPrefix(e.Name(), ".") || journal.IsJournal(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		rf := RingFile{Path: path}
		if info, err := e.Info(); err == nil {
			rf.Size = info.Size()
		}
		// Its journal takes memory like it (analyzer/journal).
		if info, err := os.Stat(journal.Path(path)); err == nil {
			rf.Size += info.Size()
		}
		rf.State, rf.Err = ringState(path)
		out = append(out, rf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func ringState(path string) (RingState, error) {
	r, err := shm.Open(path)
	if err != nil {
		return RingBad, err
	}
	defer r.Close()
	if alive(r.Info().ConsumerPid) {
		return RingLive, nil
	}
	for _, pid := range r.ProducerPids() {
		if alive(pid) {
			return RingUnconsumed, nil
		}
	}
	return RingOrphaned, nil
}

// alive says whether pid runs (a zombie does not).
func alive(pid uint32) bool {
	if pid == 0 || pid == uint32(os.Getpid()) {
		return pid != 0
	}
	if err := unix.Kill(int(pid), 0); err == unix.ESRCH {
		return false
	}
	b, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndex(string(b), ") ")
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

func itoa(v uint32) string {
	var b [10]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			return string(b[i:])
		}
	}
}
