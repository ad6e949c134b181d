package main

import (
	"math"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gcSettings reads GOGC and the memory limit without changing them.
func gcSettings() (percent int, limit int64) {
	percent = debug.SetGCPercent(100)
	debug.SetGCPercent(percent)
	return percent, debug.SetMemoryLimit(-1)
}

// installed reports whether f's ballast is in place.
func (f *heapFloor) installed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ballast != nil
}

// TestHeapFloor: the collector stays off under a memory limit of gcFloor
// (or a lower one the user set) until a collection happens, which
// installs the ballast and GOGC gcPercent and gives the limit back.
func TestHeapFloor(t *testing.T) {
	p0, l0 := gcSettings()
	t.Cleanup(func() {
		debug.SetGCPercent(p0)
		debug.SetMemoryLimit(l0)
	})
	for _, tc := range []struct {
		name          string
		user, floored int64 // the limit before, and while the collector is off
	}{
		{"no limit", math.MaxInt64, gcFloor},
		{"GOMEMLIMIT above the floor", 1 << 30, gcFloor},
		{"GOMEMLIMIT below the floor", 32 << 20, 32 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(p0)
			debug.SetMemoryLimit(tc.user)
			f := startHeapFloor()
			percent, limit := gcSettings()
			assert.Equal(t, -1, percent)
			assert.Equal(t, tc.floored, limit)
			assert.False(t, f.installed())

			runtime.GC() // what the limit does once the heap nears it
			deadline := time.Now().Add(10 * time.Second)
			for !f.installed() && time.Now().Before(deadline) {
				runtime.Gosched()
				time.Sleep(time.Millisecond)
			}
			require.True(t, f.installed(), "the first collection did not install the ballast")
			percent, limit = gcSettings()
			assert.Equal(t, gcPercent, percent)
			assert.Equal(t, tc.user, limit)
			f.mu.Lock()
			assert.Len(t, f.ballast, gcFloor)
			f.ballast = nil
			f.mu.Unlock()
			debug.FreeOSMemory() // the next case starts under the floor again
		})
	}
}
