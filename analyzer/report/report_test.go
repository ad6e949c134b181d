package report

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/pprof/profile"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/analyzer/engine"
	"memscope/analyzer/reach"
	"memscope/analyzer/symbolize"
	"memscope/shm"
)

// tableSymbolizer answers from a table of (module path, file address); it
// stands in for the DWARF reader, which has its own tests.
type tableSymbolizer map[symKey][]symbolize.Frame

func (t tableSymbolizer) Symbolize(m symbolize.Module, addr uint64) ([]symbolize.Frame, error) {
	if f, ok := t[symKey{path: m.Path, buildID: string(m.BuildID), fileAddr: addr}]; ok {
		return f, nil
	}
	return []symbolize.Frame{{}}, nil
}

const (
	pid, ppid     = 1234, 1200
	mainTid       = 1234
	workerTid     = 1235
	appBias       = 0x555500000000
	selfBias      = 0x7f0000000000
	fooBias       = 0x7f1000000000
	pcHook        = 0x7f0000001100
	pcMakeNode    = 0x5555000011c9
	pcMain        = 0x5555000012f0
	pcInlined     = 0x555500001400
	pcSuppressMe  = 0x555500001500
	pcFooUnknown  = 0x7f1000002010
	pcFooInit     = 0x7f1000002020
	stackNode     = 0x11
	stackList     = 0x22
	stackFoo      = 0x33
	stackSuppress = 0x44
	appPath       = "/abs/path/app"
	fooPath       = "/usr/lib/libfoo.so"
	selfPath      = "/opt/memscope/build/libmemscope.so"
	ms            = uint64(time.Millisecond)
)

var appBuildID = []byte{0xde, 0xad, 0xbe, 0xef}

func symbols() *Symbols {
	return NewSymbols(tableSymbolizer{
		{appPath, string(appBuildID), 0x11c8}: {{Function: "make_node", File: "/src/list.c", Line: 12}},
		{appPath, string(appBuildID), 0x12ef}: {{Function: "main", File: "/src/list.c", Line: 40}},
		{appPath, string(appBuildID), 0x13ff}: {{Function: "helper", File: "/src/list.h", Line: 5, Inlined: true}, {Function: "make_list", File: "/src/list.c", Line: 20}},
		{appPath, string(appBuildID), 0x14ff}: {{Function: "suppress_me", File: "/src/third_party.c", Line: 7}},
		{fooPath, "\x01\x02", 0x201f}:         {{Function: "foo_init"}},
		{selfPath, "", 0x10ff}:                {{Function: "malloc", File: "/memscope/preload/hooks.c", Line: 1}},
	})
}

type recs struct {
	t   *testing.T
	all []shm.Record
}

func (r *recs) add(tid uint32, b []byte) {
	rec, err := shm.ParseRecordHeader(b)
	require.NoError(r.t, err)
	rec.Pid, rec.Tid = pid, tid
	r.all = append(r.all, rec)
}

func (r *recs) malloc(tid uint32, ts, ptr, size, stack uint64) {
	r.add(tid, shm.AppendAlloc(nil, ts, shm.Alloc{Ptr: ptr, Size: size, StackID: stack, Kind: shm.KindMalloc}))
}

func (r *recs) free(tid uint32, ts, ptr uint64) {
	r.add(tid, shm.AppendFree(nil, ts, shm.Free{Ptr: ptr}))
}

// syntheticProcess is a process with known leaks, built from encoded
// records through the engine.
func syntheticProcess(t *testing.T, lost uint64) *engine.Process {
	e := syntheticEngine(t, lost)
	e.SetNotChecked(pid, "the process did not wait for the check at exit")
	p := e.EndProcess(pid, engine.ExitStatus{Known: true, Code: 0})
	require.NotNil(t, p)
	return p
}

