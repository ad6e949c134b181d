package symbolize

import (
	"debug/elf"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// inlineProgram is testdata/inline.c compiled in dir.
type inlineProgram struct {
	dir, src, exe string
	probes        map[string]probe
}

func buildInline(t *testing.T, dir string, flags ...string) inlineProgram {
	t.Helper()
	copySources(t, dir, "inline.c")
	args := append([]string{"-g", "-fno-optimize-sibling-calls", "-Wl,--build-id"}, flags...)
	args = append(args, "inline.c", "-o", "inline")
	runCmd(t, dir, needTool(t, "gcc"), args...)
	p := inlineProgram{dir: dir, src: filepath.Join(dir, "inline.c"), exe: filepath.Join(dir, "inline")}
	p.probes = runProbes(t, dir, p.exe)
	return p
}

// want gives the frames of a probe of inline.c, from the source's tags.
func (p inlineProgram) want(t *testing.T, label string) []Frame {
	line := func(tag string) int { return markerLine(t, p.src, tag) }
	switch label {
	case "leaf":
		return []Frame{
			{Function: "leaf", File: p.src, Line: line("leaf"), Inlined: true},
			{Function: "middle", File: p.src, Line: line("middle"), Inlined: true},
			{Function: "outer", File: p.src, Line: line("outer")},
		}
	case "helper":
		return []Frame{{Function: "helper", File: p.src, Line: line("helper")}}
	case "main":
		return []Frame{{Function: "main", File: p.src, Line: line("main")}}
	}
	t.Fatalf("no expectation for %s", label)
	return nil
}

// symbolsOnly is what ELF symbols alone give for a probe of inline.c:
// the outermost function, no line.
func symbolsOnly(label string) []Frame {
	fn := map[string]string{"leaf": "outer", "helper": "helper", "main": "main"}[label]
	return []Frame{{Function: fn}}
}

var inlineLabels = []string{"leaf", "helper", "main"}

func TestInlinedFramesAndLines(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags []string
		pie   bool
	}{
		{"O0-dwarf4-pie", []string{"-O0", "-gdwarf-4", "-fPIE", "-pie"}, true},
		{"O0-dwarf5-nopie", []string{"-O0", "-gdwarf-5", "-fno-PIE", "-no-pie"}, false},
		{"O2-dwarf4-nopie", []string{"-O2", "-gdwarf-4", "-fno-PIE", "-no-pie"}, false},
		{"O2-dwarf5-pie", []string{"-O2", "-gdwarf-5", "-fPIE", "-pie"}, true},
		{"O2-dwarf5-nopie", []string{"-O2", "-gdwarf-5", "-fno-PIE", "-no-pie"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := buildInline(t, t.TempDir(), tc.flags...)
			wantType := elf.ET_EXEC
			if tc.pie {
				wantType = elf.ET_DYN
			}
			require.Equal(t, wantType, elfType(t, p.exe))
			s := New(Options{DebugDirs: []string{t.TempDir()}})
			defer s.Close()
			for _, label := range inlineLabels {
				pr := p.probes[label]
				require.Equal(t, "exe", pr.module, label)
				got, err := s.Symbolize(Module{Path: p.exe, BuildID: elfBuildID(t, p.exe)}, pr.addr)
				require.NoError(t, err, label)
				assert.Equal(t, p.want(t, label), got, "%s at %#x: against the source", label, pr.addr)
				assert.Equal(t, addr2line(t, p.exe, pr.addr), got, "%s at %#x: against addr2line", label, pr.addr)
			}
		})
	}
}

