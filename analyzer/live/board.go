// Package live shows a recording while it runs: the session publishes
// copies of its per-process state on a Board, and readers that never
// touch the engine serve them — a unix socket in the private ring
// directory (state for viewers, heap profiles on demand), Prometheus
// metrics — so no viewer can slow the recording: the consumer never waits
// on one, it only swaps a pointer.
package live

import (
	"sync/atomic"
	"time"

	"memscope/analyzer/engine"
	"memscope/shm"
)

// State is what the session published last: a consistent copy, shared
// read-only by every reader.
type State struct {
	Time    time.Time // when it was published
	Started time.Time // when the session started
	NowNS   uint64    // the records' clock at publication (shm.Clock.Now)
	Ring    shm.Info
	// EventsApplied counts the allocation and free events the engine
	// has applied since the session started.
	EventsApplied uint64
	Procs         []Proc // by pid; ended ones after the running ones
	// Command is the program the session runs (run/live), or "" (record).
	Command []string
	// Output is where PROG's stdout and stderr go, when captured.
	Output string
	// PublishNS is how long building this state held the consumer, and
	// MaxPublishNS the longest so far: what live readers cost the
	// recording (they never make it wait otherwise).
	PublishNS, MaxPublishNS int64
}

// Proc is one process: its state as of the publication.
type Proc struct {
	*engine.Process
	Running bool
	// SeenNS is when its newest event was written (the process's clock):
	// NowNS - SeenNS is how far the analyzer lags behind it.
	SeenNS uint64
}

// Board holds the latest State. Publish and Load may be called from any
// goroutine; a published State must not be modified.
type Board struct {
	cur    atomic.Pointer[State]
	unread atomic.Bool // nobody loaded cur since it was published
}

// Publish makes s the current state.
func (b *Board) Publish(s *State) {
	b.cur.Store(s)
	b.unread.Store(true)
}

// Load returns the current state, or nil before the first Publish.
func (b *Board) Load() *State {
	if b.unread.Load() {
		b.unread.Store(false)
	}
	return b.cur.Load()
}

// Read reports whether the current state was loaded since it was
// published (true before the first Publish): a publisher whose states
// nobody reads publishes less often.
func (b *Board) Read() bool { return !b.unread.Load() }

// Proc returns the process pid of s, or nil.
func (s *State) Proc(pid uint32) *Proc {
	for i := range s.Procs {
		if s.Procs[i].Pid == pid {
			return &s.Procs[i]
		}
	}
	return nil
}