// syntheticEngine holds syntheticProcess before its end.
func syntheticEngine(t *testing.T, lost uint64) *engine.Engine {
	r := &recs{t: t}
	r.add(mainTid, shm.AppendProcess(nil, 1*ms, shm.Process{Pid: pid, Ppid: ppid, Event: shm.ProcessStart, Exe: appPath, Arg0: "app"}))
	r.add(mainTid, shm.AppendModule(nil, 1*ms, shm.Module{Bias: appBias, Event: shm.ModuleLoad, BuildID: appBuildID, Path: "",
		Segments: []shm.Segment{{Vaddr: 0, Memsz: 0x1000, Offset: 0, Flags: 4}, {Vaddr: 0x1000, Memsz: 0x2000, Offset: 0x1000, Flags: 5}}}))
	r.add(mainTid, shm.AppendModule(nil, 1*ms, shm.Module{Bias: selfBias, Event: shm.ModuleLoad, Path: selfPath,
		Segments: []shm.Segment{{Vaddr: 0x1000, Memsz: 0x1000, Offset: 0x1000, Flags: 5}}}))
	r.add(mainTid, shm.AppendModule(nil, 1*ms, shm.Module{Bias: fooBias, Event: shm.ModuleLoad, BuildID: []byte{1, 2}, Path: fooPath,
		Segments: []shm.Segment{{Vaddr: 0x2000, Memsz: 0x1000, Offset: 0x2000, Flags: 5}}}))
	r.add(mainTid, shm.AppendThread(nil, 1*ms, shm.Thread{Tid: mainTid, Name: "app"}))
	r.add(workerTid, shm.AppendThread(nil, 1*ms, shm.Thread{Tid: workerTid, Name: "worker"}))
	for _, s := range []shm.Stack{
		{ID: stackNode, PCs: []uint64{pcHook, pcMakeNode, pcMain}},
		{ID: stackList, PCs: []uint64{pcInlined, pcMain}},
		{ID: stackFoo, PCs: []uint64{pcFooUnknown, pcFooInit, pcMain}},
		{ID: stackSuppress, PCs: []uint64{pcSuppressMe, pcMain}},
	} {
		r.add(mainTid, shm.AppendStack(nil, 2*ms, 0, s))
	}
	r.malloc(mainTid, 10*ms, 0x1000, 300, stackNode)
	r.malloc(mainTid, 11*ms, 0x2000, 50, stackNode)
	r.free(mainTid, 12*ms, 0x2000) // temporary
	r.malloc(mainTid, 13*ms, 0x3000, 150, stackList)
	r.malloc(workerTid, 14*ms, 0x4000, 150, stackList)
	r.malloc(workerTid, 15*ms, 0x5000, 24, stackFoo)
	r.malloc(mainTid, 16*ms, 0x6000, 1000, stackSuppress)
	r.malloc(mainTid, 17*ms, 0x7000, 4000, stackNode) // peak: 5624 bytes
	r.free(workerTid, 18*ms, 0x9999)                  // unknown
	r.free(mainTid, 19*ms, 0x7000)                    // temporary
	if lost > 0 {
		r.add(workerTid, shm.AppendLost(nil, 20*ms, shm.Lost{Count: lost}))
	}
	e := engine.New(engine.Options{})
	for _, rec := range r.all {
		require.NoError(t, e.Apply(rec))
	}
	return e
}

// TestLeakVerdicts: LeakVerdicts symbolizes the leaked groups only, and
// ResolveReachable then gives Leaks's report, order included.
func TestLeakVerdicts(t *testing.T) {
	e := syntheticEngine(t, 0)
	e.Flush()
	blocks := e.LiveBlocks(pid)
	kinds := make([]reach.Kind, len(blocks.Extents))
	for i := range kinds {
		kinds[i] = []reach.Kind{reach.Reachable, reach.Direct, reach.Reachable}[i%3]
	}
	e.SetReachability(pid, blocks, kinds)
	p := e.EndProcess(pid, engine.ExitStatus{Known: true})
	want := Leaks(p, symbols(), suppressions(t))
	got := LeakVerdicts(p, symbols(), suppressions(t))
	reachable := 0
	for _, l := range got.Leaks {
		if l.Kind == reach.Reachable {
			reachable++
			assert.Nil(t, l.Frames, "a reachable group, not symbolized")
		} else {
			assert.NotEmpty(t, l.Frames, "a leaked group, symbolized")
		}
	}
	require.NotZero(t, reachable)
	assert.Equal(t, want.UnsuppressedBytes, got.UnsuppressedBytes)
	assert.Equal(t, want.ByKind, got.ByKind)
	got.ResolveReachable(p, symbols())
	assert.Equal(t, want, got)
}

func suppressions(t *testing.T) *Suppressions {
	s, err := ParseSuppressions(strings.NewReader("# third-party code\nleak:suppress_me\n\nleak:never_matches\n"), "supp.txt")
	require.NoError(t, err)
	return s
}

func TestLeakText(t *testing.T) {
	p := syntheticProcess(t, 0)
	var b bytes.Buffer
	require.NoError(t, Leaks(p, symbols(), suppressions(t)).WriteText(&b))
	assert.Equal(t, `==1234==memscope: detected memory leaks
==1234==WARNING: memscope: reachability not checked: the process did not wait for the check at exit; every block still allocated is listed as a leak.

Leak of 300 byte(s) in 2 object(s) allocated from:
    #0 0x555500001400 in helper /src/list.h:5
    #1 0x555500001400 in make_list /src/list.c:20
    #2 0x5555000012f0 in main /src/list.c:40

Leak of 300 byte(s) in 1 object(s) allocated from:
    #0 0x5555000011c9 in make_node /src/list.c:12
    #1 0x5555000012f0 in main /src/list.c:40

Leak of 24 byte(s) in 1 object(s) allocated from:
    #0 0x7f1000002010 (/usr/lib/libfoo.so+0x2010)
    #1 0x7f1000002020 in foo_init (/usr/lib/libfoo.so+0x2020)
    #2 0x5555000012f0 in main /src/list.c:40

-----------------------------------------------------
Suppressions used:
  count      bytes template
      1       1000 suppress_me
-----------------------------------------------------

SUMMARY: memscope: 624 byte(s) leaked in 4 allocation(s).
`, b.String())
}

