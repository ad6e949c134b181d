package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/analyzer/engine"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		err  bool
	}{
		{"67108864", 64 << 20, false},
		{"64M", 64 << 20, false},
		{"64m", 64 << 20, false},
		{"64MiB", 64 << 20, false},
		{"64MB", 64 << 20, false},
		{"1G", 1 << 30, false},
		{"512K", 512 << 10, false},
		{" 8M ", 8 << 20, false},
		{"0", 0, true},
		{"", 0, true},
		{"lots", 0, true},
		{"-1M", 0, true},
		{"2048G", 0, true}, // more than 1 TiB
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSize(tc.in)
			if tc.err {
				require.Error(t, err)
				assert.Contains(t, err.Error(), "invalid size")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestExitCodeOf(t *testing.T) {
	assert.Equal(t, 0, exitCodeOf(engine.ExitStatus{Known: true}))
	assert.Equal(t, 3, exitCodeOf(engine.ExitStatus{Known: true, Code: 3}))
	assert.Equal(t, 137, exitCodeOf(engine.ExitStatus{Known: true, Signal: 9}))
	assert.Equal(t, 255, exitCodeOf(engine.ExitStatus{}), "PROG's end never seen")
}
