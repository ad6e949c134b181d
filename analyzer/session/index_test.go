package session

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestIndexOrder(t *testing.T) {
	pids := func(entries []IndexEntry) []uint32 {
		var out []uint32
		for _, e := range entries {
			out = append(out, e.Pid)
		}
		return out
	}
	entries := func(pids ...uint32) []IndexEntry {
		var out []IndexEntry
		for _, p := range pids {
			out = append(out, IndexEntry{Pid: p})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		reported []uint32
		root     uint32
		want     []uint32
	}{
		{"child reported before the root", []uint32{101, 100}, 100, []uint32{100, 101}},
		{"root has the largest pid", []uint32{30, 500, 20}, 500, []uint32{500, 20, 30}},
		{"root not among them", []uint32{7, 3}, 1, []uint32{3, 7}},
		{"one process", []uint32{9}, 9, []uint32{9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := entries(tc.reported...)
			got := indexOrder(in, tc.root)
			assert.Equal(t, tc.want, pids(got))
			assert.Equal(t, tc.reported, pids(in), "the report order is left as it was")
		})
	}
}
