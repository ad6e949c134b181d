package symbolize

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// Benchmarks run on a large Go binary with DWARF (memscope-analyze, or this
// package's test binary if cmd/ does not build right now) and on
// /usr/bin/python3 (stripped: .dynsym only).
//
//	go test -run '^$' -bench . -benchmem ./analyzer/symbolize/

var (
	bigBinaryOnce sync.Once
	bigBinaryPath string
	bigBinaryErr  string
)

// TestMain removes the binary the benchmarks built.
func TestMain(m *testing.M) {
	code := m.Run()
	if bigBinaryPath != "" {
		os.RemoveAll(filepath.Dir(bigBinaryPath))
	}
	os.Exit(code)
}

func bigGoBinary(b *testing.B) string {
	bigBinaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "symbolize-bench")
		if err != nil {
			bigBinaryErr = err.Error()
			return
		}
		gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
		out := filepath.Join(dir, "memscope-analyze")
		cmd := exec.Command(gobin, "build", "-o", out, "memscope/cmd/memscope-analyze")
		if msg, err := cmd.CombinedOutput(); err != nil {
			// Other packages may be mid-edit; this package's test
			// binary is a large Go binary too.
			out = filepath.Join(dir, "symbolize.test")
			cmd = exec.Command(gobin, "test", "-c", "-o", out, "memscope/analyzer/symbolize")
			if msg2, err := cmd.CombinedOutput(); err != nil {
				bigBinaryErr = string(msg) + string(msg2)
				return
			}
		}
		bigBinaryPath = out
	})
	if bigBinaryPath == "" {
		b.Fatalf("building a Go binary: %s", bigBinaryErr)
	}
	if st, err := os.Stat(bigBinaryPath); err == nil {
		b.Logf("binary: %s, %d bytes", filepath.Base(bigBinaryPath), st.Size())
	}
	return bigBinaryPath
}

// functionAddrs returns an address inside every sized function symbol
// (read with debug/elf): entries plus a quarter of the size.
func functionAddrs(b *testing.B, path string, dynamic bool) []uint64 {
	f, err := elf.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	syms, err := f.Symbols()
	if dynamic || err != nil {
		syms, err = f.DynamicSymbols()
	}
	if err != nil {
		b.Fatal(err)
	}
	var addrs []uint64
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Size > 0 && s.Section != elf.SHN_UNDEF {
			addrs = append(addrs, s.Value+s.Size/4)
		}
	}
	if len(addrs) == 0 {
		b.Fatalf("%s: no function symbols", path)
	}
	return addrs
}

func benchOpen(b *testing.B, path string) {
	addrs := functionAddrs(b, path, false)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := New(Options{DebugDirs: []string{b.TempDir()}})
		if fr, _ := s.Symbolize(Module{Path: path}, addrs[len(addrs)/2]); fr[0].Function == "" {
			b.Fatal("not symbolized")
		}
		s.Close()
	}
}

// Open a module and resolve its first address: ELF headers, symbol tables,
// the DWARF unit index, and one unit's line table and function index.
func BenchmarkOpenGoBinary(b *testing.B) { benchOpen(b, bigGoBinary(b)) }

func BenchmarkOpenPython3(b *testing.B) {
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		b.Skip("no /usr/bin/python3")
	}
	benchOpen(b, "/usr/bin/python3")
}

// Resolve one address in every function of the binary with a fresh
// Symbolizer: every unit's tables get built. Reports ns per address and
// the heap the Symbolizer holds afterwards.
func BenchmarkColdEveryFunction(b *testing.B) {
	path := bigGoBinary(b)
	addrs := functionAddrs(b, path, false)
	var heap uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := New(Options{DebugDirs: []string{b.TempDir()}})
		var before, after runtime.MemStats
		if i == 0 {
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&before)
			b.StartTimer()
		}
		for _, a := range addrs {
			s.Symbolize(Module{Path: path}, a)
		}
		if i == 0 {
			b.StopTimer()
			runtime.GC()
			runtime.ReadMemStats(&after)
			heap = after.HeapAlloc - before.HeapAlloc
			b.StartTimer()
		}
		s.Close()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(addrs)), "ns/addr")
	b.ReportMetric(float64(len(addrs)), "addrs")
	b.ReportMetric(float64(heap)/(1<<20), "heap-MB")
}

// Lookups with warm module indexes but no memoized answer.
func BenchmarkLookupUncached(b *testing.B) {
	s, m, addrs := warmGoBinary(b)
	lookupUncached(b, s, m, addrs)
}

// warmGoBinary returns a Symbolizer that has resolved one address in
// every function of the big Go binary, that module, and the addresses.
func warmGoBinary(b *testing.B) (*Symbolizer, Module, []uint64) {
	path := bigGoBinary(b)
	addrs := functionAddrs(b, path, false)
	s := New(Options{DebugDirs: []string{b.TempDir()}})
	b.Cleanup(func() { s.Close() })
	m := Module{Path: path}
	for _, a := range addrs {
		s.Symbolize(m, a)
	}
	return s, m, addrs
}

// lookupUncached times lookups of addrs in m, whose module index s has
// built, forgetting the memoized answers at the start of each pass.
func lookupUncached(b *testing.B, s *Symbolizer, m Module, addrs []uint64) {
	mod := s.modules[m.Path][""]
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % len(addrs)
		if k == 0 {
			clear(mod.results)
		}
		s.Symbolize(m, addrs[k])
	}
}

// Lookups answered from the memo.
func BenchmarkLookupCached(b *testing.B) {
	s, m, addrs := warmGoBinary(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Symbolize(m, addrs[i%len(addrs)])
	}
}

// Symbol-table-only lookups (python3's .dynsym), uncached.
func BenchmarkLookupUncachedSymbolsOnly(b *testing.B) {
	const path = "/usr/bin/python3"
	if _, err := os.Stat(path); err != nil {
		b.Skip("no /usr/bin/python3")
	}
	addrs := functionAddrs(b, path, true)
	s := New(Options{DebugDirs: []string{b.TempDir()}})
	defer s.Close()
	m := Module{Path: path}
	s.Symbolize(m, addrs[0])
	lookupUncached(b, s, m, addrs)
}
