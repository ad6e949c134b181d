package main

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{9, 1, 1, 8, 7}, 7},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, median(tt.in), "median(%v)", tt.in)
	}
}

const goBenchOutput = `goos: linux
goarch: amd64
pkg: memscope/analyzer/engine
cpu: AMD EPYC
BenchmarkApply         	 3000000	       41.50 ns/op	  24096385 events/s	        40.00 B/live-block
BenchmarkApply         	 3000000	       45.00 ns/op	  22222222 events/s	        40.00 B/live-block
BenchmarkApply         	 3000000	       43.00 ns/op	  23255814 events/s	        41.00 B/live-block
BenchmarkDecode-2      	  100000	     12000 ns/op	        55.5 Mevents/s
BenchmarkDecode-2      	  100000	     14000 ns/op	        54.5 Mevents/s
PASS
ok  	memscope/analyzer/engine	12.3s
`

func TestParseGoBench(t *testing.T) {
	got := parseGoBench(goBenchOutput)
	want := []benchMetric{
		{Benchmark: "BenchmarkApply", Unit: "ns/op", Values: []float64{41.5, 45, 43}, Median: 43},
		{Benchmark: "BenchmarkApply", Unit: "events/s", Values: []float64{24096385, 22222222, 23255814}, Median: 23255814},
		{Benchmark: "BenchmarkApply", Unit: "B/live-block", Values: []float64{40, 40, 41}, Median: 40},
		{Benchmark: "BenchmarkDecode", Unit: "ns/op", Values: []float64{12000, 14000}, Median: 13000},
		{Benchmark: "BenchmarkDecode", Unit: "Mevents/s", Values: []float64{55.5, 54.5}, Median: 55},
	}
	require.Equal(t, want, got)

	tests := []struct {
		m          benchMetric
		events     float64
		isEvents   bool
		perBlock   float64
		isPerBlock bool
	}{
		{m: got[0]},
		{m: got[1], events: 23255814, isEvents: true},
		{m: got[2], perBlock: 40, isPerBlock: true},
		{m: got[4], events: 55e6, isEvents: true},
		{m: benchMetric{Unit: "bytes/live", Median: 33}, perBlock: 33, isPerBlock: true},
		{m: benchMetric{Unit: "live-blocks", Median: 33}},
		{m: benchMetric{Unit: "Mrecords/s", Median: 21.5}, events: 21.5e6, isEvents: true},
		{m: benchMetric{Unit: "allocs/op", Median: 3}},
		// The heaptrack comparison's unit: no second >= 20 M row.
		{m: benchMetric{Unit: "Mcalls/cpu-s", Median: 11}},
	}
	for _, tt := range tests {
		v, ok := eventsPerSecond(tt.m)
		assert.Equal(t, tt.isEvents, ok, tt.m.Unit)
		assert.Equal(t, tt.events, v, tt.m.Unit)
		v, ok = bytesPerLiveBlock(tt.m)
		assert.Equal(t, tt.isPerBlock, ok, tt.m.Unit)
		assert.Equal(t, tt.perBlock, v, tt.m.Unit)
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		status string
		want   procStatus
		ok     bool
	}{
		{"Name:\tmemscope-analyze\nVmPeak:\t  800000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\nRssAnon:\t   27000 kB\nRssShmem:\t 65540 kB\n",
			procStatus{hwm: 12345 * 1024, anon: 27000 * 1024}, true},
		{"Name:\tzombie\nState:\tZ (zombie)\n", procStatus{}, false},
		{"VmHWM:\t  12 MB\n", procStatus{}, false},
	}
	for _, tt := range tests {
		got, ok := parseStatus([]byte(tt.status))
		assert.Equal(t, tt.ok, ok, tt.status)
		assert.Equal(t, tt.want, got, tt.status)
	}
}

func TestReadLeakReports(t *testing.T) {
	tests := []struct {
		name       string
		files      map[string]string
		wantErr    string
		reports    int
		dropped    int64
		incomplete int
	}{
		{
			name: "two processes",
			files: map[string]string{
				"memscope.app.10.leaks.json": `{"version":1,"pid":10,"complete":true,"totals":{"allocations":5,"dropped_events":0}}`,
				"memscope.app.11.leaks.json": `{"version":1,"pid":11,"complete":false,"totals":{"dropped_events":7}}`,
				"memscope.app.10.leaks.txt":  "not json",
			},
			reports: 2, dropped: 7, incomplete: 1,
		},
		{
			name:    "no totals",
			files:   map[string]string{"memscope.app.12.leaks.json": `{"version":1,"complete":true}`},
			wantErr: "memscope.app.12.leaks.json: no totals.dropped_events or complete field",
		},
		{
			name:    "truncated",
			files:   map[string]string{"memscope.app.13.leaks.json": `{"version":1,`},
			wantErr: "memscope.app.13.leaks.json: unexpected end of JSON input",
		},
		{name: "none", files: map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tt.files {
				require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
			}
			var s sample
			err := readLeakReports(dir, &s)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.reports, s.Reports)
			assert.Equal(t, tt.dropped, s.Dropped)
			assert.Equal(t, tt.incomplete, s.Incomplete)
		})
	}
}