// Every byte of .text agrees with the oracles (see oracleBatch): function
// entries, prologues, rows sharing an address, sequence ends, code without
// DWARF (crt files), inlined ranges at every depth.
func TestAgreesWithAddr2lineOverText(t *testing.T) {
	for _, tc := range []struct {
		name, src, compiler string
		flags               []string
	}{
		{"c-O0-dwarf4", "inline.c", "gcc", []string{"-O0", "-gdwarf-4"}},
		{"c-O2-dwarf5", "inline.c", "gcc", []string{"-O2", "-gdwarf-5"}},
		{"c-O3-dwarf5-nopie", "inline.c", "gcc", []string{"-O3", "-gdwarf-5", "-fno-PIE", "-no-pie"}},
		{"cxx-O2-dwarf5", "boxes.cpp", "g++", []string{"-O2", "-gdwarf-5"}},
		{"cxx-O0-dwarf4", "boxes.cpp", "g++", []string{"-O0", "-gdwarf-4"}},
		{"stl-O2-dwarf5", "stl.cpp", "g++", []string{"-O2", "-gdwarf-5"}},
		{"stl-O0-dwarf4", "stl.cpp", "g++", []string{"-O0", "-gdwarf-4"}},
		{"stl-O3-dwarf4-nopie", "stl.cpp", "g++", []string{"-O3", "-gdwarf-4", "-fno-PIE", "-no-pie"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			copySources(t, dir, tc.src)
			args := append([]string{"-g", "-fno-optimize-sibling-calls"}, tc.flags...)
			runCmd(t, dir, needTool(t, tc.compiler), append(args, tc.src, "-o", "prog")...)
			exe := filepath.Join(dir, "prog")
			f, err := elf.Open(exe)
			require.NoError(t, err)
			text := f.Section(".text")
			require.NotNil(t, text)
			// Alignment padding after a function belongs to no function:
			// llvm-addr2line gives the line of the row before it with no
			// function, addr2line names the symbol before it; this
			// package says unknown (no return address ever points
			// there). Only after a symbol of size 0 (crt's
			// deregister_tm_clones) is the nearest symbol taken.
			syms, err := f.Symbols()
			require.NoError(t, err)
			f.Close()
			padding := func(a uint64) bool {
				var nearest *elf.Symbol
				for i := range syms {
					sym := &syms[i]
					if elf.ST_TYPE(sym.Info) != elf.STT_FUNC || sym.Value > a {
						continue
					}
					if a < sym.Value+sym.Size {
						return false
					}
					if nearest == nil || sym.Value > nearest.Value {
						nearest = sym
					}
				}
				return nearest == nil || nearest.Size != 0
			}
			var addrs []uint64
			for a := text.Addr; a < text.Addr+text.Size; a++ {
				addrs = append(addrs, a)
			}
			want := oracleBatch(t, exe, addrs)
			s := New(Options{DebugDirs: []string{t.TempDir()}})
			defer s.Close()
			mismatches := 0
			pads := 0
			for _, a := range addrs {
				got, _ := s.Symbolize(Module{Path: exe}, a)
				expect := want[a]
				if padding(a) {
					pads++
					expect = []Frame{{}}
				}
				if !assert.Equal(t, expect, got, "at %#x", a) {
					if mismatches++; mismatches > 5 {
						t.Fatalf("too many mismatches")
					}
				}
			}
			t.Logf("%d addresses agree, %d of them padding", len(addrs), pads)
		})
	}
}

func TestCXXNames(t *testing.T) {
	for _, opt := range []string{"-O0", "-O2"} {
		t.Run(opt, func(t *testing.T) {
			dir := t.TempDir()
			copySources(t, dir, "boxes.cpp")
			runCmd(t, dir, needTool(t, "g++"), "-g", opt, "-fno-optimize-sibling-calls", "boxes.cpp", "-o", "boxes")
			exe, src := filepath.Join(dir, "boxes"), filepath.Join(dir, "boxes.cpp")
			probes := runProbes(t, dir, exe)
			s := New(Options{DebugDirs: []string{t.TempDir()}})
			defer s.Close()
			for _, tc := range []struct{ label, function string }{
				{"box_get", "ns::Box<long>::get(int) const"},
				{"twice", "ns::inner::twice(int)"},
				{"sum", "int ns::inner::sum<int>(int, int)"},
				{"lambda", "main::{lambda(int)#1}::operator()(int) const"},
			} {
				pr := probes[tc.label]
				got, err := s.Symbolize(Module{Path: exe}, pr.addr)
				require.NoError(t, err)
				want := []Frame{{Function: tc.function, File: src, Line: markerLine(t, src, tc.label)}}
				assert.Equal(t, want, got, tc.label)
				assert.Equal(t, addr2line(t, exe, pr.addr), got, "%s: against addr2line", tc.label)
			}
		})
	}
}

// lib.c as a shared library, loaded by libmain; its probes give addresses
// in the library.
func buildLib(t *testing.T, dir string) (lib, src string, probes map[string]probe) {
	t.Helper()
	copySources(t, dir, "lib.c", "libmain.c")
	gcc := needTool(t, "gcc")
	runCmd(t, dir, gcc, "-g", "-O2", "-gdwarf-5", "-fPIC", "-shared", "-fno-optimize-sibling-calls", "lib.c", "-o", "libt.so")
	runCmd(t, dir, gcc, "-g", "libmain.c", "-o", "libmain", "-L.", "-lt", "-Wl,-rpath,"+dir)
	lib, src = filepath.Join(dir, "libt.so"), filepath.Join(dir, "lib.c")
	probes = runProbes(t, dir, filepath.Join(dir, "libmain"))
	for _, p := range probes {
		require.Equal(t, lib, p.module)
	}
	return lib, src, probes
}

