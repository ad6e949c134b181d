package symbolize

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func findRustc(t *testing.T) string {
	if p, err := exec.LookPath("rustc"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cargo", "bin", "rustc")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("rustc not installed: Rust symbols untested here (demangling is covered by TestDemangleName)")
	return ""
}

func TestRustNames(t *testing.T) {
	rustc := findRustc(t)
	dir := t.TempDir()
	b, err := os.ReadFile("testdata/rtest.rs")
	require.NoError(t, err)
	src := filepath.Join(dir, "rtest.rs")
	require.NoError(t, os.WriteFile(src, b, 0o644))
	workLine := markerLine(t, src, "work")
	for _, tc := range []struct {
		name  string
		flags []string
		full  bool
	}{
		{"legacy-debug", []string{"-g", "-C", "opt-level=0"}, true},
		{"v0-debug", []string{"-g", "-C", "opt-level=0", "-C", "symbol-mangling-version=v0"}, true},
		{"legacy-symbols-only", []string{"-g", "-C", "opt-level=0"}, false}, // stripped below
	} {
		t.Run(tc.name, func(t *testing.T) {
			exe := filepath.Join(dir, tc.name)
			runCmd(t, dir, rustc, append(tc.flags, "rtest.rs", "-o", exe)...)
			if !tc.full {
				runCmd(t, dir, needTool(t, "strip"), "--strip-debug", exe)
			}
			// The mangled symbol of work, by nm (legacy _ZN..4work17h..E
			// or v0 _R..4work).
			var addr uint64
			out := runCmd(t, "", needTool(t, "nm"), exe)
			for _, line := range strings.Split(out, "\n") {
				f := strings.Fields(line)
				if len(f) == 3 && strings.Contains(f[2], "5rtest4work") {
					addr, err = strconv.ParseUint(f[0], 16, 64)
					require.NoError(t, err)
				}
			}
			require.NotZero(t, addr, "no work symbol in %s", exe)
			s := New(Options{DebugDirs: []string{t.TempDir()}})
			defer s.Close()
			got, err := s.Symbolize(Module{Path: exe}, addr)
			if tc.full {
				require.NoError(t, err)
				assert.Equal(t, []Frame{{Function: "rtest::work", File: src, Line: workLine}}, got)
				assert.Equal(t, addr2line(t, exe, addr), got, "against addr2line")
			} else {
				require.ErrorIs(t, err, ErrNoDebugInfo)
				assert.Equal(t, []Frame{{Function: "rtest::work"}}, got)
			}
		})
	}
}

// A Go program (Go DWARF: no linkage names, DWARF 5 in recent toolchains,
// inlined subroutines), with the Go runtime's own pclntab as the oracle.
func TestGoBinary(t *testing.T) {
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	dir := t.TempDir()
	b, err := os.ReadFile("testdata/goprog.go.txt")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), b, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module goprog\n\ngo 1.21\n"), 0o644))
	cmd := exec.Command(gobin, "build", "-o", "goprog", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	exe := filepath.Join(dir, "goprog")
	require.Equal(t, elf.ET_EXEC, elfType(t, exe), "runtime PCs are file addresses only without PIE")

	lines := strings.Split(strings.TrimSpace(runCmd(t, dir, exe)), "\n")
	require.GreaterOrEqual(t, len(lines), 3)
	pc, err := strconv.ParseUint(lines[0], 0, 64)
	require.NoError(t, err)
	var want []Frame
	for _, l := range lines[1:] {
		f := strings.Split(l, "|")
		require.Len(t, f, 3)
		n, err := strconv.Atoi(f[2])
		require.NoError(t, err)
		want = append(want, Frame{Function: f[0], File: f[1], Line: n, Inlined: true})
	}
	want[len(want)-1].Inlined = false
	require.Equal(t, []string{"main.leaf", "main.outer"}, []string{want[0].Function, want[1].Function})

	s := New(Options{DebugDirs: []string{t.TempDir()}})
	defer s.Close()
	got, err := s.Symbolize(Module{Path: exe}, pc)
	require.NoError(t, err)
	assert.Equal(t, want, got)
}

// Damaged objects give an error naming the problem, never a panic.
func TestDamagedFiles(t *testing.T) {
	p := buildInline(t, t.TempDir(), "-O2", "-gdwarf-5")
	orig, err := os.ReadFile(p.exe)
	require.NoError(t, err)
	f, err := elf.Open(p.exe)
	require.NoError(t, err)
	info := f.Section(".debug_info")
	line := f.Section(".debug_line")
	abbrev := f.Section(".debug_abbrev")
	f.Close()

	damage := func(t *testing.T, mutate func(b []byte) []byte) string {
		b := mutate(append([]byte(nil), orig...))
		path := filepath.Join(t.TempDir(), "damaged")
		require.NoError(t, os.WriteFile(path, b, 0o755))
		return path
	}
	fill := func(sec *elf.Section, v byte) func([]byte) []byte {
		return func(b []byte) []byte {
			for i := sec.Offset; i < sec.Offset+sec.Size; i++ {
				b[i] = v
			}
			return b
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
	}{
		{"truncated-header", func(b []byte) []byte { return b[:40] }},
		{"truncated-half", func(b []byte) []byte { return b[:len(b)/2] }},
		{"debug-info-garbage", fill(info, 0xff)},
		{"debug-info-zero", fill(info, 0)},
		{"debug-line-garbage", fill(line, 0xa5)},
		{"debug-abbrev-garbage", fill(abbrev, 0x7f)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := damage(t, tc.mutate)
			s := New(Options{DebugDirs: []string{t.TempDir()}})
			defer s.Close()
			for _, label := range inlineLabels {
				got, err := s.Symbolize(Module{Path: path}, p.probes[label].addr)
				require.NotEmpty(t, got)
				if err != nil {
					assert.Contains(t, err.Error(), path)
				}
				// Either a degraded answer with a reason, or (when the
				// damage missed what this address needs) the right one.
				if err == nil {
					assert.Equal(t, p.want(t, label), got)
				}
			}
		})
	}
}

// A file truncated on disk while mapped (a rebuild in place) makes the next
// read fault; that must become an error, not a crash of the analyzer.
func TestFileTruncatedWhileMapped(t *testing.T) {
	p := buildInline(t, t.TempDir(), "-O2", "-gdwarf-5")
	s := New(Options{DebugDirs: []string{t.TempDir()}})
	defer s.Close()
	m := Module{Path: p.exe}
	got, err := s.Symbolize(m, p.probes["main"].addr)
	require.NoError(t, err)
	require.Equal(t, p.want(t, "main"), got)

	require.NoError(t, os.Truncate(p.exe, 4096))
	got, err = s.Symbolize(m, p.probes["leaf"].addr)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "file changed or truncated while reading it")
	assert.Contains(t, err.Error(), p.exe)
	assert.Equal(t, []Frame{{}}, got)
}
