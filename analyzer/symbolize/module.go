package symbolize

import (
	"bytes"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// Reasons a result is degraded, for errors.Is. The errors returned by
// Symbolize wrap one of these (or an fs error such as fs.ErrNotExist when
// the object cannot be opened) and name the module.
var (
	// ErrNoDebugInfo: neither the object nor a separate debug file has
	// DWARF; functions come from ELF symbols, with no file or line.
	ErrNoDebugInfo = errors.New("no DWARF debug info")
	// ErrNoSymbols: the object has neither DWARF nor function symbols.
	ErrNoSymbols = errors.New("no symbols")
	// ErrBuildIDMismatch: the file on disk is not the one the process
	// mapped; its contents are not trusted.
	ErrBuildIDMismatch = errors.New("build ID mismatch")
	// ErrNoFunction: nothing in the module names a function at the address.
	ErrNoFunction = errors.New("no function at address")
)

// module is one object file with what is needed to resolve its addresses.
type module struct {
	path    string
	files   []*elfFile // mapped, closed by Symbolizer.Close
	symtab  *symtab    // .symtab of the object, else of its debug file
	dynsym  *symtab
	dwarf   *dwarfIndex
	err     error // why every result of this module is degraded, or nil
	results map[uint64]result
}

type result struct {
	frames []Frame
	err    error
}

// openModule finds the object and its debug info. It never fails: what
// could not be found is recorded in mod.err.
func (s *Symbolizer) openModule(m Module) *module {
	mod := &module{path: m.Path, results: map[uint64]result{}}
	obj, err := openELF(m.Path)
	var objErr error
	want := m.BuildID
	if err != nil {
		objErr = fmt.Errorf("module %s: %w", m.Path, err)
	} else {
		got := obj.buildID()
		if len(m.BuildID) > 0 && !bytes.Equal(got, m.BuildID) {
			objErr = fmt.Errorf("module %s: %w: the process mapped build ID %x, the file on disk has %s",
				m.Path, ErrBuildIDMismatch, m.BuildID, describeBuildID(got))
			obj.close()
			obj = nil
		} else {
			mod.files = append(mod.files, obj)
			if len(want) == 0 {
				want = got
			}
		}
	}

	// Separate debug info, when the object carries none (or is not the
	// right object but the build ID finds its debug file).
	var dbg *elfFile
	var searched []string
	if obj == nil || !obj.hasDWARF() {
		if len(want) > 0 {
			dbg, searched = s.findByBuildID(want)
		}
		if dbg == nil && obj != nil {
			var more []string
			dbg, more = s.findByDebuglink(obj, m.Path, want)
			searched = append(searched, more...)
		}
		if dbg != nil {
			mod.files = append(mod.files, dbg)
		}
	}
	if obj == nil && dbg == nil {
		mod.err = objErr
		return mod
	}

	var dwarfFile *elfFile
	switch {
	case obj != nil && obj.hasDWARF():
		dwarfFile = obj
	case dbg != nil && dbg.hasDWARF():
		dwarfFile = dbg
	}
	var dwarfErr error
	if dwarfFile != nil {
		d, err := loadDWARF(dwarfFile)
		if err == nil {
			mod.dwarf, err = newDWARFIndex(d)
		}
		if err != nil {
			dwarfErr = fmt.Errorf("module %s: DWARF in %s unreadable (%v): %w", m.Path, dwarfFile.path, err, ErrNoDebugInfo)
			mod.dwarf = nil
		}
	}

	var symErrs []error
	for _, f := range []*elfFile{obj, dbg} {
		if f == nil || mod.symtab != nil {
			continue
		}
		t, err := readSymtab(f, elf.SHT_SYMTAB)
		if err != nil {
			symErrs = append(symErrs, fmt.Errorf("%s: %w", f.path, err))
		} else if t != nil && len(t.syms) > 0 {
			mod.symtab = t
		}
	}
	if obj != nil {
		t, err := readSymtab(obj, elf.SHT_DYNSYM)
		if err != nil {
			symErrs = append(symErrs, fmt.Errorf("%s: %w", obj.path, err))
		} else if t != nil && len(t.syms) > 0 {
			mod.dynsym = t
		}
	}

	switch {
	case dwarfErr != nil:
		mod.err = dwarfErr
	case mod.dwarf == nil && mod.symtab == nil && mod.dynsym == nil:
		mod.err = fmt.Errorf("module %s: %w (no DWARF, .symtab or .dynsym%s)%s", m.Path, ErrNoSymbols, searchedNote(searched), joinNote(symErrs))
	case mod.dwarf == nil:
		mod.err = fmt.Errorf("module %s: %w (no debug sections%s); function names from ELF symbols only%s", m.Path, ErrNoDebugInfo, searchedNote(searched), joinNote(symErrs))
	}
	return mod
}

func describeBuildID(id []byte) string {
	if len(id) == 0 {
		return "none"
	}
	return hex.EncodeToString(id)
}

func searchedNote(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	s := ", no separate debug file at"
	for i, p := range paths {
		if i > 0 {
			s += ","
		}
		s += " " + p
	}
	return s
}

func joinNote(errs []error) string {
	if len(errs) == 0 {
		return ""
	}
	return "; " + errors.Join(errs...).Error()
}

// findByBuildID looks for DIR/.build-id/xx/rest.debug in each debug
// directory and accepts a file only if its build ID matches.
func (s *Symbolizer) findByBuildID(id []byte) (*elfFile, []string) {
	if len(id) < 2 {
		return nil, nil
	}
	h := hex.EncodeToString(id)
	var tried []string
	for _, dir := range s.opts.DebugDirs {
		p := filepath.Join(dir, ".build-id", h[:2], h[2:]+".debug")
		tried = append(tried, p)
		f, err := openELF(p)
		if err != nil {
			continue
		}
		if !bytes.Equal(f.buildID(), id) {
			f.close()
			continue
		}
		return f, tried
	}
	return nil, tried
}

// findByDebuglink follows .gnu_debuglink as gdb does: NAME beside the
// object, in .debug/ beside it, and under each debug directory by the
// object's absolute directory. The CRC32 of the candidate must match
// (and its build ID too, when both files have one).
func (s *Symbolizer) findByDebuglink(obj *elfFile, path string, buildID []byte) (*elfFile, []string) {
	name, crc, ok := obj.debuglink()
	if !ok {
		return nil, nil
	}
	var dirs []string
	if abs, err := filepath.Abs(filepath.Dir(path)); err == nil {
		dirs = append(dirs, abs)
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		if abs, err := filepath.Abs(filepath.Dir(real)); err == nil && (len(dirs) == 0 || abs != dirs[0]) {
			dirs = append(dirs, abs)
		}
	}
	var candidates []string
	for _, d := range dirs {
		candidates = append(candidates, filepath.Join(d, name), filepath.Join(d, ".debug", name))
	}
	for _, dd := range s.opts.DebugDirs {
		for _, d := range dirs {
			candidates = append(candidates, filepath.Join(dd, d, name))
		}
	}
	objInfo, _ := os.Stat(path)
	var tried []string
	seen := map[string]bool{}
	for _, c := range candidates {
		if seen[c] {
			continue
		}
		seen[c] = true
		tried = append(tried, c)
		if st, err := os.Stat(c); err != nil || (objInfo != nil && os.SameFile(st, objInfo)) {
			continue
		}
		f, err := openELF(c)
		if err != nil {
			continue
		}
		if crc32.ChecksumIEEE(f.data) != crc {
			f.close()
			continue
		}
		if id := f.buildID(); len(id) > 0 && len(buildID) > 0 && !bytes.Equal(id, buildID) {
			f.close()
			continue
		}
		return f, tried
	}
	return nil, tried
}

// symbolize resolves one address of the module.
func (mod *module) symbolize(pc uint64) ([]Frame, error) {
	var frames []Frame
	var err error
	if mod.dwarf != nil {
		frames, err = mod.dwarf.frames(pc, mod.symbolAt)
		if err != nil {
			err = fmt.Errorf("module %s: address %#x: %w", mod.path, pc, err)
		}
	}
	if len(frames) == 0 || frames[len(frames)-1].Function == "" {
		name, ok := mod.symtab.lookup(pc)
		if !ok {
			name, ok = mod.dynsym.lookup(pc)
		}
		if ok {
			if len(frames) == 0 {
				frames = []Frame{{}}
			}
			frames[len(frames)-1].Function = demangleName(name)
		}
	}
	if mod.err != nil && err == nil {
		err = mod.err
	}
	// Line info without any function (alignment padding between
	// functions) is not a location anyone can use.
	if len(frames) == 0 || (len(frames) == 1 && frames[0].Function == "") {
		if err == nil {
			err = fmt.Errorf("module %s: %w %#x", mod.path, ErrNoFunction, pc)
		}
		return []Frame{{}}, err
	}
	return frames, err
}

// symbolAt is the raw name of the symbol starting at pc, from .symtab or
// .dynsym.
func (mod *module) symbolAt(pc uint64) string {
	if name := mod.symtab.at(pc); name != "" {
		return name
	}
	return mod.dynsym.at(pc)
}

func (mod *module) close() {
	for _, f := range mod.files {
		f.close()
	}
	mod.files = nil
}