func TestSharedLibrary(t *testing.T) {
	dir := t.TempDir()
	lib, src, probes := buildLib(t, dir)
	stripped := filepath.Join(dir, "libstripped.so")
	runCmd(t, dir, needTool(t, "strip"), "--strip-all", "-o", stripped, lib)
	// A copy whose debug info is split off, found by .gnu_debuglink.
	linked := filepath.Join(dir, "liblinked.so")
	objcopy := needTool(t, "objcopy")
	runCmd(t, dir, objcopy, "--only-keep-debug", lib, linked+".debug")
	runCmd(t, dir, objcopy, "--strip-debug", "--add-gnu-debuglink="+linked+".debug", lib, linked)

	entry := markerLine(t, src, "lib_entry")
	for _, tc := range []struct {
		name    string
		path    string
		label   string
		want    []Frame
		wantErr error
	}{
		{"inlined", lib, "lib_inlined", []Frame{
			{Function: "lib_inlined", File: src, Line: markerLine(t, src, "lib_inlined"), Inlined: true},
			{Function: "lib_entry", File: src, Line: entry},
		}, nil},
		{"static", lib, "lib_static", []Frame{{Function: "lib_static", File: src, Line: markerLine(t, src, "lib_static")}}, nil},
		{"debuglink-inlined", linked, "lib_inlined", []Frame{
			{Function: "lib_inlined", File: src, Line: markerLine(t, src, "lib_inlined"), Inlined: true},
			{Function: "lib_entry", File: src, Line: entry},
		}, nil},
		// Stripped: .dynsym names the exported function; the static
		// one is in no table left.
		{"stripped-exported", stripped, "lib_inlined", []Frame{{Function: "lib_entry"}}, ErrNoDebugInfo},
		{"stripped-static", stripped, "lib_static", []Frame{{}}, ErrNoDebugInfo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{DebugDirs: []string{t.TempDir()}})
			defer s.Close()
			addr := probes[tc.label].addr
			got, err := s.Symbolize(Module{Path: tc.path}, addr)
			assert.Equal(t, tc.want, got)
			if tc.wantErr == nil {
				require.NoError(t, err)
				assert.Equal(t, addr2line(t, lib, addr), got, "against addr2line")
			} else {
				require.ErrorIs(t, err, tc.wantErr)
				assert.Contains(t, err.Error(), tc.path)
			}
		})
	}
}

// separateDebug builds inline.c (-O2, DWARF 5, PIE) and splits its debug
// info into inline.debug. mode "debuglink" keeps .symtab and adds a
// .gnu_debuglink; "strip-all" removes every symbol table and the link,
// leaving only the build ID note.
func separateDebug(t *testing.T, dir, mode string, extra ...string) (inlineProgram, string) {
	t.Helper()
	if m, ok := strings.CutSuffix(mode, "-nopie"); ok {
		mode = m
		extra = append(extra, "-fno-PIE", "-no-pie")
	}
	p := buildInline(t, dir, append([]string{"-O2", "-gdwarf-5"}, extra...)...)
	if slices.Contains(extra, "-no-pie") {
		require.Equal(t, elf.ET_EXEC, elfType(t, p.exe))
	} else {
		require.Equal(t, elf.ET_DYN, elfType(t, p.exe))
	}
	objcopy := needTool(t, "objcopy")
	debug := filepath.Join(dir, "inline.debug")
	runCmd(t, dir, objcopy, "--only-keep-debug", p.exe, debug)
	switch mode {
	case "debuglink":
		runCmd(t, dir, objcopy, "--strip-debug", "--add-gnu-debuglink="+debug, p.exe)
	case "strip-all":
		runCmd(t, dir, needTool(t, "strip"), "--strip-all", p.exe)
	default:
		t.Fatalf("mode %s", mode)
	}
	return p, debug
}