func TestLeakTextIncompleteAndNoLeaks(t *testing.T) {
	p := syntheticProcess(t, 5)
	var b bytes.Buffer
	supp, err := ParseSuppressions(strings.NewReader("leak:main\n"), "all")
	require.NoError(t, err)
	require.NoError(t, Leaks(p, symbols(), supp).WriteText(&b))
	assert.Equal(t, `==1234==memscope: no leaks detected
==1234==WARNING: memscope: reachability not checked: the process did not wait for the check at exit; every block still allocated is listed as a leak.
==1234==WARNING: memscope: 5 event(s) were dropped; this report is incomplete.

-----------------------------------------------------
Suppressions used:
  count      bytes template
      5       1624 main
-----------------------------------------------------

SUMMARY: memscope: 0 byte(s) leaked in 0 allocation(s).
`, b.String())
}

// TestLeakIncompleteReasons: every reason a report is incomplete is said
// in the text report, and listed in JSON, dropped events first.
func TestLeakIncompleteReasons(t *testing.T) {
	p := syntheticProcess(t, 5)
	r := Leaks(p, symbols(), suppressions(t))
	r.MarkIncomplete("the ring was taken over")
	assert.False(t, r.Complete)
	var text, js bytes.Buffer
	require.NoError(t, r.WriteText(&text))
	assert.Contains(t, text.String(), "==1234==WARNING: memscope: 5 event(s) were dropped; this report is incomplete.\n"+
		"==1234==WARNING: memscope: this report is incomplete: the ring was taken over.\n")
	require.NoError(t, r.WriteJSON(&js))
	assert.Contains(t, js.String(), `"complete":false,"incomplete":["5 event(s) were dropped","the ring was taken over"],"totals":`)
}

func TestLeakTextLateEvents(t *testing.T) {
	p := syntheticProcess(t, 0)
	p.Totals.LateEvents = 3
	var b bytes.Buffer
	require.NoError(t, Leaks(p, symbols(), suppressions(t)).WriteText(&b))
	first, rest, _ := strings.Cut(b.String(), "\n")
	_, rest, _ = strings.Cut(rest, "\n") // reachability not checked
	second, _, _ := strings.Cut(rest, "\n")
	assert.Equal(t, "==1234==memscope: detected memory leaks", first)
	assert.Equal(t, "==1234==WARNING: memscope: 3 event(s) were applied out of time order (a thread stalled longer than the reorder window); leaks and totals are exact, the peak may count blocks freed meanwhile.", second)
}

func TestLeakJSON(t *testing.T) {
	p := syntheticProcess(t, 0)
	var b bytes.Buffer
	r := Leaks(p, symbols(), suppressions(t))
	require.NoError(t, r.WriteJSON(&b))
	assert.Equal(t, `{"version":1,"pid":1234,"ppid":1200,"program":"/abs/path/app","exit_status":0,"complete":true,`+
		`"totals":{"allocations":7,"frees":2,"bytes_allocated":5674,"peak_bytes":5624,"temporary_allocations":2,"dropped_events":0,"unrecorded_calls":0,"unknown_frees":1,"late_events":0},`+
		`"leaked_bytes":1624,"leaked_objects":5,"reachability":"not checked: the process did not wait for the check at exit",`+
		`"direct_bytes":0,"direct_objects":0,"indirect_bytes":0,"indirect_objects":0,"reachable_bytes":0,"reachable_objects":0,"leaks":[`+
		`{"kind":"unknown","bytes":1000,"objects":1,"suppressed":true,"frames":[`+
		`{"address":"0x555500001500","function":"suppress_me","file":"/src/third_party.c","line":7,"module":"/abs/path/app"},`+
		`{"address":"0x5555000012f0","function":"main","file":"/src/list.c","line":40,"module":"/abs/path/app"}]},`+
		`{"kind":"unknown","bytes":300,"objects":2,"suppressed":false,"frames":[`+
		`{"address":"0x555500001400","function":"helper","file":"/src/list.h","line":5,"module":"/abs/path/app"},`+
		`{"address":"0x555500001400","function":"make_list","file":"/src/list.c","line":20,"module":"/abs/path/app"},`+
		`{"address":"0x5555000012f0","function":"main","file":"/src/list.c","line":40,"module":"/abs/path/app"}]},`+
		`{"kind":"unknown","bytes":300,"objects":1,"suppressed":false,"frames":[`+
		`{"address":"0x5555000011c9","function":"make_node","file":"/src/list.c","line":12,"module":"/abs/path/app"},`+
		`{"address":"0x5555000012f0","function":"main","file":"/src/list.c","line":40,"module":"/abs/path/app"}]},`+
		`{"kind":"unknown","bytes":24,"objects":1,"suppressed":false,"frames":[`+
		`{"address":"0x7f1000002010","function":"","file":"","line":0,"module":"/usr/lib/libfoo.so"},`+
		`{"address":"0x7f1000002020","function":"foo_init","file":"","line":0,"module":"/usr/lib/libfoo.so"},`+
		`{"address":"0x5555000012f0","function":"main","file":"/src/list.c","line":40,"module":"/abs/path/app"}]}]}`+"\n", b.String())
	assert.Equal(t, uint64(624), r.UnsuppressedBytes)
	assert.Equal(t, uint64(4), r.UnsuppressedObjects)
	assert.Equal(t, p.Totals.Allocations-p.Totals.Frees, r.LeakedObjects)
}

