package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/analyzer/engine"
	"memscope/analyzer/reach"
)

// TestWriteJSONAsEncodingJSON: WriteJSON writes what json.Encoder (HTML
// escaping off) wrote for the schema's structs before it, which are
// kept here as the oracle, strings that need escaping included.
func TestWriteJSONAsEncodingJSON(t *testing.T) {
	odd := []string{"", "plain", `quo"te back\slash`, "ctl\x00\x01\b\f\n\r\t\x1f\x7f", "<html>&amp;",
		"bad utf8 \xff\xfe end", "line\u2028para\u2029", "caf\u00e9 \U0001F600", "\xe2\x80", "trailing \xc3"}
	for i, s := range odd {
		r := &LeakReport{
			Pid: 7, Ppid: 1, Program: s, Complete: i%2 == 0, Incomplete: []string{s, "other"},
			Totals:      engine.Totals{Allocations: uint64(i), Frees: 1, BytesAllocated: 1 << 40, LateEvents: uint64(i * 3), DroppedEvents: uint64(i % 3)},
			LeakedBytes: 99, LeakedObjects: 3,
			Exit:  engine.ExitStatus{Known: i%3 != 0, Code: i, Signal: i % 2 * 9},
			Reach: engine.Reachability{Checked: i%2 == 1, Reason: s},
			Leaks: []Leak{
				{Kind: reach.Direct, Bytes: 10, Objects: 1, Suppressed: true, Frames: []Frame{{Address: 0, Function: s, File: s, Line: i, Module: s}}},
				{Kind: reach.Reachable, Bytes: 20, Objects: 2},
				{Kind: reach.Kind(i % int(reach.NumKinds)), Frames: []Frame{{Address: ^uint64(0)}, {Address: 0x401000, Function: "f", Line: -1}}},
			},
		}
		r.ByKind[reach.Direct] = engine.KindCount{Objects: 1, Bytes: 10}
		r.ByKind[reach.Reachable] = engine.KindCount{Objects: 2, Bytes: 20}
		if i == 3 {
			r.Leaks = nil
		}
		var got, want bytes.Buffer
		require.NoError(t, r.WriteJSON(&got))
		require.NoError(t, encodingJSON(r, &want))
		assert.Equal(t, want.String(), got.String(), "report %d (%q)", i, s)
	}
}

type jsonReport struct {
	Version    int    `json:"version"`
	Pid        uint32 `json:"pid"`
	Ppid       uint32 `json:"ppid"`
	Program    string `json:"program"`
	ExitStatus *int   `json:"exit_status"`
	Complete   bool   `json:"complete"`
	// Incomplete says why complete is false (absent when it is true).
	Incomplete    []string   `json:"incomplete,omitempty"`
	Totals        jsonTotals `json:"totals"`
	LeakedBytes   uint64     `json:"leaked_bytes"`
	LeakedObjects uint64     `json:"leaked_objects"`
	// Reachability is "checked" or "not checked: REASON".
	Reachability     string     `json:"reachability"`
	DirectBytes      uint64     `json:"direct_bytes"`
	DirectObjects    uint64     `json:"direct_objects"`
	IndirectBytes    uint64     `json:"indirect_bytes"`
	IndirectObjects  uint64     `json:"indirect_objects"`
	ReachableBytes   uint64     `json:"reachable_bytes"`
	ReachableObjects uint64     `json:"reachable_objects"`
	Leaks            []jsonLeak `json:"leaks"`
}

type jsonTotals struct {
	Allocations          uint64 `json:"allocations"`
	Frees                uint64 `json:"frees"`
	BytesAllocated       uint64 `json:"bytes_allocated"`
	PeakBytes            uint64 `json:"peak_bytes"`
	TemporaryAllocations uint64 `json:"temporary_allocations"`
	DroppedEvents        uint64 `json:"dropped_events"`
	UnrecordedCalls      uint64 `json:"unrecorded_calls"`
	UnknownFrees         uint64 `json:"unknown_frees"`
	LateEvents           uint64 `json:"late_events"`
}