func TestSeparateDebugFiles(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode string
		// place moves the debug file; returns the DebugDirs to use.
		place   func(t *testing.T, p inlineProgram, debug string) []string
		full    bool  // DWARF found: frames as from the source
		wantErr error // else: symbols only, this error
	}{
		{"debuglink-beside", "debuglink", func(t *testing.T, p inlineProgram, debug string) []string {
			return []string{t.TempDir()}
		}, true, nil},
		{"debuglink-dot-debug", "debuglink", func(t *testing.T, p inlineProgram, debug string) []string {
			require.NoError(t, os.Mkdir(filepath.Join(p.dir, ".debug"), 0o755))
			require.NoError(t, os.Rename(debug, filepath.Join(p.dir, ".debug", "inline.debug")))
			return []string{t.TempDir()}
		}, true, nil},
		{"debuglink-debugdir", "debuglink", func(t *testing.T, p inlineProgram, debug string) []string {
			dd := t.TempDir()
			target := filepath.Join(dd, p.dir, "inline.debug")
			require.NoError(t, os.MkdirAll(filepath.Dir(target), 0o755))
			require.NoError(t, os.Rename(debug, target))
			return []string{t.TempDir(), dd}
		}, true, nil},
		{"debuglink-crc-mismatch", "debuglink", func(t *testing.T, p inlineProgram, debug string) []string {
			// Same name, other contents: must be rejected.
			b, err := os.ReadFile(debug)
			require.NoError(t, err)
			b[len(b)-1] ^= 0xff
			require.NoError(t, os.WriteFile(debug, b, 0o644))
			return []string{t.TempDir()}
		}, false, ErrNoDebugInfo},
		{"build-id", "strip-all", func(t *testing.T, p inlineProgram, debug string) []string {
			dd := t.TempDir()
			id := elfBuildID(t, p.exe)
			h := hexString(id)
			target := filepath.Join(dd, ".build-id", h[:2], h[2:]+".debug")
			require.NoError(t, os.MkdirAll(filepath.Dir(target), 0o755))
			require.NoError(t, os.Rename(debug, target))
			return []string{t.TempDir(), dd}
		}, true, nil},
		{"strip-all-no-debug", "strip-all", func(t *testing.T, p inlineProgram, debug string) []string {
			return []string{t.TempDir()}
		}, false, ErrNoSymbols},
		{"build-id-nopie", "strip-all-nopie", func(t *testing.T, p inlineProgram, debug string) []string {
			dd := t.TempDir()
			h := hexString(elfBuildID(t, p.exe))
			target := filepath.Join(dd, ".build-id", h[:2], h[2:]+".debug")
			require.NoError(t, os.MkdirAll(filepath.Dir(target), 0o755))
			require.NoError(t, os.Rename(debug, target))
			return []string{dd}
		}, true, nil},
		{"debuglink-nopie", "debuglink-nopie", func(t *testing.T, p inlineProgram, debug string) []string {
			return []string{t.TempDir()}
		}, true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p, debug := separateDebug(t, dir, tc.mode)
			dirs := tc.place(t, p, debug)
			for _, withID := range []bool{false, true} {
				s := New(Options{DebugDirs: dirs})
				m := Module{Path: p.exe}
				if withID {
					m.BuildID = elfBuildID(t, p.exe)
				}
				for _, label := range inlineLabels {
					got, err := s.Symbolize(m, p.probes[label].addr)
					switch {
					case tc.full:
						require.NoError(t, err, label)
						assert.Equal(t, p.want(t, label), got, label)
					case errors.Is(tc.wantErr, ErrNoSymbols):
						require.ErrorIs(t, err, tc.wantErr, label)
						assert.Equal(t, []Frame{{}}, got, label)
					default:
						require.ErrorIs(t, err, tc.wantErr, label)
						assert.Equal(t, symbolsOnly(label), got, label)
					}
				}
				s.Close()
			}
		})
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