func TestExitStatusJSON(t *testing.T) {
	for _, tc := range []struct {
		exit engine.ExitStatus
		want string
	}{
		{engine.ExitStatus{Known: true, Code: 3}, `"exit_status":3,`},
		{engine.ExitStatus{Known: true, Signal: 6}, `"exit_status":134,`},
		{engine.ExitStatus{}, `"exit_status":null,`},
	} {
		var b bytes.Buffer
		require.NoError(t, (&LeakReport{Exit: tc.exit, Complete: true}).WriteJSON(&b))
		assert.Contains(t, b.String(), tc.want)
		assert.Contains(t, b.String(), `"leaks":[]`)
	}
}

// flatByLeaf sums a sample value by the innermost function of each sample.
func flatByLeaf(t *testing.T, p *profile.Profile, index string) map[string]int64 {
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == index {
			idx = i
		}
	}
	require.GreaterOrEqual(t, idx, 0)
	out := map[string]int64{}
	for _, s := range p.Sample {
		if v := s.Value[idx]; v != 0 {
			out[s.Location[0].Line[0].Function.Name] += v
		}
	}
	return out
}

func TestPprof(t *testing.T) {
	p := syntheticProcess(t, 0)
	syms := symbols()
	for _, tc := range []struct {
		inuse     Inuse
		wantInuse map[string]int64
	}{
		{InuseAtExit, map[string]int64{"helper": 300, "make_node": 300, "/usr/lib/libfoo.so+0x2010": 24, "suppress_me": 1000}},
		{InuseAtPeak, map[string]int64{"helper": 300, "make_node": 4300, "/usr/lib/libfoo.so+0x2010": 24, "suppress_me": 1000}},
	} {
		var b bytes.Buffer
		require.NoError(t, WriteProfile(&b, p, syms, tc.inuse, ProfileOptions{}))
		prof, err := profile.Parse(&b)
		require.NoError(t, err)
		require.NoError(t, prof.CheckValid())
		assert.Equal(t, "inuse_space", prof.DefaultSampleType)
		var types []string
		for _, st := range prof.SampleType {
			types = append(types, st.Type+"/"+st.Unit)
		}
		assert.Equal(t, []string{"alloc_objects/count", "alloc_space/bytes", "inuse_objects/count", "inuse_space/bytes"}, types)
		assert.Equal(t, tc.wantInuse, flatByLeaf(t, prof, "inuse_space"))
		assert.Equal(t, map[string]int64{"helper": 300, "make_node": 4350, "/usr/lib/libfoo.so+0x2010": 24, "suppress_me": 1000}, flatByLeaf(t, prof, "alloc_space"))
		assert.Equal(t, map[string]int64{"helper": 2, "make_node": 3, "/usr/lib/libfoo.so+0x2010": 1, "suppress_me": 1}, flatByLeaf(t, prof, "alloc_objects"))

		// Threads are labels; the list site has a sample per thread.
		threads := map[string]int64{}
		for _, s := range prof.Sample {
			if s.Location[0].Line[0].Function.Name == "helper" {
				threads[s.Label["thread"][0]] += s.Value[3]
			}
		}
		assert.Equal(t, map[string]int64{"app": 150, "worker": 150}, threads)

		// No frame of libmemscope; inlined lines innermost first.
		for _, l := range prof.Location {
			for _, ln := range l.Line {
				assert.NotEqual(t, "malloc", ln.Function.Name)
			}
			if l.Address == pcInlined {
				require.Len(t, l.Line, 2)
				assert.Equal(t, "helper", l.Line[0].Function.Name)
				assert.Equal(t, "/src/list.h", l.Line[0].Function.Filename)
				assert.Equal(t, int64(5), l.Line[0].Line)
				assert.Equal(t, "make_list", l.Line[1].Function.Name)
			}
		}
		var maps []string
		for _, m := range prof.Mapping {
			maps = append(maps, m.File+" "+m.BuildID+" "+hexs(m.Start, m.Limit, m.Offset))
		}
		assert.ElementsMatch(t, []string{
			"/abs/path/app deadbeef 0x555500001000-0x555500003000@0x1000",
			"/usr/lib/libfoo.so 0102 0x7f1000002000-0x7f1000003000@0x2000",
		}, maps)
	}
}

