// Package symbolize turns addresses in loaded objects into functions, files
// and lines, in Go: ELF symbol tables, DWARF line tables with inlined
// frames, separate debug files found by build ID or .gnu_debuglink, and C++
// and Rust demangling. Each module is opened once and cached; each unique
// address is resolved once.
//
// Where answers come from, for an address in a module:
//
//   - DWARF, from the object itself or a separate debug file: the object's
//     build ID under each DebugDirs/.build-id/, then its .gnu_debuglink
//     (CRC32 checked) beside it, in .debug/ beside it, and under each debug
//     directory by its absolute directory. Compilation units are found by
//     address range (O(log n)); a unit's line table and function index are
//     built on first use, and a function's inlined subroutines are read only
//     for the addresses looked up. Frames: one per inlined subroutine
//     (DW_AT_call_file/line give the caller's line) plus the function.
//   - Otherwise the ELF .symtab (of the object, else of its debug file), then
//     .dynsym: the sized symbol containing the address; a symbol of size 0
//     only if it is the nearest one below and in the same section. Alignment
//     padding between functions resolves to nothing.
//
// Function names are demangled in full, as addr2line -C, c++filt and gdb
// print them (GNU style): "ns::Box<long>::get(int) const",
// "main::{lambda(int)#1}::operator()(int) const", Rust paths without hash
// ("core::ptr::drop_in_place<...>"). GCC clone suffixes ("[clone .isra.0]")
// are dropped. A function whose DWARF has only a bare DW_AT_name (GCC
// lambdas) takes the mangled ELF symbol at its entry, as addr2line does. An
// unmangled DW_AT_linkage_name (a C asm label: glibc's "__GI___libc_malloc")
// loses to the source name ("__libc_malloc"); addr2line prints the label.
// File names are DW_AT_comp_dir and the line table's directory joined and
// cleaned ("/src/./a.c" is "/src/a.c"); in DWARF 5 directory 0 is the
// compilation directory itself and is not joined twice (binutils 2.40 and
// LLVM 14 print glibc's "./stdlib/./stdlib/abort.c", this package
// "stdlib/abort.c").
//
// Objects are mapped read-only; uncompressed DWARF and symbol tables are used
// in place (page cache, not Go heap). Call Close to unmap them.
package symbolize

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Module identifies an object file as the target process had it mapped.
type Module struct {
	Path    string // as the dynamic loader reported it
	BuildID []byte // GNU build ID, nil if none
}

// Frame is one source-level frame. An address inside inlined code yields
// several frames, innermost first; all but the last have Inlined set.
type Frame struct {
	Function string // demangled; "" when nothing is known
	File     string // "" when there is no line information
	Line     int    // 0 when unknown
	Inlined  bool
}

// Options configures a Symbolizer.
type Options struct {
	// DebugDirs are searched for separate debug files
	// (DIR/.build-id/xx/rest.debug, and .gnu_debuglink names beside the
	// object, in DIR/.debug/ and DIR/<object dir>/). Default: /usr/lib/debug.
	DebugDirs []string
	// CacheDir, if set, keeps the frames of addresses resolved with DWARF
	// across runs, per build ID (diskcache.go); SaveCache writes them.
	CacheDir string
}

// Symbolizer resolves addresses. It is safe for use by one goroutine at a time.
type Symbolizer struct {
	opts Options
	// modules[path][string(buildID)]: a module is identified by both, so
	// a rebuilt binary at the same path is a different module.
	modules map[string]map[string]*module
	last    *module // the module of the previous call, checked first
	lastID  string
	cache   *diskCache // nil without Options.CacheDir
}

// New returns a Symbolizer with empty caches.
func New(opts Options) *Symbolizer {
	if len(opts.DebugDirs) == 0 {
		opts.DebugDirs = []string{"/usr/lib/debug"}
	}
	s := &Symbolizer{opts: opts, modules: map[string]map[string]*module{}}
	if opts.CacheDir != "" {
		s.cache = newDiskCache(opts.CacheDir)
	}
	return s
}