func TestBuildIDMismatchAndMissingFiles(t *testing.T) {
	dir := t.TempDir()
	a := buildInline(t, filepath.Join(dir), "-O2", "-gdwarf-5")
	// b: a different program at another path (different build ID).
	bdir := filepath.Join(dir, "b")
	require.NoError(t, os.Mkdir(bdir, 0o755))
	b := buildInline(t, bdir, "-O0", "-gdwarf-4")
	aID, bID := elfBuildID(t, a.exe), elfBuildID(t, b.exe)
	require.NotEqual(t, aID, bID)

	// A debug directory holding a's debug info under a's build ID.
	dd := t.TempDir()
	h := hexString(aID)
	target := filepath.Join(dd, ".build-id", h[:2], h[2:]+".debug")
	require.NoError(t, os.MkdirAll(filepath.Dir(target), 0o755))
	runCmd(t, dir, needTool(t, "objcopy"), "--only-keep-debug", a.exe, target)

	addr := a.probes["leaf"].addr
	t.Run("mismatch-untrusted", func(t *testing.T) {
		s := New(Options{DebugDirs: []string{t.TempDir()}})
		defer s.Close()
		// The process mapped a, but b is on disk at the path now.
		got, err := s.Symbolize(Module{Path: b.exe, BuildID: aID}, addr)
		require.ErrorIs(t, err, ErrBuildIDMismatch)
		assert.Contains(t, err.Error(), hexString(aID))
		assert.Contains(t, err.Error(), hexString(bID))
		assert.Equal(t, []Frame{{}}, got)
	})
	t.Run("mismatch-found-by-build-id", func(t *testing.T) {
		s := New(Options{DebugDirs: []string{dd}})
		defer s.Close()
		got, err := s.Symbolize(Module{Path: b.exe, BuildID: aID}, addr)
		require.NoError(t, err)
		assert.Equal(t, a.want(t, "leaf"), got)
	})
	t.Run("missing-file", func(t *testing.T) {
		s := New(Options{DebugDirs: []string{t.TempDir()}})
		defer s.Close()
		missing := filepath.Join(dir, "no-such-program")
		got, err := s.Symbolize(Module{Path: missing}, addr)
		require.ErrorIs(t, err, fs.ErrNotExist)
		assert.Contains(t, err.Error(), missing)
		assert.Equal(t, []Frame{{}}, got)
	})
	t.Run("missing-file-found-by-build-id", func(t *testing.T) {
		s := New(Options{DebugDirs: []string{dd}})
		defer s.Close()
		got, err := s.Symbolize(Module{Path: filepath.Join(dir, "deleted"), BuildID: aID}, addr)
		require.NoError(t, err)
		assert.Equal(t, a.want(t, "leaf"), got)
	})
	t.Run("not-elf", func(t *testing.T) {
		s := New(Options{DebugDirs: []string{t.TempDir()}})
		defer s.Close()
		got, err := s.Symbolize(Module{Path: a.src}, addr)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "not a readable ELF file")
		assert.Equal(t, []Frame{{}}, got)
	})
	t.Run("address-outside-code", func(t *testing.T) {
		s := New(Options{DebugDirs: []string{t.TempDir()}})
		defer s.Close()
		got, err := s.Symbolize(Module{Path: a.exe}, 1<<40)
		require.ErrorIs(t, err, ErrNoFunction)
		assert.Equal(t, []Frame{{}}, got)
	})
}

// Each module is opened once and each address resolved once: the second
// call returns the very same slice.
func TestCaching(t *testing.T) {
	p := buildInline(t, t.TempDir(), "-O2", "-gdwarf-5")
	s := New(Options{DebugDirs: []string{t.TempDir()}})
	defer s.Close()
	m := Module{Path: p.exe}
	first, err := s.Symbolize(m, p.probes["leaf"].addr)
	require.NoError(t, err)
	mod := s.modules[p.exe][""]
	require.NotNil(t, mod)
	_, err = s.Symbolize(m, p.probes["main"].addr)
	require.NoError(t, err)
	again, err := s.Symbolize(Module{Path: p.exe}, p.probes["leaf"].addr)
	require.NoError(t, err)
	assert.Same(t, &first[0], &again[0])
	assert.Same(t, mod, s.modules[p.exe][""])
	assert.Len(t, s.modules, 1)
	assert.Len(t, mod.results, 2)
	// A different build ID for the same path is a different module.
	_, err = s.Symbolize(Module{Path: p.exe, BuildID: []byte{1, 2, 3}}, p.probes["leaf"].addr)
	require.ErrorIs(t, err, ErrBuildIDMismatch)
	assert.Len(t, s.modules[p.exe], 2)
}

func TestAsmLabelledCFunction(t *testing.T) {
	dir := t.TempDir()
	copySources(t, dir, "label.c")
	runCmd(t, dir, needTool(t, "gcc"), "-g", "-O2", "-fno-optimize-sibling-calls", "label.c", "-o", "label")
	exe, src := filepath.Join(dir, "label"), filepath.Join(dir, "label.c")
	// The case under test exists: readelf shows the label as linkage name.
	info := runCmd(t, "", needTool(t, "readelf"), "--debug-dump=info", exe)
	require.Contains(t, info, "DW_AT_linkage_name")
	require.Contains(t, info, "renamed_impl")

	probes := runProbes(t, dir, exe)
	s := New(Options{DebugDirs: []string{t.TempDir()}})
	defer s.Close()
	got, err := s.Symbolize(Module{Path: exe}, probes["renamed"].addr)
	require.NoError(t, err)
	assert.Equal(t, []Frame{{Function: "renamed", File: src, Line: markerLine(t, src, "renamed")}}, got)
}