// TestProfilesShareTables: the two profiles Profiles builds with shared
// locations, encoded one after the other by one ProfileWriter, are the
// profiles WriteProfile writes for each alone (the second's string table
// keeps the first's strings: the bytes differ).
func TestProfilesShareTables(t *testing.T) {
	p := syntheticProcess(t, 0)
	syms := symbols()
	opts := ProfileOptions{TimeNanos: 1234}
	atExit, atPeak := Profiles(p, syms, opts)
	var pw ProfileWriter
	for _, tc := range []struct {
		inuse Inuse
		prof  *profile.Profile
	}{{InuseAtExit, atExit}, {InuseAtPeak, atPeak}, {InuseAtExit, atExit}} {
		var want, got bytes.Buffer
		require.NoError(t, WriteProfile(&want, p, syms, tc.inuse, opts))
		require.NoError(t, pw.Write(&got, tc.prof))
		assert.Equal(t, profileText(t, unzip(t, want.Bytes())), profileText(t, unzip(t, got.Bytes())), "inuse %d", tc.inuse)
	}
}

func unzip(t *testing.T, b []byte) []byte {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	out, err := io.ReadAll(zr)
	require.NoError(t, err)
	return out
}

func hexs(start, limit, off uint64) string { return fmt.Sprintf("%#x-%#x@%#x", start, limit, off) }

// TestGoToolPprofTop runs the real `go tool pprof -top` on a written file.
func TestGoToolPprofTop(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	p := syntheticProcess(t, 0)
	dir := t.TempDir()
	syms := symbols()
	require.NoError(t, WriteFileAtomic(dir, FileBase(p)+".pb.gz", func(w io.Writer) error {
		return WriteProfile(w, p, syms, InuseAtExit, ProfileOptions{})
	}))
	out, err := exec.Command(gobin, "tool", "pprof", "-top", filepath.Join(dir, "memscope.app.1234.pb.gz")).CombinedOutput()
	require.NoError(t, err, string(out))
	text := string(out)
	for _, want := range []string{"Type: inuse_space", "1000B", "suppress_me", "300B", "make_node", "helper", "24B"} {
		assert.Contains(t, text, want)
	}
}

func TestTemplateMatch(t *testing.T) {
	tests := []struct {
		templ, str string
		want       bool
	}{
		{"make_node", "make_node", true},
		{"node", "make_node", true}, // substring
		{"^make", "make_node", true},
		{"^node", "make_node", false},
		{"node$", "make_node", true},
		{"make$", "make_node", false},
		{"^make_node$", "make_node", true},
		{"^make_node$", "make_node2", false},
		{"make*node", "make_a_node", true},
		{"make*node", "node_make", false},
		{"^std::*allocator", "std::__1::allocator<int>", true},
		{"*", "anything", true},
		{"libfoo.so", "/usr/lib/libfoo.so", true},
		{"^/usr/lib/", "/usr/lib/libfoo.so", true},
		{"list.c", "/src/list.c", true},
		{"x", "", false}, // empty strings never match
		{"a*$", "abc", true},
		{"c$", "abc", true},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, TemplateMatch(tc.templ, tc.str), "%q vs %q", tc.templ, tc.str)
	}
}

func TestParseSuppressions(t *testing.T) {
	s, err := ParseSuppressions(strings.NewReader("  # c\nleak:a*b\n\tleak: ^c$ \n"), "f")
	require.NoError(t, err)
	assert.Equal(t, []string{"a*b", "^c$"}, s.Patterns)
	for _, bad := range []struct{ text, msg string }{
		{"leak:a\nnocolon\n", `f:2: "nocolon" is not TYPE:PATTERN`},
		{"race:x\n", `f:1: suppression type "race" is not supported (only leak:)`},
		{"leak:\n", "f:1: empty pattern"},
	} {
		_, err := ParseSuppressions(strings.NewReader(bad.text), "f")
		require.Error(t, err)
		assert.Equal(t, bad.msg, err.Error())
	}
	// Matching on function, file or module of any frame.
	frames := []Frame{{Function: "f1", File: "/src/a.c", Module: "/bin/app"}, {Function: "g2", File: "/src/b.c", Module: "/lib/libz.so"}}
	for _, tc := range []struct {
		pat  string
		want bool
	}{{"g2", true}, {"b.c", true}, {"libz", true}, {"^/lib/", true}, {"h3", false}, {"^f1$", true}, {"^a.c", false}} {
		_, ok := (&Suppressions{Patterns: []string{tc.pat}}).Match(frames)
		assert.Equal(t, tc.want, ok, tc.pat)
	}
}

