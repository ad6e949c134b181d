package symbolize

import (
	"bufio"
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ianlancetaylor/demangle"
	"github.com/stretchr/testify/require"
)

// Test programs are compiled from testdata/ into a temporary directory
// with the system toolchain. Expectations come from the sources (lines
// tagged "@name") and from addr2line -i -f -C, never from this package.

// needTool fails the test when a tool the project requires is missing.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	require.NoError(t, err, "%s is required (binutils/gcc)", name)
	return p
}

// runCmd runs a command in dir and returns its stdout.
func runCmd(t testing.TB, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), stderr.String())
	return stdout.String()
}

// copySources copies testdata files into dir, so that programs are
// compiled with relative names and DWARF must join DW_AT_comp_dir.
func copySources(t testing.TB, dir string, names ...string) {
	t.Helper()
	for _, n := range append(names, "where.h") {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, n), b, 0o644))
	}
}

// probe is one call site a test program reported.
type probe struct {
	module string // "exe" for the main program, else the library path
	addr   uint64 // file address of the call instruction
}

// runProbes runs prog and parses its "LABEL MODULE ADDR" lines.
func runProbes(t testing.TB, dir, prog string) map[string]probe {
	t.Helper()
	cmd := exec.Command(prog)
	cmd.Dir = dir
	out, err := cmd.Output()
	require.NoError(t, err, "running %s", prog)
	probes := map[string]probe{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		require.Len(t, f, 3, "probe line %q", sc.Text())
		a, err := strconv.ParseUint(f[2], 0, 64)
		require.NoError(t, err)
		probes[f[0]] = probe{module: f[1], addr: a}
	}
	return probes
}

// markerLine returns the line number of the line tagged "@tag" in src.
func markerLine(t testing.TB, src, tag string) int {
	t.Helper()
	b, err := os.ReadFile(src)
	require.NoError(t, err)
	re := regexp.MustCompile(`@` + regexp.QuoteMeta(tag) + `\b`)
	found := 0
	for i, line := range strings.Split(string(b), "\n") {
		if re.MatchString(line) {
			require.Zero(t, found, "tag @%s twice in %s", tag, src)
			found = i + 1
		}
	}
	require.NotZero(t, found, "tag @%s not in %s", tag, src)
	return found
}

