package symbolize

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCacheFileRoundTrip: what encodeCacheFile writes, decodeCacheFile
// reads back exactly, with repeated names written once.
func TestCacheFileRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		stamp  string
		frames map[uint64][]Frame
		size   int // of the encoding
	}{
		{"empty", "", map[uint64][]Frame{}, len(cacheMagic) + 2},
		{"one address", "1 /usr/bin/memscope-analyze 100 7", map[uint64][]Frame{
			0x1139: {{Function: "main", File: "/src/a.c", Line: 12}},
		}, len(cacheMagic) + 1 + 33 + 1 + 2 + 1 + 1 + 1 + 4 + 1 + 1 + 8 + 1 + 1},
		{"inlined and shared names", "s", map[uint64][]Frame{
			0x2000: {{Function: "leaf", File: "a.c", Line: 3, Inlined: true}, {Function: "main", File: "a.c", Line: 9}},
			0x1000: {{Function: "main", File: "a.c", Line: 7}},
			0x3000: {{}},
			0x4000: {},
		}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeCacheFile(tt.stamp, tt.frames)
			if tt.size >= 0 {
				assert.Len(t, b, tt.size)
			}
			stamp, frames, err := decodeCacheFile(b)
			require.NoError(t, err)
			assert.Equal(t, tt.stamp, stamp)
			assert.Equal(t, tt.frames, frames)
		})
	}
	// "main" and "a.c" are written once: the second address's frames name
	// them by index.
	b := encodeCacheFile("s", map[uint64][]Frame{
		1: {{Function: "main", File: "a.c", Line: 1}},
		2: {{Function: "main", File: "a.c", Line: 2}},
	})
	// Per address: delta, frames, function, file, line, inlined.
	assert.Equal(t, []byte{1, 1, 0, 4, 'm', 'a', 'i', 'n', 0, 3, 'a', '.', 'c', 1, 0, 1, 1, 1, 2, 2, 0},
		b[len(cacheMagic)+2+1:])
}

// TestCacheFileDamaged: a file that is not whole is refused with
// errCacheFile, never half read and never a panic or a huge allocation.
func TestCacheFileDamaged(t *testing.T) {
	valid := encodeCacheFile("stamp", map[uint64][]Frame{
		0x10: {{Function: "f", File: "f.c", Line: 300, Inlined: true}, {Function: "g", File: "f.c", Line: 4}},
		0x20: {{Function: "g", File: "g.c", Line: 5}},
	})
	head := []byte(cacheMagic + "\x05stamp")
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"gob file of the format before", []byte("\x1f\xff\x81\x03\x01\x01\x0bcacheOnDisk"), "bad magic"},
		{"empty", nil, "bad magic"},
		{"stamp longer than the file", []byte(cacheMagic + "\x09stamp"), "stamp at byte"},
		{"address count beyond the file", append(append([]byte{}, head...), binary.AppendUvarint(nil, 1<<40)...), "address count"},
		{"frame count beyond the file", append(append([]byte{}, head...), 1, 0x10, 0x7f, 0, 0), "frame count"},
		{"string index ahead", append(append([]byte{}, head...), 1, 0x10, 1, 3, 0, 0, 0, 0), "string index"},
		{"inlined byte not 0 or 1", append(append([]byte{}, head...), 1, 0x10, 1, 0, 1, 'f', 0, 0, 2, 2), "inlined"},
		{"trailing bytes", append(append([]byte{}, valid...), 0), "trailing bytes"},
	}
	for n := range len(valid) {
		tests = append(tests, struct {
			name string
			b    []byte
			want string
		}{"cut at " + string(rune('0'+n%10)), valid[:n], ""})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stamp, frames, err := decodeCacheFile(tt.b)
			require.ErrorIs(t, err, errCacheFile)
			assert.Contains(t, err.Error(), tt.want)
			assert.Empty(t, stamp)
			assert.Nil(t, frames)
		})
	}
}