func TestTrace(t *testing.T) {
	p := syntheticProcess(t, 0)
	var b bytes.Buffer
	require.NoError(t, WriteTrace(&b, p, []RSSSample{{TS: p.StartTS + 2500, Bytes: 4096}}))
	var doc struct {
		TraceEvents []struct {
			Name string         `json:"name"`
			Ph   string         `json:"ph"`
			TS   float64        `json:"ts"`
			Pid  int            `json:"pid"`
			Args map[string]any `json:"args"`
		} `json:"traceEvents"`
	}
	require.NoError(t, json.Unmarshal(b.Bytes(), &doc))
	heap := map[float64]float64{}
	var rss, peaks int
	for _, ev := range doc.TraceEvents {
		assert.Equal(t, pid, ev.Pid)
		switch {
		case ev.Ph == "C" && ev.Name == "heap":
			heap[ev.TS] = ev.Args["bytes"].(float64)
		case ev.Ph == "C" && ev.Name == "rss":
			rss++
			assert.Equal(t, 2.5, ev.TS)
		case ev.Ph == "i":
			peaks++
			assert.Equal(t, float64(16000), ev.TS) // 17 ms - start at 1 ms
		}
	}
	// Samples on 10 ms multiples, before the event that crosses them (the
	// process starts at 1 ms: 0 ms is clamped to 0 µs), and the last at 19 ms.
	assert.Equal(t, map[float64]float64{0: 0, 9000: 0, 18000: 1624}, heap)
	assert.Equal(t, 1, rss)
	assert.Equal(t, 1, peaks)
}

func TestSummary(t *testing.T) {
	p := syntheticProcess(t, 0)
	var b bytes.Buffer
	require.NoError(t, WriteSummary(&b, p, Leaks(p, symbols(), suppressions(t)), []string{"memscope.app.1234.pb.gz"}))
	assert.Equal(t, `memscope: pid 1234 (app) exited with status 0
  heap usage: 7 allocs, 2 frees, 5.5 KiB (5674 bytes) allocated, 2 temporary
  peak heap:  5.5 KiB (5624 bytes) in 6 objects at +16ms
  leaked:     1.6 KiB (1624 bytes) in 5 objects (1000 B in 1 objects suppressed)
  reachability not checked: the process did not wait for the check at exit
    unknown: 300 B in 2 objects from 0x555500001400 in helper /src/list.h:5
    unknown: 300 B in 1 objects from 0x5555000011c9 in make_node /src/list.c:12
    unknown: 24 B in 1 objects from 0x7f1000002010 (/usr/lib/libfoo.so+0x2010)
  dropped events: 0
  frees of unknown blocks: 1, late events: 0
  wrote memscope.app.1234.pb.gz
`, b.String())
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, WriteFileAtomic(dir, "out.txt", func(w io.Writer) error {
		_, err := io.WriteString(w, "hello\n")
		return err
	}))
	got, err := os.ReadFile(filepath.Join(dir, "out.txt"))
	require.NoError(t, err)
	assert.Equal(t, "hello\n", string(got))

	// A failing writer leaves the old file and no temporary behind.
	err = WriteFileAtomic(dir, "out.txt", func(w io.Writer) error {
		io.WriteString(w, "partial")
		return os.ErrInvalid
	})
	require.ErrorIs(t, err, os.ErrInvalid)
	got, _ = os.ReadFile(filepath.Join(dir, "out.txt"))
	assert.Equal(t, "hello\n", string(got))
	entries, _ := os.ReadDir(dir)
	require.Len(t, entries, 1)

	// A symlink at the final name is refused and not followed.
	target := filepath.Join(dir, "target")
	require.NoError(t, os.WriteFile(target, []byte("keep"), 0o600))
	require.NoError(t, os.Symlink(target, filepath.Join(dir, "link.txt")))
	err = WriteFileAtomic(dir, "link.txt", func(w io.Writer) error { return nil })
	require.Error(t, err)
	assert.Contains(t, err.Error(), "symbolic link")
	got, _ = os.ReadFile(target)
	assert.Equal(t, "keep", string(got))
	fi, err := os.Lstat(filepath.Join(dir, "link.txt"))
	require.NoError(t, err)
	assert.NotZero(t, fi.Mode()&os.ModeSymlink)

	// Bad names and unwritable directories give errors.
	require.Error(t, WriteFileAtomic(dir, "../x", func(w io.Writer) error { return nil }))
	require.Error(t, WriteFileAtomic(filepath.Join(dir, "missing"), "x", func(w io.Writer) error { return nil }))
	entries, _ = os.ReadDir(dir)
	assert.Len(t, entries, 3)
}

