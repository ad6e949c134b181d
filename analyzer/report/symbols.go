// Package report turns a process's final state (engine.Process) into what
// users read: pprof heap profiles, LeakSanitizer-style leak reports (text
// and JSON), a Chrome/Perfetto trace of the heap over time, and the
// one-screen summary. Report functions write to an io.Writer;
// WriteFileAtomic puts them into files without ever leaving one
// half-written.
package report

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"memscope/analyzer/engine"
	"memscope/analyzer/symbolize"
)

// Frame is one source-level frame of a stack, innermost first.
type Frame struct {
	Address  uint64 // runtime PC as recorded (a return address)
	Function string // "" if unknown
	File     string // "" if unknown
	Line     int    // 0 if unknown
	Inlined  bool   // inlined into the next frame (same Address)
	Module   string // path of the module holding Address, "" if none
	Offset   uint64 // Address - module load bias (the module's file address)
}

// pcInfo is what is known about one PC: its module and its source frames
// (several when inlined, innermost first; Function "" when unknown).
type pcInfo struct {
	pc     uint64
	module *engine.Module
	path   string // module path ("" main executable reported as the process's exe)
	frames []symbolize.Frame
}

type symKey struct {
	path, buildID string
	fileAddr      uint64
}

// Symbolizer is what Symbols needs of *symbolize.Symbolizer.
type Symbolizer interface {
	Symbolize(m symbolize.Module, fileAddr uint64) ([]symbolize.Frame, error)
}

// Symbols resolves PCs of one run through a Symbolizer, once per unique
// (module, address); it is shared by every report of the run.
type Symbols struct {
	sym    Symbolizer
	cache  map[symKey][]symbolize.Frame
	warned map[string]bool
	// Warnings says, once per module, why its frames are degraded
	// (unreadable object, no debug info...).
	Warnings []string
}

// NewSymbols returns a resolver using sym (nil: a default
// symbolize.Symbolizer).
func NewSymbols(sym Symbolizer) *Symbols {
	if sym == nil {
		sym = symbolize.New(symbolize.Options{})
	}
	return &Symbols{sym: sym, cache: map[symKey][]symbolize.Frame{}, warned: map[string]bool{}}
}

// isSelf reports a module of memscope's own interposer, whose frames never
// appear in reports.
func isSelf(path string) bool {
	return strings.HasPrefix(filepath.Base(path), "libmemscope")
}

func modulePath(p *engine.Process, m *engine.Module) string {
	if m.Path == "" {
		// dl_iterate_phdr names the main executable "".
		return p.Exe
	}
	return m.Path
}

// resolve looks pc up against the module mapped at ts.
func (s *Symbols) resolve(p *engine.Process, pc, ts uint64) pcInfo {
	m := p.ModuleAt(pc, ts)
	if m == nil {
		return pcInfo{pc: pc, frames: []symbolize.Frame{{}}}
	}
	path := modulePath(p, m)
	// A return address: look up the call instruction before it.
	fileAddr := pc - m.Bias
	if fileAddr > 0 {
		fileAddr--
	}
	k := symKey{path, string(m.BuildID), fileAddr}
	fr, ok := s.cache[k]
	if !ok {
		var err error
		fr, err = s.sym.Symbolize(symbolize.Module{Path: path, BuildID: m.BuildID}, fileAddr)
		if err != nil && !s.warned[path] {
			s.warned[path] = true
			s.Warnings = append(s.Warnings, symbolWarning(path, err))
		}
		if len(fr) == 0 {
			fr = []symbolize.Frame{{}}
		}
		s.cache[k] = fr
	}
	return pcInfo{pc: pc, module: m, path: path, frames: fr}
}

// stackPCs resolves a stack's PCs, dropping memscope's own frames.
func (s *Symbols) stackPCs(p *engine.Process, stackID, ts uint64) []pcInfo {
	pcs := p.Stacks[stackID]
	out := make([]pcInfo, 0, len(pcs))
	for _, pc := range pcs {
		info := s.resolve(p, pc, ts)
		if info.module != nil && isSelf(info.path) {
			continue
		}
		out = append(out, info)
	}
	return out
}

// Frames returns the source frames of a stack recorded at ts in p,
// innermost first, inlined frames expanded, memscope's own frames dropped.
func (s *Symbols) Frames(p *engine.Process, stackID, ts uint64) []Frame {
	var out []Frame
	for _, info := range s.stackPCs(p, stackID, ts) {
		for i, f := range info.frames {
			fr := Frame{Address: info.pc, Function: f.Function, File: f.File, Line: f.Line, Inlined: i < len(info.frames)-1}
			if info.module != nil {
				fr.Module, fr.Offset = info.path, info.pc-info.module.Bias
			}
			out = append(out, fr)
		}
	}
	return out
}

// symbolWarning is the one line said about a module that cannot be fully
// symbolized: for a missing debug file, which package would provide it
// where dpkg knows the module.
func symbolWarning(path string, err error) string {
	var msg string
	switch {
	case errors.Is(err, symbolize.ErrNoDebugInfo):
		msg = fmt.Sprintf("no debug info for %s: its frames have functions, no file:line", path)
	case errors.Is(err, symbolize.ErrNoSymbols):
		msg = fmt.Sprintf("no symbols for %s: its frames are addresses", path)
	default:
		return fmt.Sprintf("%s: %v", path, err)
	}
	if pkg := debugPackage(path); pkg != "" {
		msg += " (install " + pkg + ")"
	}
	return msg
}

// debugPackage guesses the Debian package with path's debug symbols:
// libc6-dbg for glibc's own libraries (known by name: dpkg-query costs
// about 0.15 s a call, it reads every package's file list), else
// PACKAGE-dbgsym of the package dpkg says owns path; "" when dpkg does not
// know it. One dpkg-query call asks for path and, for a merged /usr, the
// name dpkg may know it by (/bin/bash for /usr/bin/bash).
func debugPackage(path string) string {
	if isGlibcLibrary(filepath.Base(path)) {
		return "libc6-dbg"
	}
	args := []string{"-S", path}
	if rest, ok := strings.CutPrefix(path, "/usr"); ok && strings.HasPrefix(rest, "/") {
		args = append(args, rest)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// It exits 1 when a name is unknown, still printing the others.
	out, _ := exec.CommandContext(ctx, "dpkg-query", args...).Output()
	return dbgsymPackage(string(out))
}

// dbgsymPackage turns dpkg-query -S output ("PKG: PATH" lines) into the
// debug package of the first owner found.
func dbgsymPackage(out string) string {
	for _, line := range strings.Split(out, "\n") {
		pkg, _, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || pkg == "" || strings.ContainsAny(pkg, " ,") {
			continue
		}
		if pkg == "libc6" {
			return "libc6-dbg"
		}
		return pkg + "-dbgsym"
	}
	return ""
}

// isGlibcLibrary reports whether name is one of glibc's shared objects,
// whose debug symbols Debian ships in libc6-dbg.
func isGlibcLibrary(name string) bool {
	for _, lib := range []string{"libc.so.", "libm.so.", "libpthread.so.", "libdl.so.", "librt.so.", "libresolv.so.", "libutil.so.", "libanl.so.", "libnss_", "ld-linux"} {
		if strings.HasPrefix(name, lib) {
			return true
		}
	}
	return false
}
