// Package report turns a process's final state (engine.Process) into what
// users read: pprof heap profiles, LeakSanitizer-style leak reports (text
// and JSON), a Chrome/Perfetto trace of the heap over time, and the
// one-screen summary. Report functions write to an io.Writer;
// WriteFileAtomic puts them into files without ever leaving one
// half-written.
package report

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

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
	Warnings []SymbolWarning
}

// SymbolWarning is why the frames of one module are degraded.
type SymbolWarning struct {
	Path string
	Err  error
}

// SavedWarning is a SymbolWarning as plain data, for a checkpoint: the
// warnings of processes reported before an analyzer died are said by the
// one that resumes its ring, at its end.
type SavedWarning struct {
	Path string `json:"path"`
	// Kind is "no-debug-info" or "no-symbols" (symbolize's errors), or
	// "" with Message saying why.
	Kind    string `json:"kind,omitempty"`
	Message string `json:"message,omitempty"`
}

// Saved is w as plain data.
func (w SymbolWarning) Saved() SavedWarning {
	switch {
	case errors.Is(w.Err, symbolize.ErrNoDebugInfo):
		return SavedWarning{Path: w.Path, Kind: "no-debug-info"}
	case errors.Is(w.Err, symbolize.ErrNoSymbols):
		return SavedWarning{Path: w.Path, Kind: "no-symbols"}
	}
	return SavedWarning{Path: w.Path, Message: fmt.Sprint(w.Err)}
}

// RestoreWarnings adds saved warnings, but for modules s has one of.
func (s *Symbols) RestoreWarnings(ws []SavedWarning) {
	for _, w := range ws {
		if s.warned[w.Path] {
			continue
		}
		s.warned[w.Path] = true
		err := errors.New(w.Message)
		switch w.Kind {
		case "no-debug-info":
			err = symbolize.ErrNoDebugInfo
		case "no-symbols":
			err = symbolize.ErrNoSymbols
		}
		s.Warnings = append(s.Warnings, SymbolWarning{Path: w.Path, Err: err})
	}
}

// NewSymbols returns a resolver using sym (nil: a default
// symbolize.Symbolizer).
func NewSymbols(sym Symbolizer) *Symbols {
	if sym == nil {
		sym = symbolize.New(symbolize.Options{})
	}
	return &Symbols{sym: sym, cache: map[symKey][]symbolize.Frame{}, warned: map[string]bool{}}
}

// SaveCache writes what the Symbolizer keeps across runs, when it does
// (*symbolize.Symbolizer.SaveCache).
func (s *Symbols) SaveCache() error {
	if c, ok := s.sym.(interface{ SaveCache() error }); ok {
		return c.SaveCache()
	}
	return nil
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
			s.Warnings = append(s.Warnings, SymbolWarning{Path: path, Err: err})
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

// Text is the one line said about the module: for a missing debug file,
// the package that would provide it when pkgs (DebugPackages) names one.
func (w SymbolWarning) Text(pkgs map[string]string) string {
	var msg string
	switch {
	case errors.Is(w.Err, symbolize.ErrNoDebugInfo):
		msg = fmt.Sprintf("no debug info for %s: its frames have functions, no file:line", w.Path)
	case errors.Is(w.Err, symbolize.ErrNoSymbols):
		msg = fmt.Sprintf("no symbols for %s: its frames are addresses", w.Path)
	default:
		return fmt.Sprintf("%s: %v", w.Path, w.Err)
	}
	if pkg := pkgs[w.Path]; pkg != "" {
		msg += " (install " + pkg + ")"
	}
	return msg
}