// SaveCache writes the frames resolved with DWARF in this run to the cache
// directory (Options.CacheDir; nothing without one).
func (s *Symbolizer) SaveCache() error {
	if s.cache == nil {
		return nil
	}
	return s.cache.save()
}

// Symbolize returns the frames at fileAddr, an address in m's ELF virtual
// address space (runtime address minus the module's load bias). Callers
// pass a return address minus one for every frame but a faulting one, so
// that the call instruction is looked up. It never fails: an object that
// cannot be read or has no symbol there gives one Frame with empty
// Function, and the caller prints module+offset. The error, if any, says
// why the result is degraded (reported once per module by the caller); it
// wraps ErrNoDebugInfo, ErrNoSymbols, ErrBuildIDMismatch, ErrNoFunction or
// the error opening the file.
//
// Results are memoized: the returned slice is shared by every call for the
// same address and must not be modified.
func (s *Symbolizer) Symbolize(m Module, fileAddr uint64) ([]Frame, error) {
	if s.modules == nil { // a zero Symbolizer, not from New
		*s = *New(s.opts)
	}
	mod := s.last
	if mod == nil || mod.path != m.Path || s.lastID != string(m.BuildID) {
		mod = s.modules[m.Path][string(m.BuildID)]
		if mod == nil {
			// A run that meets only addresses cached by earlier runs
			// never opens the module.
			if s.cache != nil && len(m.BuildID) > 0 {
				if fr, ok := s.cache.lookup(m.BuildID, fileAddr); ok {
					return fr, nil
				}
			}
			mod = s.open(m)
		}
		s.last, s.lastID = mod, string(m.BuildID)
	}
	if r, ok := mod.results[fileAddr]; ok {
		return r.frames, r.err
	}
	cacheable := s.cache != nil && len(m.BuildID) > 0 && mod.dwarf != nil && mod.err == nil
	if cacheable {
		if fr, ok := s.cache.lookup(m.BuildID, fileAddr); ok {
			mod.results[fileAddr] = result{fr, nil}
			return fr, nil
		}
	}
	frames, err := guarded(mod.path, func() ([]Frame, error) { return mod.symbolize(fileAddr) })
	mod.results[fileAddr] = result{frames, err}
	if cacheable && err == nil {
		s.cache.add(m.BuildID, fileAddr, frames)
	}
	return frames, err
}

func (s *Symbolizer) open(m Module) *module {
	var mod *module
	_, err := guarded(m.Path, func() ([]Frame, error) {
		mod = s.openModule(m)
		return nil, nil
	})
	if err != nil {
		if mod != nil {
			mod.close()
		}
		mod = &module{path: m.Path, results: map[uint64]result{}, err: err}
	}
	byID := s.modules[m.Path]
	if byID == nil {
		byID = map[string]*module{}
		s.modules[m.Path] = byID
	}
	byID[string(m.BuildID)] = mod
	return mod
}

// guarded runs f, turning a fault on mapped memory (a file truncated on
// disk while we read it) or a panic in a DWARF parser fed a damaged file
// into an error: a bad input file must not take the analyzer down.
func guarded(path string, f func() ([]Frame, error)) (frames []Frame, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if re, ok := r.(runtime.Error); ok {
				if _, fault := r.(interface{ Addr() uintptr }); fault {
					err = fmt.Errorf("module %s: file changed or truncated while reading it: %v", path, re)
					frames = []Frame{{}}
					return
				}
			}
			err = fmt.Errorf("module %s: damaged object file: %v", path, r)
			frames = []Frame{{}}
		}
	}()
	return f()
}

// Close releases the mapped files. The Symbolizer must not be used after.
func (s *Symbolizer) Close() error {
	for _, byID := range s.modules {
		for _, mod := range byID {
			mod.close()
		}
	}
	s.modules = map[string]map[string]*module{}
	s.last = nil
	return nil
}
