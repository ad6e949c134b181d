package gate

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Two hand-written reports of the same program: run A leaks 64 B at
// make_node (direct) and 64 B there too (indirect), and keeps a 4096 B
// stdio buffer (reachable); run B leaks 192 B at make_node, a new 24 B
// site in parse, and a suppressed 1000 B.
const reportA = `{"version":1,"pid":100,"ppid":1,"program":"/src/build/demo","exit_status":0,"complete":true,
"reachability":"checked","totals":{"allocations":20,"frees":17,"bytes_allocated":12912,"peak_bytes":4224},
"leaked_bytes":128,"leaked_objects":2,"leaks":[
{"kind":"direct","bytes":64,"objects":1,"suppressed":false,"frames":[
 {"address":"0x1","function":"make_node","file":"/src/demo.c","line":14,"module":"/src/build/demo"},
 {"address":"0x2","function":"main","file":"/src/demo.c","line":29,"module":"/src/build/demo"}]},
{"kind":"indirect","bytes":64,"objects":1,"suppressed":false,"frames":[
 {"address":"0x1","function":"make_node","file":"/src/demo.c","line":14,"module":"/src/build/demo"},
 {"address":"0x2","function":"main","file":"/src/demo.c","line":29,"module":"/src/build/demo"}]},
{"kind":"reachable","bytes":4096,"objects":1,"suppressed":false,"frames":[
 {"address":"0x9","function":"_IO_file_doallocate","file":"./libio/filedoalloc.c","line":101,"module":"/usr/lib/x86_64-linux-gnu/libc.so.6"},
 {"address":"0x2","function":"main","file":"/src/demo.c","line":40,"module":"/src/build/demo"}]}]}`

const reportB = `{"version":1,"pid":200,"ppid":1,"program":"/src/build/demo","exit_status":0,"complete":true,
"reachability":"checked","totals":{"allocations":30,"frees":20,"bytes_allocated":20000,"peak_bytes":5000},
"leaked_bytes":1216,"leaked_objects":5,"leaks":[
{"kind":"suppressed-check","bytes":1000,"objects":1,"suppressed":true,"frames":[
 {"address":"0x5","function":"third_party","file":"/src/vendor/x.c","line":3,"module":"/src/build/demo"}]},
{"kind":"direct","bytes":192,"objects":3,"suppressed":false,"frames":[
 {"address":"0x7","function":"make_node","file":"/other/checkout/demo.c","line":15,"module":"/src/build/demo"},
 {"address":"0x8","function":"main","file":"/other/checkout/demo.c","line":31,"module":"/src/build/demo"}]},
{"kind":"direct","bytes":24,"objects":1,"suppressed":false,"frames":[
 {"address":"0x3","function":"strdup","file":"","line":0,"module":"/usr/lib/x86_64-linux-gnu/libc.so.6"},
 {"address":"0x4","function":"parse","file":"/src/parse.c","line":7,"module":"/src/build/demo"}]}]}`

func writeReports(t *testing.T, texts ...string) []string {
	dir := t.TempDir()
	var paths []string
	for i, s := range texts {
		p := filepath.Join(dir, "memscope.demo."+string(rune('1'+i))+".leaks.json")
		require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
		paths = append(paths, p)
	}
	return paths
}

func u(n uint64) *uint64 { return &n }

func TestCheckText(t *testing.T) {
	reports, err := Load(writeReports(t, reportA, reportB))
	require.NoError(t, err)
	tests := []struct {
		name string
		l    Limits
		want string
	}{
		{"any leak", Limits{MaxLeaked: u(0)}, `FAIL demo (pid 100): --max-leaked: leaked 128 byte(s) in 2 object(s) (limit 0 B)
    128 byte(s) in 2 object(s) (direct, indirect) at make_node /src/demo.c:14
FAIL demo (pid 200): --max-leaked: leaked 216 byte(s) in 4 object(s) (limit 0 B)
    192 byte(s) in 3 object(s) (direct) at make_node /other/checkout/demo.c:15
    24 byte(s) in 1 object(s) (direct) at parse /src/parse.c:7
memscope check: 2 limit(s) broken in 2 report(s)
`},
		{"within limits", Limits{MaxLeaked: u(216), MaxPeak: u(5000), MaxAllocations: u(30)}, "memscope check: 2 report(s) within limits\n"},
		{"peak, allocations, per site", Limits{MaxPeak: u(4999), MaxAllocations: u(29), MaxLeakPerSite: u(300)}, `FAIL demo (pid 200): --max-peak: peak heap 5000 byte(s) (limit 4999 B)
FAIL demo (pid 200): --max-allocations: 30 allocations (limit 29)
FAIL demo: --max-leak-per-site: one site leaked 320 byte(s) in 5 object(s) (limit 300 B)
    320 byte(s) in 5 object(s) (direct, indirect) at make_node /src/demo.c:14
memscope check: 3 limit(s) broken in 2 report(s)
`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			require.NoError(t, (&Verdict{Reports: reports, Violations: Check(reports, tc.l)}).Write(&b, FormatText))
			assert.Equal(t, tc.want, b.String())
		})
	}
}

