package symbolize

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// elfFile is an ELF object mapped read-only into memory. Uncompressed
// sections (symbol tables, most DWARF) are used in place, so a 100 MB debug
// file costs page cache, not Go heap. A file truncated on disk while mapped
// faults on access; Symbolize turns that fault into an error
// (debug.SetPanicOnFault), never a crash.
type elfFile struct {
	path string
	data []byte // the whole file, mapped; nil after close
	f    *elf.File
}

func openELF(path string) (*elfFile, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	size := st.Size()
	if size == 0 {
		return nil, fmt.Errorf("%s: empty file", path)
	}
	if int64(int(size)) != size {
		return nil, fmt.Errorf("%s: file too large to map (%d bytes)", path, size)
	}
	data, err := syscall.Mmap(int(fd.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		syscall.Munmap(data)
		return nil, fmt.Errorf("%s: not a readable ELF file: %w", path, err)
	}
	return &elfFile{path: path, data: data, f: f}, nil
}

func (e *elfFile) close() {
	if e == nil || e.data == nil {
		return
	}
	syscall.Munmap(e.data)
	e.data = nil
}

// sectionBytes returns the contents of s: a slice of the mapping when the
// section is stored uncompressed, a decompressed copy otherwise.
func (e *elfFile) sectionBytes(s *elf.Section) ([]byte, error) {
	if s.Type == elf.SHT_NOBITS {
		return nil, nil
	}
	if s.Flags&elf.SHF_COMPRESSED == 0 && !strings.HasPrefix(s.Name, ".zdebug_") {
		end := s.Offset + s.FileSize
		if end < s.Offset || end > uint64(len(e.data)) {
			return nil, fmt.Errorf("section %s: extends past end of file", s.Name)
		}
		return e.data[s.Offset:end:end], nil
	}
	b, err := s.Data()
	if err != nil {
		return nil, fmt.Errorf("section %s: %w", s.Name, err)
	}
	return b, nil
}

// hasDWARF reports whether the file carries its own debug info (not a
// stripped object whose debug sections were removed or left NOBITS).
func (e *elfFile) hasDWARF() bool {
	for _, name := range []string{".debug_info", ".zdebug_info"} {
		if s := e.f.Section(name); s != nil && s.Type != elf.SHT_NOBITS && s.Size > 0 {
			return true
		}
	}
	return false
}

// buildID returns the GNU build ID note's descriptor, or nil.
func (e *elfFile) buildID() []byte {
	// The note usually has its own section; fall back to PT_NOTE segments
	// for objects whose section headers were stripped.
	for _, s := range e.f.Sections {
		if s.Type != elf.SHT_NOTE {
			continue
		}
		if b, err := e.sectionBytes(s); err == nil {
			if id := findBuildIDNote(b, e.f.ByteOrder); id != nil {
				return id
			}
		}
	}
	for _, p := range e.f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		end := p.Off + p.Filesz
		if end < p.Off || end > uint64(len(e.data)) {
			continue
		}
		if id := findBuildIDNote(e.data[p.Off:end], e.f.ByteOrder); id != nil {
			return id
		}
	}
	return nil
}

// findBuildIDNote scans ELF notes (namesz, descsz, type, name, desc; each
// field padded to 4 bytes) for NT_GNU_BUILD_ID owned by "GNU".
func findBuildIDNote(b []byte, order interface{ Uint32([]byte) uint32 }) []byte {
	const ntGNUBuildID = 3
	align4 := func(n uint64) uint64 { return (n + 3) &^ 3 }
	for len(b) >= 12 {
		namesz := uint64(order.Uint32(b[0:]))
		descsz := uint64(order.Uint32(b[4:]))
		typ := order.Uint32(b[8:])
		b = b[12:]
		nameEnd := align4(namesz)
		if nameEnd > uint64(len(b)) {
			return nil
		}
		name := b[:namesz]
		b = b[nameEnd:]
		descEnd := align4(descsz)
		if descsz > uint64(len(b)) {
			return nil
		}
		desc := b[:descsz]
		if descEnd > uint64(len(b)) {
			descEnd = uint64(len(b))
		}
		b = b[descEnd:]
		if typ == ntGNUBuildID && string(name) == "GNU\x00" && descsz > 0 {
			return bytes.Clone(desc)
		}
	}
	return nil
}

// debuglink returns the .gnu_debuglink file name and CRC32, if any.
func (e *elfFile) debuglink() (name string, crc uint32, ok bool) {
	s := e.f.Section(".gnu_debuglink")
	if s == nil {
		return "", 0, false
	}
	b, err := e.sectionBytes(s)
	if err != nil {
		return "", 0, false
	}
	nul := bytes.IndexByte(b, 0)
	if nul <= 0 {
		return "", 0, false
	}
	crcOff := (nul + 4) &^ 3
	if crcOff+4 > len(b) {
		return "", 0, false
	}
	return string(b[:nul]), e.f.ByteOrder.Uint32(b[crcOff:]), true
}
