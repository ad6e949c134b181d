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

// TestHeapFloor: the collector stays off under a memory limit of gcFloor
// until a collection happens, which installs the ballast and GOGC
// gcPercent with no limit.
func TestHeapFloor(t *testing.T) {
	p0, l0 := gcSettings()
	t.Cleanup(func() {
		debug.SetGCPercent(p0)
		debug.SetMemoryLimit(l0)
	})

	f := startHeapFloor()
	percent, limit := gcSettings()
	assert.Equal(t, -1, percent)
	assert.Equal(t, int64(gcFloor), limit)
	assert.False(t, f.installed())

	runtime.GC() // what the limit does once the heap nears gcFloor
	deadline := time.Now().Add(10 * time.Second)
	for !f.installed() && time.Now().Before(deadline) {
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
	require.True(t, f.installed(), "the first collection did not install the ballast")
	percent, limit = gcSettings()
	assert.Equal(t, gcPercent, percent)
	assert.Equal(t, int64(math.MaxInt64), limit)
	f.mu.Lock()
	assert.Len(t, f.ballast, gcFloor)
	f.mu.Unlock()
}
