package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/pprof/profile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProfileEncoderAsPprof: what profileEncoder writes parses to the
// profile the pprof package's own encoder writes, for the reports'
// profiles and for profiles using every field encode handles: labels
// with several keys and values, numeric labels, comments, drop and keep
// frames, locations without a mapping, and
// messages longer than 127 bytes (a two-byte length).
func TestProfileEncoderAsPprof(t *testing.T) {
	p := syntheticProcess(t, 0)
	atExit, atPeak := Profiles(p, symbols(), ProfileOptions{TimeNanos: 1234})
	deep := profileOf(3)
	var frames []*profile.Location
	for i := 0; i < 200; i++ {
		frames = append(frames, deep.Location[i%3])
	}
	deep.Sample = append(deep.Sample, &profile.Sample{Location: frames, Value: []int64{-5}})
	deep.Function[0].Name = strings.Repeat("long_name_", 30)
	deep.Comments = []string{"one", "two", "three"}
	deep.DropFrames, deep.KeepFrames = "drop.*", "keep.*"
	deep.PeriodType, deep.Period, deep.DurationNanos = &profile.ValueType{Type: "space", Unit: "bytes"}, 512, 99
	deep.DefaultSampleType = "inuse_space"
	deep.Sample[0].Label = map[string][]string{"b": {"x", "y"}, "a": {"z"}}
	deep.Sample[0].NumLabel = map[string][]int64{"n": {1, -2}, "m": {3}}
	m := &profile.Mapping{ID: 1, Start: 0x1000, Limit: 0x9000, Offset: 0x1000, File: "/bin/x", BuildID: "ab", HasFunctions: true, HasInlineFrames: true}
	deep.Mapping = []*profile.Mapping{m}
	deep.Location[0].Mapping = m
	require.NoError(t, deep.CheckValid())

	var enc profileEncoder
	for _, tc := range []struct {
		name string
		prof *profile.Profile
	}{
		{"at exit", atExit}, {"at peak", atPeak}, {"at exit again", atExit},
		{"every field", deep}, {"one sample", profileOf(1)}, {"empty", &profile.Profile{}},
	} {
		require.True(t, encodable(tc.prof), tc.name)
		var want bytes.Buffer
		require.NoError(t, tc.prof.WriteUncompressed(&want))
		got := enc.encode(tc.prof)
		assert.Equal(t, profileText(t, want.Bytes()), profileText(t, got), tc.name)
	}
}

// TestProfileEncoderLeavesOthersToPprof: a profile setting a field the
// reports never set is written by the pprof package.
func TestProfileEncoderLeavesOthersToPprof(t *testing.T) {
	for name, set := range map[string]func(p *profile.Profile){
		"doc url": func(p *profile.Profile) { p.DocURL = "https://example.com" },
		"num unit": func(p *profile.Profile) {
			p.Sample[0].NumLabel = map[string][]int64{"n": {1}}
			p.Sample[0].NumUnit = map[string][]string{"n": {"bytes"}}
		},
		"folded":     func(p *profile.Profile) { p.Location[0].IsFolded = true },
		"column":     func(p *profile.Profile) { p.Location[0].Line[0].Column = 3 },
		"start line": func(p *profile.Profile) { p.Function[0].StartLine = 9 },
	} {
		p := profileOf(2)
		set(p)
		assert.False(t, encodable(p), name)
		var pw ProfileWriter
		var out bytes.Buffer
		require.NoError(t, pw.Write(&out, p), name)
		var want bytes.Buffer
		require.NoError(t, p.WriteUncompressed(&want))
		assert.Equal(t, want.Bytes(), unzip(t, out.Bytes()), name)
	}
}

// BenchmarkProfileEncode: the two profiles of a process with 2 000 sites
// of 30 frames over 3 000 locations, each with labels, by the pprof
// package and by profileEncoder.
func BenchmarkProfileEncode(b *testing.B) {
	pair := func() (a, c *profile.Profile) {
		mk := func() *profile.Profile {
			return &profile.Profile{SampleType: []*profile.ValueType{{Type: "alloc_objects", Unit: "count"}, {Type: "inuse_space", Unit: "bytes"}}, DefaultSampleType: "inuse_space"}
		}
		a, c = mk(), mk()
		m := &profile.Mapping{ID: 1, Start: 0x400000, Limit: 0x900000, File: "/usr/bin/x86_64-linux-gnu-gcc-12", BuildID: "0123456789abcdef", HasFunctions: true}
		for i := 0; i < 3000; i++ {
			f := &profile.Function{ID: uint64(i + 1), Name: "/usr/bin/x86_64-linux-gnu-gcc-12+0x" + strings.Repeat("4", 5) + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676))}
			f.SystemName = f.Name
			a.Function = append(a.Function, f)
			a.Location = append(a.Location, &profile.Location{ID: uint64(i + 1), Mapping: m, Address: 0x400000 + uint64(i)*16, Line: []profile.Line{{Function: f}}})
		}
		a.Mapping = []*profile.Mapping{m}
		c.Mapping, c.Location, c.Function = a.Mapping, a.Location, a.Function
		labels := map[string][]string{"thread": {"gcc"}}
		num := map[string][]int64{"tid": {4242}}
		for i := 0; i < 2000; i++ {
			var locs []*profile.Location
			for f := 0; f < 30; f++ {
				locs = append(locs, a.Location[(i*7+f*101)%3000])
			}
			a.Sample = append(a.Sample, &profile.Sample{Location: locs, Value: []int64{int64(i), int64(i * 16)}, Label: labels, NumLabel: num})
			c.Sample = append(c.Sample, &profile.Sample{Location: locs, Value: []int64{int64(i), int64(i * 32)}, Label: labels, NumLabel: num})
		}
		return a, c
	}
	atExit, atPeak := pair()
	b.Run("pprof", func(b *testing.B) {
		var buf bytes.Buffer
		for b.Loop() {
			for _, p := range []*profile.Profile{atExit, atPeak} {
				buf.Reset()
				if err := p.WriteUncompressed(&buf); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("encoder", func(b *testing.B) {
		var enc profileEncoder
		for b.Loop() {
			enc.tablesOf = tableIDs{} // as for the next process
			enc.encode(atExit)
			enc.encode(atPeak)
		}
	})
}