func TestCheckFormats(t *testing.T) {
	reports, err := Load(writeReports(t, reportB))
	require.NoError(t, err)
	v := &Verdict{Reports: reports, Violations: Check(reports, Limits{MaxLeakPerSite: u(100)}), SourceRoot: "/src"}

	var gh bytes.Buffer
	require.NoError(t, v.Write(&gh, FormatGitHub))
	assert.Equal(t, "::error file=/other/checkout/demo.c,line=15,title=memscope%3A --max-leak-per-site::demo: one site leaked 192 byte(s) in 3 object(s) (limit 100 B); this site: 192 byte(s) in 3 object(s) (direct) allocated at make_node /other/checkout/demo.c:15\n", gh.String())

	var csv bytes.Buffer
	require.NoError(t, v.Write(&csv, FormatCSV))
	assert.Equal(t, `program,pids,kinds,bytes,objects,function,file,line,site
demo,200,direct,192,3,make_node,/other/checkout/demo.c,15,make_node@demo.c <- main@demo.c
demo,200,direct,24,1,parse,/src/parse.c,7,strdup@libc.so.6 <- parse@parse.c
`, csv.String())

	var sarif bytes.Buffer
	require.NoError(t, v.Write(&sarif, FormatSARIF))
	var doc struct {
		Version string `json:"version"`
		Runs    []struct {
			Results []struct {
				RuleID    string `json:"ruleId"`
				Level     string `json:"level"`
				Message   struct{ Text string }
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }
						Region           struct{ StartLine int }
					}
				}
			}
		}
	}
	require.NoError(t, json.Unmarshal(sarif.Bytes(), &doc))
	assert.Equal(t, "2.1.0", doc.Version)
	res := doc.Runs[0].Results
	require.Len(t, res, 2)
	assert.Equal(t, "error", res[0].Level, "the site over the limit")
	assert.Equal(t, "demo leaked 192 byte(s) in 3 object(s) (direct) allocated at make_node /other/checkout/demo.c:15. --max-leak-per-site: one site leaked 192 byte(s) in 3 object(s) (limit 100 B).", res[0].Message.Text)
	assert.Equal(t, "/other/checkout/demo.c", res[0].Locations[0].PhysicalLocation.ArtifactLocation.URI)
	assert.Equal(t, "warning", res[1].Level)
	// Located at the first frame in the program's own code, not strdup in libc;
	// relative to the source root.
	assert.Equal(t, "parse.c", res[1].Locations[0].PhysicalLocation.ArtifactLocation.URI)
	assert.Equal(t, 7, res[1].Locations[0].PhysicalLocation.Region.StartLine)
}

func TestBaseline(t *testing.T) {
	paths := writeReports(t, reportA, reportB)
	a, err := Load(paths[:1])
	require.NoError(t, err)
	b, err := Load(paths[1:])
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, NewBaseline(a).Write(&buf))
	assert.Equal(t, `{
  "version": 1,
  "programs": {
    "demo": {
      "peak_bytes": 4224,
      "allocations": 20,
      "bytes_allocated": 12912,
      "leaked_bytes": 128,
      "sites": {
        "make_node@demo.c <- main@demo.c": {
          "bytes": 128,
          "objects": 2
        }
      }
    }
  }
}
`, buf.String())
	base, err := ReadBaseline(strings.NewReader(buf.String()), "base.json")
	require.NoError(t, err)

	var rules []string
	for _, v := range base.Compare(b, 10) {
		rules = append(rules, v.Rule+": "+v.Message)
	}
	// make_node is matched although its file moved and its line changed.
	assert.Equal(t, []string{
		"--max-growth: a site's leak grew from 128 to 192 byte(s) (more than 10%)",
		"new leak site: a site the baseline does not have leaked 24 byte(s) in 1 object(s)",
		"--max-growth: peak heap grew from 4224 to 5000 byte(s) (more than 10%)",
	}, rules)
	assert.Empty(t, base.Compare(a, 0), "a run holds to its own baseline")
	rules = nil
	for _, v := range base.Compare(b, 60) {
		rules = append(rules, v.Rule)
	}
	assert.Equal(t, []string{"new leak site"}, rules, "50% and 18% growth are within 60%")

	_, err = ReadBaseline(strings.NewReader(`{"version":1,"programs":{},"extra":1}`), "bad.json")
	assert.EqualError(t, err, `baseline bad.json: json: unknown field "extra"`)
	_, err = ReadBaseline(strings.NewReader(`{"version":2,"programs":{}}`), "v2.json")
	assert.EqualError(t, err, "baseline v2.json: not a memscope baseline (version 2)")
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Load(nil)
	assert.EqualError(t, err, "no report given: name leaks.json files or a directory of reports")
	_, err = Load([]string{dir})
	assert.EqualError(t, err, "report directory "+dir+" holds no memscope.*.leaks.json")
	bad := filepath.Join(dir, "x.json")
	require.NoError(t, os.WriteFile(bad, []byte(`{"hello":`), 0o644))
	_, err = Load([]string{bad})
	assert.EqualError(t, err, "report "+bad+": not a memscope leaks.json: unexpected end of JSON input")
	require.NoError(t, os.WriteFile(bad, []byte(`{"version":7}`), 0o644))
	_, err = Load([]string{bad})
	assert.EqualError(t, err, "report "+bad+`: not a memscope leaks.json (version 7, program "")`)
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		err  string
	}{
		{"4096", 4096, ""}, {"64K", 65536, ""}, {"24MB", 24000000, ""}, {"1.5MiB", 1572864, ""},
		{"2 GiB", 2 << 30, ""}, {"0", 0, ""},
		{"", 0, `invalid size "" (want e.g. 4096, 24MB, 1.5MiB)`},
		{"12XB", 0, `invalid size "12XB": unknown unit "XB" (B, K/KiB, KB, M/MiB, MB, G/GiB, GB)`},
		{"-1", 0, `invalid size "-1" (want e.g. 4096, 24MB, 1.5MiB)`},
	}
	for _, tc := range tests {
		got, err := ParseSize(tc.in)
		if tc.err != "" {
			assert.EqualError(t, err, tc.err, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}
