package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runCLI runs memscope-analyze with args and returns its stdout, stderr
// and exit status.
func runCLI(t *testing.T, args ...string) (string, string, int) {
	return runCLIWith(t, nil, "", args...)
}

// runCLIWith is runCLI with more environment and a working directory.
func runCLIWith(t *testing.T, env []string, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(analyzer(t), args...)
	cmd.Env = append(cleanEnv(), env...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return out.String(), errb.String(), code
}

// TestCheckAndDiff runs two real runs of testdata/reach.c (a lost list,
// a lost cycle) and judges their reports with check and diff.
func TestCheckAndDiff(t *testing.T) {
	prog := program(t, "reach")
	list := analyze(t, nil, prog, "list")
	cycle := analyze(t, nil, prog, "cycle")
	lm, cm := list.main(t), cycle.main(t)
	src := lm.Leaks[0].Frames[0].File // the path the compiler recorded
	listLine, cycleLine := sourceLine(t, "reach.c", "list"), sourceLine(t, "reach.c", "cycle")
	require.Equal(t, filepath.Base(src), "reach.c")

	out, _, code := runCLI(t, "check", list.dir)
	assert.Equal(t, 1, code)
	assert.Equal(t, fmt.Sprintf(`FAIL reach (pid %d): --max-leaked: leaked 330 byte(s) in 3 object(s) (limit 0 B)
    330 byte(s) in 3 object(s) (direct, indirect) at list %s:%d
memscope check: 1 limit(s) broken in 1 report(s)
`, lm.Pid, src, listLine), out)

	out, _, code = runCLI(t, "check", "--max-leaked", "330", "--max-peak", "1MiB", list.dir)
	assert.Equal(t, 0, code)
	assert.Equal(t, "memscope check: 1 report(s) within limits\n", out)

	base := filepath.Join(t.TempDir(), "base.json")
	_, errText, code := runCLI(t, "check", "--write-baseline", base, list.dir)
	require.Equal(t, 0, code, errText)
	_, _, code = runCLI(t, "check", "--baseline", base, list.dir)
	assert.Equal(t, 0, code, "a run holds to its own baseline")
	out, _, code = runCLI(t, "check", "--baseline", base, cycle.dir)
	assert.Equal(t, 1, code)
	assert.Equal(t, fmt.Sprintf(`FAIL reach: new leak site: a site the baseline does not have leaked 225 byte(s) in 2 object(s)
    225 byte(s) in 2 object(s) (indirect) at cycle %s:%d
memscope check: 1 limit(s) broken in 1 report(s)
`, src, cycleLine), out)

	out, _, code = runCLI(t, "check", "--format", "github", "--source-root", filepath.Dir(filepath.Dir(src)), cycle.dir)
	assert.Equal(t, 1, code)
	assert.Equal(t, fmt.Sprintf("::error file=testdata/reach.c,line=%d,title=memscope%%3A --max-leaked::reach (pid %d): leaked 225 byte(s) in 2 object(s) (limit 0 B); this site: 225 byte(s) in 2 object(s) (indirect) allocated at cycle %s:%d\n",
		cycleLine, cm.Pid, src, cycleLine), out)

	out, _, code = runCLI(t, "diff", "--json", list.dir, cycle.dir)
	require.Equal(t, 0, code)
	var d struct {
		Sites []struct {
			Function string
			Line     int
			Old, New map[string]uint64
		}
	}
	require.NoError(t, json.Unmarshal([]byte(out), &d))
	var got []string
	for _, s := range d.Sites {
		got = append(got, fmt.Sprintf("%s:%d leaked %d->%d objects %d->%d alloc %d->%d peak %d->%d", s.Function, s.Line,
			s.Old["leaked_bytes"], s.New["leaked_bytes"], s.Old["leaked_objects"], s.New["leaked_objects"],
			s.Old["alloc_bytes"], s.New["alloc_bytes"], s.Old["peak_bytes"], s.New["peak_bytes"]))
	}
	// The program allocates nothing else from its own code: only the two
	// sites of reach.c differ (libc's blocks are the same in both runs).
	var ours []string
	for _, g := range got {
		if len(g) > 5 && (g[:5] == "list:" || g[:6] == "cycle:") {
			ours = append(ours, g)
		}
	}
	assert.Equal(t, []string{
		fmt.Sprintf("list:%d leaked 330->0 objects 3->0 alloc 330->0 peak 330->0", listLine),
		fmt.Sprintf("cycle:%d leaked 0->225 objects 0->2 alloc 0->225 peak 0->225", cycleLine),
	}, ours)

	_, errText, code = runCLI(t, "diff", list.dir)
	assert.Equal(t, 2, code)
	assert.Contains(t, errText, "diff takes two runs: memscope-analyze diff OLD NEW (got 1 argument(s))")
	_, errText, code = runCLI(t, "check", "--max-peak", "lots", list.dir)
	assert.Equal(t, 2, code)
	assert.Contains(t, errText, `--max-peak: invalid size "lots"`)
}