var (
	discriminator = regexp.MustCompile(` \(discriminator \d+\)$`)
	// GCC clone suffixes: demangled C++ (" [clone .isra.0]", repeated for
	// clones of clones) and plain C symbols ("main.cold").
	cloneSuffix  = regexp.MustCompile(`( \[clone [^\]]*\])+$`)
	cCloneSuffix = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)(\.(cold|part\.\d+|isra\.\d+|constprop\.\d+))+$`)
)

// addr2line is the independent oracle: binutils' frames for addr, innermost
// first. Normalized in the two ways this package deliberately differs:
// GCC clone suffixes (" [clone .isra.0]") are dropped, and "??" means
// unknown.
func addr2line(t testing.TB, file string, addr uint64) []Frame {
	t.Helper()
	out := runCmd(t, "", needTool(t, "addr2line"), "-i", "-f", "-C", "-e", file, "0x"+strconv.FormatUint(addr, 16))
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	require.Equal(t, 0, len(lines)%2, "addr2line output %q", out)
	var frames []Frame
	for i := 0; i < len(lines); i += 2 {
		f := parseAddr2line(t, lines[i], lines[i+1])
		f.Inlined = true
		frames = append(frames, f)
	}
	frames[len(frames)-1].Inlined = false
	return frames
}

// oracleBatch symbolizes many addresses with LLVM's llvm-addr2line (what
// LeakSanitizer uses). binutils' addr2line is not used here: 2.40 misreads
// the initial file register of DWARF 5 line programs (wrong file for the
// first rows of some sequences) and misnames inlined frames at the first
// byte of some inlined ranges. Names are LLVM's raw (mangled) ones, put
// through the demangle package: the question here is which DIE names each
// frame; the demangled form is checked against c++filt in TestDemangleName
// and TestCXXNames (c++filt and the demangle package differ on a few STL
// corner cases: inheriting constructors, empty trailing packs).
func oracleBatch(t *testing.T, file string, addrs []uint64) map[uint64][]Frame {
	t.Helper()
	llvm, err := exec.LookPath("llvm-addr2line")
	if err != nil {
		t.Skip("llvm-addr2line (package llvm) not installed: no oracle for the sweep")
	}
	args := []string{"-a", "-i", "-f", "-e", file}
	for _, a := range addrs {
		args = append(args, "0x"+strconv.FormatUint(a, 16))
	}
	out := runCmd(t, "", llvm, args...)
	res := map[uint64][]Frame{}
	demangled := map[string]string{}
	var cur uint64
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	for i := 0; i < len(lines); {
		if strings.HasPrefix(lines[i], "0x") {
			v, err := strconv.ParseUint(lines[i][2:], 16, 64)
			require.NoError(t, err)
			cur = v
			i++
			continue
		}
		require.Less(t, i+1, len(lines), "llvm-addr2line output ends early")
		name, ok := demangled[lines[i]]
		if !ok {
			name = lines[i]
			if d, err := demangle.ToString(name, demangle.NoClones); err == nil {
				name = d
			}
			demangled[lines[i]] = name
		}
		res[cur] = append(res[cur], parseAddr2line(t, name, lines[i+1]))
		i += 2
	}
	for _, fr := range res {
		for k := range fr {
			fr[k].Inlined = k < len(fr)-1
		}
	}
	return res
}

func parseAddr2line(t testing.TB, fnLine, locLine string) Frame {
	fn := cloneSuffix.ReplaceAllString(fnLine, "")
	fn = cCloneSuffix.ReplaceAllString(fn, "$1")
	if fn == "??" {
		fn = ""
	}
	loc := discriminator.ReplaceAllString(locLine, "")
	colon := strings.LastIndexByte(loc, ':')
	require.Positive(t, colon, "addr2line location %q", loc)
	file, line := loc[:colon], loc[colon+1:]
	if file == "??" {
		file = ""
	}
	n, _ := strconv.Atoi(line) // "?" is 0
	if n == 0 && !strings.Contains(file, "/") {
		// Without line info binutils falls back to the bare name of an
		// STT_FILE symbol ("crtstuff.c"); this package reports no file.
		file = ""
	}
	return Frame{Function: fn, File: file, Line: n}
}

// elfBuildID reads the build ID with readelf (not with this package).
func elfBuildID(t testing.TB, file string) []byte {
	t.Helper()
	out := runCmd(t, "", needTool(t, "readelf"), "-n", file)
	m := regexp.MustCompile(`Build ID: ([0-9a-f]+)`).FindStringSubmatch(out)
	require.NotNil(t, m, "no build ID in %s", file)
	id, err := hexDecode(m[1])
	require.NoError(t, err)
	return id
}

func hexDecode(s string) ([]byte, error) {
	b := make([]byte, len(s)/2)
	for i := range b {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			return nil, err
		}
		b[i] = byte(v)
	}
	return b, nil
}

// nmAddr returns the value of symbol name as nm prints it (-D: dynamic).
func nmAddr(t testing.TB, file, name string, dynamic bool) uint64 {
	t.Helper()
	args := []string{file}
	if dynamic {
		args = []string{"-D", file}
	}
	out := runCmd(t, "", needTool(t, "nm"), args...)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == name {
			v, err := strconv.ParseUint(f[0], 16, 64)
			require.NoError(t, err)
			return v
		}
	}
	t.Fatalf("nm %s: no symbol %s", file, name)
	return 0
}

// isPIE reports whether file is ET_DYN, read by readelf.
func elfType(t testing.TB, file string) elf.Type {
	t.Helper()
	out := runCmd(t, "", needTool(t, "readelf"), "-h", file)
	switch {
	case strings.Contains(out, "DYN ("):
		return elf.ET_DYN
	case strings.Contains(out, "EXEC ("):
		return elf.ET_EXEC
	}
	t.Fatalf("readelf -h %s: unknown type", file)
	return 0
}
