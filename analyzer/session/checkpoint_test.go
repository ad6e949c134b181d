package session

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/analyzer/engine"
	"memscope/analyzer/journal"
	"memscope/analyzer/report"
	"memscope/analyzer/symbolize"
)

// TestCheckpointKeepsWarnings: the modules whose frames the reports
// written before a checkpoint degraded are said by the analyzer that
// restores it, at its end, as the dead one would have said them; a
// module it warns of itself is said once.
func TestCheckpointKeepsWarnings(t *testing.T) {
	var said bytes.Buffer
	dead, err := newOutputs(Config{Stderr: &said}, func() uint64 { return 0 })
	require.NoError(t, err)
	dead.syms.Warnings = []report.SymbolWarning{
		{Path: "/usr/bin/tr", Err: symbolize.ErrNoSymbols},
		{Path: "/usr/lib/libfoo.so", Err: symbolize.ErrNoDebugInfo},
		{Path: "/opt/gone.so", Err: errors.New("open /opt/gone.so: no such file or directory")},
	}
	var state bytes.Buffer
	require.NoError(t, writeCheckpoint(&state, sessionStateOf(dead, nil, nil, nil), engine.New(engine.Options{})))

	resumed, err := newOutputs(Config{Stderr: &said}, func() uint64 { return 0 })
	require.NoError(t, err)
	resumed.syms.RestoreWarnings([]report.SavedWarning{{Path: "/usr/bin/tr", Kind: "no-symbols"}}) // its own, first
	st, err := decodeCheckpoint(state.Bytes(), engine.New(engine.Options{}))
	require.NoError(t, err)
	st.restore(resumed)
	resumed.writeWarnings()
	lines := strings.Split(strings.TrimSpace(said.String()), "\n")
	require.Len(t, lines, 3, "%s", said.String())
	assert.True(t, strings.HasPrefix(lines[0], "memscope: warning: no symbols for /usr/bin/tr: its frames are addresses"), lines[0])
	assert.True(t, strings.HasPrefix(lines[1], "memscope: warning: no debug info for /usr/lib/libfoo.so: its frames have functions, no file:line"), lines[1])
	assert.Equal(t, "memscope: warning: /opt/gone.so: open /opt/gone.so: no such file or directory", lines[2])
}

// TestCheckpointPolicy: a state up to half the records between two
// checkpoints leaves the records in the ring (2 MiB at least), and an idle
// ring is checkpointed after the time its last state takes at 4 MiB/s,
// within 10 ms..250 ms.
func TestCheckpointPolicy(t *testing.T) {
	for _, tc := range []struct {
		ringEvery, lastState int64
		ringStateMax         int64
		idleAfter            time.Duration
	}{
		{ringEvery: 16 << 20, lastState: 0, ringStateMax: 8 << 20, idleAfter: 10 * time.Millisecond},
		{ringEvery: 16 << 20, lastState: 40 << 10, ringStateMax: 8 << 20, idleAfter: 10 * time.Millisecond},
		{ringEvery: 16 << 20, lastState: 256 << 10, ringStateMax: 8 << 20, idleAfter: 62500 * time.Microsecond},
		{ringEvery: 16 << 20, lastState: 512 << 10, ringStateMax: 8 << 20, idleAfter: 125 * time.Millisecond},
		{ringEvery: 16 << 20, lastState: 1 << 20, ringStateMax: 8 << 20, idleAfter: 250 * time.Millisecond},
		{ringEvery: 16 << 20, lastState: 6 << 20, ringStateMax: 8 << 20, idleAfter: 250 * time.Millisecond},
		{ringEvery: 64 << 10, lastState: 128 << 10, ringStateMax: 2 << 20, idleAfter: 31250 * time.Microsecond},
	} {
		c := &checkpointer{ringEvery: tc.ringEvery, lastState: tc.lastState}
		assert.Equal(t, tc.ringStateMax, c.ringStateMax(), "ringEvery %d", tc.ringEvery)
		assert.Equal(t, tc.idleAfter, c.idleAfter(), "state %d", tc.lastState)
	}
}

// TestFirstCheckpointComesEarly: the journal copies the records read
// before the first checkpoint, so it is due after 1 MiB of them (or the
// ring interval if smaller), not after a quarter of the ring; after it, a
// small state waits for the ring interval.
func TestFirstCheckpointComesEarly(t *testing.T) {
	for _, tc := range []struct {
		ringEvery int64
		written   bool
		dueAfter  int64 // the journal's bytes since its start when due
	}{
		{ringEvery: 16 << 20, dueAfter: 1 << 20},
		{ringEvery: 256 << 10, dueAfter: 256 << 10},
		{ringEvery: 16 << 20, written: true, dueAfter: 16 << 20},
	} {
		w, err := journal.Create(filepath.Join(t.TempDir(), "journal"), journal.Header{}, 0, nil)
		require.NoError(t, err)
		c := &checkpointer{jw: w, every: defaultCheckpointEvery, ringEvery: tc.ringEvery, written: tc.written}
		frame := make([]byte, 64<<10)
		before := w.SinceCheckpoint()
		for !c.due(nil, false) {
			before = w.SinceCheckpoint()
			w.Taken(uint64(before>>16), 0, 1, 1, frame)
		}
		assert.Less(t, before, tc.dueAfter, "ringEvery %d, written %v", tc.ringEvery, tc.written)
		assert.GreaterOrEqual(t, w.SinceCheckpoint(), tc.dueAfter, "ringEvery %d, written %v", tc.ringEvery, tc.written)
		w.Remove()
	}
}