type jsonLeak struct {
	Kind       string      `json:"kind"`
	Bytes      uint64      `json:"bytes"`
	Objects    uint64      `json:"objects"`
	Suppressed bool        `json:"suppressed"`
	Frames     []jsonFrame `json:"frames"`
}

type jsonFrame struct {
	Address  string `json:"address"`
	Function string `json:"function"`
	File     string `json:"file"`
	Line     int    `json:"line"`
	Module   string `json:"module"`
}

func encodingJSON(r *LeakReport, w io.Writer) error {
	jr := jsonReport{
		Version: 1, Pid: r.Pid, Ppid: r.Ppid, Program: r.Program, Complete: r.Complete, Incomplete: r.IncompleteReasons(),
		Totals: jsonTotals{
			Allocations: r.Totals.Allocations, Frees: r.Totals.Frees, BytesAllocated: r.Totals.BytesAllocated,
			PeakBytes: r.Totals.PeakBytes, TemporaryAllocations: r.Totals.TemporaryAllocations, DroppedEvents: r.Totals.DroppedEvents,
			UnrecordedCalls: r.Totals.UnrecordedCalls, UnknownFrees: r.Totals.UnknownFrees, LateEvents: r.Totals.LateEvents,
		},
		LeakedBytes: r.LeakedBytes, LeakedObjects: r.LeakedObjects,
		Reachability: "checked",
		DirectBytes:  r.ByKind[reach.Direct].Bytes, DirectObjects: r.ByKind[reach.Direct].Objects,
		IndirectBytes: r.ByKind[reach.Indirect].Bytes, IndirectObjects: r.ByKind[reach.Indirect].Objects,
		ReachableBytes: r.ByKind[reach.Reachable].Bytes, ReachableObjects: r.ByKind[reach.Reachable].Objects,
		Leaks: make([]jsonLeak, 0, len(r.Leaks)),
	}
	if !r.Reach.Checked {
		jr.Reachability = "not checked: " + r.Reach.Why()
	}
	if code, ok := r.Exit.ShellCode(); ok {
		jr.ExitStatus = &code
	}
	for _, l := range r.Leaks {
		jl := jsonLeak{Kind: l.Kind.String(), Bytes: l.Bytes, Objects: l.Objects, Suppressed: l.Suppressed, Frames: make([]jsonFrame, 0, len(l.Frames))}
		for _, f := range l.Frames {
			jl.Frames = append(jl.Frames, jsonFrame{Address: fmt.Sprintf("%#x", f.Address), Function: f.Function, File: f.File, Line: f.Line, Module: f.Module})
		}
		jr.Leaks = append(jr.Leaks, jl)
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(jr)
}

// BenchmarkWriteJSON: a gcc driver's leaks.json (98 groups of 30 frames),
// by hand and by encoding/json.
func BenchmarkWriteJSON(b *testing.B) {
	r := &LeakReport{Pid: 7, Program: "/usr/bin/x86_64-linux-gnu-gcc-12", Complete: true, Reach: engine.Reachability{Checked: true}}
	for g := 0; g < 98; g++ {
		l := Leak{Kind: reach.Reachable, Bytes: 88, Objects: 1}
		for f := 0; f < 30; f++ {
			l.Frames = append(l.Frames, Frame{Address: 0x48bac8 + uint64(f), Module: "/usr/bin/x86_64-linux-gnu-gcc-12"})
		}
		r.Leaks = append(r.Leaks, l)
	}
	for _, enc := range []struct {
		name  string
		write func(io.Writer) error
	}{{"hand", r.WriteJSON}, {"encoding_json", func(w io.Writer) error { return encodingJSON(r, w) }}} {
		b.Run(enc.name, func(b *testing.B) {
			var out bytes.Buffer
			for b.Loop() {
				out.Reset()
				if err := enc.write(&out); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(out.Len()))
		})
	}
}
