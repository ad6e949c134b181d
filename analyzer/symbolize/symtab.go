package symbolize

import (
	"bytes"
	"debug/elf"
	"fmt"
	"sort"
)

// symbol is one function symbol, 24 bytes: the name stays in the mapped
// string table until it is needed.
type symbol struct {
	value, size uint64
	name        uint32 // offset into the string table
	shndx       uint16
	rank        uint8 // preference among symbols at one address, higher wins
}

// symtab is a function symbol table (.symtab or .dynsym) sorted for
// address lookup.
type symtab struct {
	syms     []symbol  // sorted by value, then rank, then name: preferred last
	sized    spanIndex // over symbols with size > 0; ids index syms
	strtab   []byte
	sections []elf.SectionHeader
}

// readSymtab parses the section of type typ (SHT_SYMTAB or SHT_DYNSYM).
// It returns nil, nil when the file has no such table.
func readSymtab(e *elfFile, typ elf.SectionType) (*symtab, error) {
	var sec *elf.Section
	for _, s := range e.f.Sections {
		if s.Type == typ {
			sec = s
			break
		}
	}
	if sec == nil {
		return nil, nil
	}
	if int(sec.Link) <= 0 || int(sec.Link) >= len(e.f.Sections) {
		return nil, fmt.Errorf("%s: bad string table link %d", sec.Name, sec.Link)
	}
	data, err := e.sectionBytes(sec)
	if err != nil {
		return nil, err
	}
	strtab, err := e.sectionBytes(e.f.Sections[sec.Link])
	if err != nil {
		return nil, err
	}
	is64 := e.f.Class == elf.ELFCLASS64
	entSize := 16
	if is64 {
		entSize = 24
	}
	order := e.f.ByteOrder
	t := &symtab{strtab: strtab}
	for _, s := range e.f.Sections {
		t.sections = append(t.sections, s.SectionHeader)
	}
	for off := entSize; off+entSize <= len(data); off += entSize { // entry 0 is the null symbol
		b := data[off : off+entSize]
		var s symbol
		var info uint8
		s.name = order.Uint32(b[0:])
		if is64 {
			info = b[4]
			s.shndx = order.Uint16(b[6:])
			s.value = order.Uint64(b[8:])
			s.size = order.Uint64(b[16:])
		} else {
			s.value = uint64(order.Uint32(b[4:]))
			s.size = uint64(order.Uint32(b[8:]))
			info = b[12]
			s.shndx = order.Uint16(b[14:])
		}
		if s.shndx == uint16(elf.SHN_UNDEF) || s.shndx >= uint16(elf.SHN_LORESERVE) {
			continue
		}
		switch elf.SymType(info & 0xf) {
		case elf.STT_FUNC, elf.STT_GNU_IFUNC:
		case elf.STT_NOTYPE:
			// Hand-written assembly labels; only in code, never
			// local labels or ARM/AArch64 mapping symbols.
			if int(s.shndx) >= len(t.sections) || t.sections[s.shndx].Flags&elf.SHF_EXECINSTR == 0 {
				continue
			}
			if n := t.nameBytes(s.name); len(n) == 0 || n[0] == '$' || bytes.HasPrefix(n, []byte(".L")) {
				continue
			}
		default:
			continue
		}
		name := t.nameBytes(s.name)
		if len(name) == 0 {
			continue
		}
		s.rank = symbolRank(elf.SymBind(info>>4), name)
		t.syms = append(t.syms, s)
	}
	sort.Slice(t.syms, func(i, j int) bool {
		a, b := &t.syms[i], &t.syms[j]
		if a.value != b.value {
			return a.value < b.value
		}
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		return bytes.Compare(t.nameBytes(a.name), t.nameBytes(b.name)) > 0 // alphabetically first wins
	})
	var spans []span
	for i, s := range t.syms {
		if s.size > 0 && s.value+s.size > s.value {
			spans = append(spans, span{lo: s.value, hi: s.value + s.size, id: int32(i)})
		}
	}
	t.sized = newSpanIndex(spans)
	return t, nil
}

// symbolRank orders aliases: global over weak over local, then fewer
// leading underscores (malloc over __libc_malloc).
func symbolRank(bind elf.SymBind, name []byte) uint8 {
	var r uint8
	switch bind {
	case elf.STB_GLOBAL:
		r = 2
	case elf.STB_WEAK:
		r = 1
	}
	u := len(name) - len(bytes.TrimLeft(name, "_"))
	if u > 3 {
		u = 3
	}
	return r<<2 | uint8(3-u)
}

func (t *symtab) nameBytes(off uint32) []byte {
	if int(off) >= len(t.strtab) {
		return nil
	}
	b := t.strtab[off:]
	if n := bytes.IndexByte(b, 0); n >= 0 {
		b = b[:n]
	}
	return b
}

func (t *symtab) nameAt(off uint32) string { return string(t.nameBytes(off)) }

// lookup returns the raw (mangled) name of the function symbol covering pc:
// the innermost sized symbol with value <= pc < value+size; failing that,
// the nearest symbol below pc if it has size 0 and lies in the same
// section as pc (hand-written assembly).
func (t *symtab) lookup(pc uint64) (string, bool) {
	if t == nil {
		return "", false
	}
	if id := t.sized.find(pc); id >= 0 {
		return t.nameAt(t.syms[id].name), true
	}
	i := sort.Search(len(t.syms), func(k int) bool { return t.syms[k].value > pc }) - 1
	if i < 0 {
		return "", false
	}
	// Among the symbols at the nearest address, the preferred size-0 one.
	v := t.syms[i].value
	for ; i >= 0 && t.syms[i].value == v; i-- {
		s := &t.syms[i]
		if s.size != 0 {
			continue
		}
		if int(s.shndx) < len(t.sections) {
			sh := &t.sections[s.shndx]
			if sh.Addr <= pc && pc-sh.Addr < sh.Size {
				return t.nameAt(s.name), true
			}
		}
		return "", false
	}
	return "", false
}

// at returns the raw name of the preferred function symbol whose value is
// exactly pc, or "".
func (t *symtab) at(pc uint64) string {
	if t == nil {
		return ""
	}
	i := sort.Search(len(t.syms), func(k int) bool { return t.syms[k].value > pc }) - 1
	if i < 0 || t.syms[i].value != pc {
		return ""
	}
	return t.nameAt(t.syms[i].name)
}