func TestRunOnce(t *testing.T) {
	s, err := runOnce([]string{"/bin/sh", "-c", "exit 0"}, nil, true, 0)
	require.NoError(t, err)
	assert.Greater(t, s.Seconds, 0.0)
	assert.Greater(t, s.WaitMaxRSS, uint64(0))

	_, err = runOnce([]string{"/bin/sh", "-c", "echo broken >&2; exit 3"}, nil, false, 0)
	require.EqualError(t, err, "/bin/sh -c echo broken >&2; exit 3: exit status 3; stderr ends with:\nbroken\n")

	// A run over its limit is killed with its whole process group (a
	// hung child, as heaptrack's deadlocked fork children, included).
	start := time.Now()
	_, err = runOnce([]string{"/bin/sh", "-c", "sleep 30 & wait"}, nil, false, 300*time.Millisecond)
	require.EqualError(t, err, "/bin/sh -c sleep 30 & wait: killed after 300ms (hung); stderr ends with:\n")
	assert.Less(t, time.Since(start), 10*time.Second)
}

func TestScalingRows(t *testing.T) {
	mk := func(id string, secs ...float64) *workload {
		w := &workload{id: id}
		for _, s := range secs {
			w.samples[bare] = append(w.samples[bare], sample{Seconds: s})
			w.samples[memscope] = append(w.samples[memscope], sample{Seconds: 2 * s})
		}
		return w
	}
	rows := scalingRows(map[string]*workload{
		"threads1": mk("threads1", 1.0, 1.2, 0.8),
		"threads2": mk("threads2", 1.25, 1.0, 2.0),
		"threads4": mk("threads4", 2.0, 2.0, 2.0),
	})
	require.Len(t, rows, 2)
	// 2 threads: 2*1.0/1.25; 4 threads: 4*1.0/2.0.
	assert.InDelta(t, 1.6, *rows[0].Bare, 1e-12)
	assert.InDelta(t, 1.6, *rows[0].Memscope, 1e-12)
	assert.Nil(t, rows[0].Heaptrack)
	assert.False(t, *rows[0].GoalMet)
	assert.InDelta(t, 2.0, *rows[1].Bare, 1e-12)
	assert.Nil(t, rows[1].GoalMet)
}

// TestUnsteadyNotes: a row whose bare runs are more than maxBareSpread
// apart is called disturbed, per run (a startup row times batches).
func TestUnsteadyNotes(t *testing.T) {
	mk := func(name string, repeat int, secs ...float64) *workload {
		w := &workload{name: name}
		w.repeat[bare] = repeat
		for _, s := range secs {
			w.samples[bare] = append(w.samples[bare], sample{Seconds: s})
		}
		return w
	}
	notes := unsteadyNotes([]*workload{
		mk("micro depth 10", 0, 0.067, 0.125, 0.070),
		mk("steady", 0, 1.0, 1.2, 1.1),
		mk("startup /bin/true", 200, 0.4, 0.6),
		mk("one run", 0, 0.5),
	})
	assert.Equal(t, []string{
		"WARNING: micro depth 10: the bare runs took 67 ms to 125 ms: the machine's speed changed during the row; its ratios are disturbed, rerun it",
		"WARNING: startup /bin/true: the bare runs took 2.00 ms to 3.00 ms: the machine's speed changed during the row; its ratios are disturbed, rerun it",
	}, notes)
}

func TestParseProcStatBusy(t *testing.T) {
	busy, err := parseProcStatBusy("cpu  100 5 50 9000 30 2 3 10 0 0\ncpu0 50 2 25 4500 15 1 1 5 0 0\n")
	require.NoError(t, err)
	assert.InDelta(t, 1.70, busy, 1e-9) // (100+5+50+2+3+10)/100

	_, err = parseProcStatBusy("intr 1 2 3\n")
	require.EqualError(t, err, `/proc/stat: unexpected first line "intr 1 2 3"`)
}

// A heaptrack raw trace, abridged: 3 allocations ("+"), 2 frees ("-"),
// and lines that are neither (a "+" without a space is not a call).
const rawTrace = `v 10400 3
X /bin/prog 1
t 1 0
+ 20 1 55d0c2a1b2a0
+ 40 1 55d0c2a1b300
- 55d0c2a1b2a0
+x
c 2 0
+ 20 1 55d0c2a1b2a0
- 55d0c2a1b300
`

func TestUnpackRawTrace(t *testing.T) {
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, err := zw.Write([]byte(rawTrace))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	tests := []struct {
		name    string
		file    string // written beside prefix.raw; "" for none
		data    []byte
		calls   int64
		wantErr string
	}{
		{name: "plain", file: ".raw", data: []byte(rawTrace), calls: 5},
		{name: "gzip", file: ".raw.gz", data: gz.Bytes(), calls: 5},
		{name: "corrupt gzip", file: ".raw.gz", data: []byte("this is not a gzip stream"), wantErr: "prog.raw.gz: gzip: invalid header"},
		{name: "none", wantErr: "heaptrack wrote no raw trace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := filepath.Join(t.TempDir(), "prog")
			if tt.file != "" {
				require.NoError(t, os.WriteFile(prefix+tt.file, tt.data, 0o600))
			}
			calls, err := unpackRawTrace(prefix + ".raw")
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.calls, calls)
			got, err := os.ReadFile(prefix + ".raw")
			require.NoError(t, err)
			assert.Equal(t, rawTrace, string(got))
		})
	}
}

func TestRingWait(t *testing.T) {
	tests := []struct {
		stderr string
		want   time.Duration
	}{
		{"", 0},
		{"memscope: pid 1 (x) exit status 0\n", 0},
		{"prog output\nmemscope: traced threads waited 46.85ms in all for ring space (the ring was full 1 time(s)); a ring larger than 64.0 MiB (--ring-size) lets them run on\n", 46850 * time.Microsecond},
		{"memscope: traced threads waited 1.5s in all for ring space (the ring was full 9 time(s)); ...", 1500 * time.Millisecond},
		{"memscope: traced threads waited soon in all", 0},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, ringWait(tt.stderr), "%q", tt.stderr)
	}
}