func TestFileBase(t *testing.T) {
	assert.Equal(t, "memscope.app.1234", FileBase(&engine.Process{Pid: 1234, Exe: "/abs/path/app"}))
	assert.Equal(t, "memscope.my_prog.7", FileBase(&engine.Process{Pid: 7, Argv0: "./my prog"}))
	assert.Equal(t, "memscope.unknown.8", FileBase(&engine.Process{Pid: 8}))
	assert.Equal(t, "memscope.unknown.9", FileBase(&engine.Process{Pid: 9, Exe: "/"}))
}

func TestSymbolWarningText(t *testing.T) {
	noDebug := fmt.Errorf("module /usr/bin/x: %w (no debug sections, no separate debug file at ...)", symbolize.ErrNoDebugInfo)
	pkgs := map[string]string{"/usr/bin/x": "x-dbgsym"}
	tests := []struct {
		w    SymbolWarning
		want string
	}{
		{SymbolWarning{"/usr/bin/x", noDebug}, "no debug info for /usr/bin/x: its frames have functions, no file:line (install x-dbgsym)"},
		{SymbolWarning{"/nonexistent/x", noDebug}, "no debug info for /nonexistent/x: its frames have functions, no file:line"},
		{SymbolWarning{"/usr/bin/x", symbolize.ErrNoSymbols}, "no symbols for /usr/bin/x: its frames are addresses (install x-dbgsym)"},
		{SymbolWarning{"/x", errors.New("bad ELF")}, "/x: bad ELF"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, tt.w.Text(pkgs))
	}
}

// TestDebugPackages asks the real dpkg, once for every module, and
// compares with dpkg-query run by hand (libevent_core: the loader's name
// for a file dpkg knows under /usr, tmux, which the tests install, needing
// it).
func TestDebugPackages(t *testing.T) {
	ws := []SymbolWarning{
		{"/lib/x86_64-linux-gnu/libc.so.6", symbolize.ErrNoDebugInfo},
		{"/nonexistent/x", symbolize.ErrNoDebugInfo},
		{"/x", errors.New("bad ELF")},
	}
	want := map[string]string{"/lib/x86_64-linux-gnu/libc.so.6": "libc6-dbg"}
	if _, err := exec.LookPath("dpkg-query"); err == nil {
		for _, path := range []string{"/usr/bin/dpkg-query", "/usr/bin/tar", "/lib/x86_64-linux-gnu/libevent_core-2.1.so.7"} {
			ws = append(ws, SymbolWarning{path, symbolize.ErrNoSymbols})
			out, err := exec.Command("dpkg-query", "-S", path).Output()
			if err != nil && strings.HasPrefix(path, "/usr") {
				out, err = exec.Command("dpkg-query", "-S", strings.TrimPrefix(path, "/usr")).Output()
			}
			if err != nil && !strings.HasPrefix(path, "/usr") {
				out, err = exec.Command("dpkg-query", "-S", "/usr"+path).Output()
			}
			if pkg, _, ok := strings.Cut(string(out), ": "); err == nil && ok && !strings.ContainsAny(pkg, " ,") {
				pkg, _, _ = strings.Cut(pkg, ":") // libevent-core-2.1-7:amd64
				want[path] = pkg + "-dbgsym"
			}
		}
	}
	assert.Equal(t, want, DebugPackages(ws, ""))
}

// TestDebugPackagesCached: the owners dpkg named are kept in the cache
// directory and read back instead of asking again while the module file
// is the same file; a module whose file changed is asked about again.
func TestDebugPackagesCached(t *testing.T) {
	if _, err := exec.LookPath("dpkg-query"); err != nil {
		t.Skip("no dpkg-query here")
	}
	dir := t.TempDir()
	module := filepath.Join(dir, "libmodule.so") // a module dpkg does not know
	require.NoError(t, os.WriteFile(module, []byte("v1"), 0o644))
	ws := []SymbolWarning{
		{"/usr/bin/tar", symbolize.ErrNoSymbols},
		{module, symbolize.ErrNoDebugInfo},
	}
	first := DebugPackages(ws, dir)
	require.Equal(t, map[string]string{"/usr/bin/tar": "tar-dbgsym"}, first)

	// What dpkg said is kept, the unknown module's "none" too.
	c := readOwnerCache(dir)
	require.Len(t, c.Owners, 2)
	assert.Equal(t, "tar", c.Owners["/usr/bin/tar"].Package)
	assert.Equal(t, "", c.Owners[module].Package)

	// A second run reads the cache: an owner only the cache can know
	// shows that dpkg was not asked.
	c.Owners["/usr/bin/tar"] = ownerEntry{File: c.Owners["/usr/bin/tar"].File, Package: "from-cache"}
	c.Owners[module] = ownerEntry{File: c.Owners[module].File, Package: "module-from-cache"}
	writeOwnerCache(dir, c)
	assert.Equal(t, map[string]string{"/usr/bin/tar": "from-cache-dbgsym", module: "module-from-cache-dbgsym"},
		DebugPackages(ws, dir))

	// The module file replaced (another size): dpkg is asked again, and
	// knows it no more than before.
	require.NoError(t, os.WriteFile(module, []byte("version 2"), 0o644))
	assert.Equal(t, map[string]string{"/usr/bin/tar": "from-cache-dbgsym"}, DebugPackages(ws, dir))
	assert.Equal(t, "", readOwnerCache(dir).Owners[module].Package)

	// A corrupt cache file is an empty cache.
	require.NoError(t, os.WriteFile(filepath.Join(dir, ownerCacheName), []byte("{not json"), 0o600))
	assert.Equal(t, first, DebugPackages(ws, dir))
}

func TestWriteLargestPeaks(t *testing.T) {
	tests := []struct {
		name  string
		procs []ProcessPeak
		want  string
	}{
		{"none", nil, ""},
		{"fewer than asked", []ProcessPeak{{1, "a", 512}, {2, "b", 2048}},
			"memscope: largest peaks among them: pid 2 (b) 2.0 KiB, pid 1 (a) 512 B\n"},
		{"largest three, ties in order", []ProcessPeak{{1, "a", 10}, {2, "b", 3 << 20}, {3, "c", 10}, {4, "d", 10}, {5, "e", 1 << 30}},
			"memscope: largest peaks among them: pid 5 (e) 1.0 GiB, pid 2 (b) 3.0 MiB, pid 1 (a) 10 B\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			require.NoError(t, WriteLargestPeaks(&b, tt.procs, 3))
			assert.Equal(t, tt.want, b.String())
		})
	}
}

// TestProfileCompression: a profile under smallProfile bytes is only
// Huffman coded (gzip's XFL byte 0), a larger one at gzip's fastest
// level (XFL 4: compress/gzip marks BestSpeed so); one ProfileWriter
// switches between the two, and pprof reads both back.
func TestProfileCompression(t *testing.T) {
	var pw ProfileWriter
	for _, tc := range []struct {
		samples int
		xfl     byte
	}{{1, 0}, {4000, 4}, {2, 0}, {5000, 4}} {
		prof := profileOf(tc.samples)
		var raw, out bytes.Buffer
		require.NoError(t, prof.WriteUncompressed(&raw))
		assert.Equal(t, tc.xfl == 0, raw.Len() < smallProfile, "%d samples: %d bytes raw", tc.samples, raw.Len())
		require.NoError(t, pw.Write(&out, prof))
		require.Greater(t, out.Len(), 9)
		assert.Equal(t, tc.xfl, out.Bytes()[8], "%d samples", tc.samples)
		back, err := profile.Parse(bytes.NewReader(out.Bytes()))
		require.NoError(t, err)
		assert.Len(t, back.Sample, tc.samples)
		assert.Equal(t, profileText(t, raw.Bytes()), profileText(t, unzip(t, out.Bytes())))
	}
}

// profileText parses a profile.proto and describes all of it that the
// reports set: Profile.String (samples, labels, locations, mappings,
// comments, period, times) and what it leaves out (functions' system
// names and files, the default sample type's name, drop and keep frames).
func profileText(t *testing.T, raw []byte) string {
	t.Helper()
	p, err := profile.ParseData(raw)
	require.NoError(t, err)
	require.NoError(t, p.CheckValid())
	var b strings.Builder
	b.WriteString(p.String())
	fmt.Fprintf(&b, "default %q drop %q keep %q\n", p.DefaultSampleType, p.DropFrames, p.KeepFrames)
	for _, f := range p.Function {
		fmt.Fprintf(&b, "function %d %q %q %q %d\n", f.ID, f.Name, f.SystemName, f.Filename, f.StartLine)
	}
	return b.String()
}

// profileOf is a valid profile of n samples at n locations.
func profileOf(n int) *profile.Profile {
	fn := &profile.Function{ID: 1, Name: "f", Filename: "f.c"}
	p := &profile.Profile{
		SampleType: []*profile.ValueType{{Type: "inuse_space", Unit: "bytes"}},
		Function:   []*profile.Function{fn},
	}
	for i := 1; i <= n; i++ {
		loc := &profile.Location{ID: uint64(i), Address: uint64(0x1000 + 16*i), Line: []profile.Line{{Function: fn, Line: int64(i)}}}
		p.Location = append(p.Location, loc)
		p.Sample = append(p.Sample, &profile.Sample{Location: []*profile.Location{loc}, Value: []int64{int64(i)}})
	}
	return p
}
