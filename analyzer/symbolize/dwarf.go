package symbolize

import (
	"debug/dwarf"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
)

// loadDWARF builds dwarf.Data over the mapped sections of e, decompressing
// only compressed ones. Relocatable objects (never loaded by a process)
// go through debug/elf, which applies their relocations.
func loadDWARF(e *elfFile) (*dwarf.Data, error) {
	if e.f.Type == elf.ET_REL {
		return e.f.DWARF()
	}
	sections := map[string][]byte{}
	for _, s := range e.f.Sections {
		var suffix string
		switch {
		case strings.HasPrefix(s.Name, ".debug_"):
			suffix = s.Name[len(".debug_"):]
		case strings.HasPrefix(s.Name, ".zdebug_"):
			suffix = s.Name[len(".zdebug_"):]
		default:
			continue
		}
		if !neededDWARF[suffix] {
			continue // location lists, CFI, macros: decompressing them costs time for nothing
		}
		b, err := e.sectionBytes(s)
		if err != nil {
			return nil, err
		}
		sections[suffix] = b
	}
	d, err := dwarf.New(sections["abbrev"], nil, nil, sections["info"], sections["line"], nil, sections["ranges"], sections["str"])
	if err != nil {
		return nil, err
	}
	for suffix, b := range sections {
		switch suffix {
		case "abbrev", "info", "line", "ranges", "str":
		case "types":
			if err := d.AddTypes("types", b); err != nil {
				return nil, err
			}
		default:
			if err := d.AddSection(".debug_"+suffix, b); err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

// neededDWARF are the sections functions, inlining and lines come from.
var neededDWARF = map[string]bool{
	"abbrev": true, "info": true, "line": true, "ranges": true, "str": true,
	"types": true, "addr": true, "line_str": true, "str_offsets": true, "rnglists": true,
}

// dwarfIndex answers address queries over one object's DWARF. Building it
// reads only the compilation unit headers; each unit's line table and
// function index are built on the first lookup that lands in it, and
// function bodies (inlined subroutines) are read only for looked-up
// addresses.
type dwarfIndex struct {
	d     *dwarf.Data
	cus   []*compUnit
	byPC  spanIndex // CU ranges; ids index cus
	names map[dwarf.Offset]funcNameEntry

	// Units without address ranges in their DIE, indexed by their line
	// table's sequences on the first lookup that misses byPC.
	unranged      []int32
	unrangedIndex *spanIndex
}

type compUnit struct {
	offset  dwarf.Offset
	lines   *lineTable     // nil until loaded
	funcs   *spanIndex     // subprogram ranges; ids index offs; nil until loaded
	offs    []dwarf.Offset // DIE offsets of the subprograms in funcs
	err     error          // from indexing funcs: the unit's DWARF is damaged
	lineErr error          // from reading the line table
}

// lineTable is a unit's line program flattened: rows sorted by address,
// sequences concatenated; a row with file < 0 ends a sequence.
type lineTable struct {
	rows  []lineRow
	files []string // index = DWARF file number (0 unused before DWARF 5)
}

type lineRow struct {
	addr uint64
	file int32
	line int32
}

func newDWARFIndex(d *dwarf.Data) (*dwarfIndex, error) {
	x := &dwarfIndex{d: d, names: map[dwarf.Offset]funcNameEntry{}}
	var spans []span
	r := d.Reader()
	for {
		e, err := r.Next()
		if err != nil {
			return nil, fmt.Errorf("reading compilation units: %w", err)
		}
		if e == nil {
			break
		}
		r.SkipChildren()
		if e.Tag != dwarf.TagCompileUnit && e.Tag != dwarf.TagPartialUnit && e.Tag != dwarf.TagSkeletonUnit {
			continue
		}
		id := int32(len(x.cus))
		x.cus = append(x.cus, &compUnit{offset: e.Offset})
		ranges, err := d.Ranges(e)
		if err != nil || len(ranges) == 0 {
			if _, ok := e.Val(dwarf.AttrStmtList).(int64); ok {
				x.unranged = append(x.unranged, id)
			}
			continue
		}
		for _, rg := range ranges {
			if rg[0] < rg[1] {
				spans = append(spans, span{lo: rg[0], hi: rg[1], id: id})
			}
		}
	}
	x.byPC = newSpanIndex(spans)
	return x, nil
}

// unitAt returns the unit covering pc, or nil.
func (x *dwarfIndex) unitAt(pc uint64) *compUnit {
	if id := x.byPC.find(pc); id >= 0 {
		return x.cus[id]
	}
	if len(x.unranged) == 0 {
		return nil
	}
	if x.unrangedIndex == nil {
		var spans []span
		for _, id := range x.unranged {
			lt, err := x.lineTableOf(x.cus[id])
			if err != nil {
				continue
			}
			start := -1
			for i, row := range lt.rows {
				if start < 0 {
					start = i
				}
				if row.file < 0 {
					if row.addr > lt.rows[start].addr {
						spans = append(spans, span{lo: lt.rows[start].addr, hi: row.addr, id: id})
					}
					start = -1
				}
			}
		}
		idx := newSpanIndex(spans)
		x.unrangedIndex = &idx
	}
	if id := x.unrangedIndex.find(pc); id >= 0 {
		return x.cus[id]
	}
	return nil
}

// unitEntry re-reads a unit's DIE.
func (x *dwarfIndex) unitEntry(cu *compUnit) (*dwarf.Entry, *dwarf.Reader, error) {
	r := x.d.Reader()
	r.Seek(cu.offset)
	e, err := r.Next()
	if err != nil {
		return nil, nil, err
	}
	if e == nil {
		return nil, nil, errors.New("missing unit entry")
	}
	return e, r, nil
}

func (x *dwarfIndex) lineTableOf(cu *compUnit) (*lineTable, error) {
	if cu.lines != nil {
		return cu.lines, cu.lineErr
	}
	lt := &lineTable{}
	cu.lines = lt // also on error: a damaged table is read once
	e, _, err := x.unitEntry(cu)
	if err != nil {
		cu.lineErr = fmt.Errorf("unit at %#x: %w", cu.offset, err)
		return lt, cu.lineErr
	}
	lr, err := x.d.LineReader(e)
	if err != nil {
		cu.lineErr = fmt.Errorf("line table of unit at %#x: %w", cu.offset, err)
		return lt, cu.lineErr
	}
	if lr == nil {
		return lt, nil
	}
	type seq struct{ start, end int }
	var (
		rows     []lineRow
		seqs     []seq
		files    = map[*dwarf.LineFile]int32{}
		ptrs     []*dwarf.LineFile // file of rows[i] until numbered
		seqStart int
		le       dwarf.LineEntry
	)
	for {
		if err := lr.Next(&le); err != nil {
			if !errors.Is(err, io.EOF) {
				cu.lineErr = fmt.Errorf("line table of unit at %#x: %w", cu.offset, err)
			}
			break
		}
		if le.EndSequence {
			rows = append(rows, lineRow{addr: le.Address, file: -1})
			ptrs = append(ptrs, nil)
			seqs = append(seqs, seq{seqStart, len(rows)})
			seqStart = len(rows)
			continue
		}
		rows = append(rows, lineRow{addr: le.Address, line: int32(le.Line)})
		ptrs = append(ptrs, le.File)
	}
	// Number the files as DWARF does (attributes like DW_AT_call_file use
	// these numbers); Files() is complete once the program has been read.
	all := lr.Files()
	lt.files = make([]string, len(all))
	for i, f := range all {
		if f != nil {
			lt.files[i] = f.Name
			if _, dup := files[f]; !dup {
				files[f] = int32(i)
			}
		}
	}
	for i := range rows {
		if rows[i].file < 0 {
			continue
		}
		if n, ok := files[ptrs[i]]; ok {
			rows[i].file = n
		} else {
			rows[i].file = int32(len(lt.files)) // unknown file: maps to ""
		}
	}
	lt.files = append(lt.files, "")
	sort.SliceStable(seqs, func(i, j int) bool { return rows[seqs[i].start].addr < rows[seqs[j].start].addr })
	lt.rows = make([]lineRow, 0, len(rows))
	for _, s := range seqs {
		lt.rows = append(lt.rows, rows[s.start:s.end]...)
	}
	return lt, cu.lineErr
}

// lookup returns the file and line of pc, ok=false if no row covers it.
func (lt *lineTable) lookup(pc uint64) (file string, line int, ok bool) {
	i := sort.Search(len(lt.rows), func(k int) bool { return lt.rows[k].addr > pc }) - 1
	if i < 0 || lt.rows[i].file < 0 {
		return "", 0, false
	}
	return lt.files[lt.rows[i].file], int(lt.rows[i].line), true
}

func (lt *lineTable) fileName(n int64) string {
	if n < 0 || n >= int64(len(lt.files)) {
		return ""
	}
	return lt.files[n]
}

// funcsOf indexes the unit's concrete subprograms (those with code) by
// address. Function bodies are skipped: only their DIE is read here.
func (x *dwarfIndex) funcsOf(cu *compUnit) (*spanIndex, error) {
	if cu.funcs != nil {
		return cu.funcs, cu.err
	}
	cu.funcs = &spanIndex{}
	unit, r, err := x.unitEntry(cu)
	if err != nil {
		cu.err = err
		return cu.funcs, err
	}
	var spans []span
	depth := 0
	if unit.Children {
		depth = 1
	}
	for depth > 0 {
		e, err := r.Next()
		if err != nil {
			cu.err = fmt.Errorf("unit at %#x: %w", cu.offset, err)
			break
		}
		if e == nil {
			break
		}
		if e.Tag == 0 {
			depth--
			continue
		}
		if e.Tag == dwarf.TagSubprogram {
			ranges, _ := x.d.Ranges(e)
			for _, rg := range ranges {
				if rg[0] < rg[1] {
					spans = append(spans, span{lo: rg[0], hi: rg[1], id: int32(len(cu.offs))})
				}
			}
			if len(ranges) > 0 {
				cu.offs = append(cu.offs, e.Offset)
			}
			if e.Children {
				r.SkipChildren()
			}
			continue
		}
		if e.Children {
			depth++
		}
	}
	idx := newSpanIndex(spans)
	cu.funcs = &idx
	return cu.funcs, cu.err
}

// scope is one level of the inline chain at an address: the outermost is
// the concrete subprogram, the others DW_TAG_inlined_subroutine entries.
type scope struct {
	entry    *dwarf.Entry
	callFile int64 // where this scope was inlined into its parent
	callLine int64
}

// inlineChain reads the body of the subprogram at off and returns the
// scopes containing pc, outermost first.
func (x *dwarfIndex) inlineChain(off dwarf.Offset, pc uint64) ([]scope, error) {
	r := x.d.Reader()
	r.Seek(off)
	fn, err := r.Next()
	if err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, errors.New("missing subprogram entry")
	}
	chain := []scope{{entry: fn}}
	if !fn.Children {
		return chain, nil
	}
	// levels[i] says whether the open scope at depth i+1 is known to
	// contain pc (then no sibling of it can, and closing it ends the
	// search) or is transparent (a lexical block without ranges).
	levels := []bool{true}
	for len(levels) > 0 {
		e, err := r.Next()
		if err != nil {
			return chain, err
		}
		if e == nil {
			break
		}
		if e.Tag == 0 {
			definite := levels[len(levels)-1]
			levels = levels[:len(levels)-1]
			if definite {
				break
			}
			continue
		}
		switch e.Tag {
		case dwarf.TagInlinedSubroutine, dwarf.TagLexDwarfBlock:
			has, in := x.scopeContains(e, pc)
			if has && !in {
				break // skip it (children below)
			}
			if e.Tag == dwarf.TagInlinedSubroutine {
				if !has {
					break // an inlined copy without code here
				}
				file, _ := e.Val(dwarf.AttrCallFile).(int64)
				line, _ := e.Val(dwarf.AttrCallLine).(int64)
				chain = append(chain, scope{entry: e, callFile: file, callLine: line})
			}
			if e.Children {
				levels = append(levels, has)
				continue
			}
			if has {
				return chain, nil // innermost scope found
			}
			continue
		}
		if e.Children {
			r.SkipChildren()
		}
	}
	return chain, nil
}

// scopeContains reports whether e has code (has) and whether pc is in it.
// The common low_pc/high_pc form is decoded here; only DW_AT_ranges goes
// through dwarf.Data.Ranges, which re-reads the unit's DIE for its base.
func (x *dwarfIndex) scopeContains(e *dwarf.Entry, pc uint64) (has, in bool) {
	if lo, ok := e.Val(dwarf.AttrLowpc).(uint64); ok && e.AttrField(dwarf.AttrRanges) == nil {
		hf := e.AttrField(dwarf.AttrHighpc)
		if hf == nil {
			return false, false
		}
		var hi uint64
		switch v := hf.Val.(type) {
		case uint64: // DW_FORM_addr: an address
			hi = v
		case int64: // a constant: the length
			hi = lo + uint64(v)
		default:
			return false, false
		}
		return lo < hi, lo <= pc && pc < hi
	}
	if e.AttrField(dwarf.AttrRanges) == nil {
		return false, false
	}
	ranges, _ := x.d.Ranges(e)
	for _, rg := range ranges {
		if rg[0] < rg[1] {
			has = true
		}
		if rg[0] <= pc && pc < rg[1] {
			return true, true
		}
	}
	return has, false
}

// funcName is the name of a subprogram or inlined subroutine, following
// DW_AT_abstract_origin and DW_AT_specification: a mangled (C++, Rust)
// DW_AT_linkage_name demangled, which is qualified and has parameters;
// else the DW_AT_name; else an unmangled linkage name. C functions with an
// asm label carry it as their linkage name (glibc: "__GI___libc_malloc"
// for __libc_malloc); the source name reads better. linkage reports
// whether the name is qualified (not a bare DW_AT_name).
func (x *dwarfIndex) funcName(e *dwarf.Entry) (name string, linkage bool) {
	if n, ok := x.names[e.Offset]; ok {
		return n.name, n.linkage
	}
	var plain, label string
	var seen []dwarf.Offset
	cur := e
	for hops := 0; cur != nil && hops < 16 && !slices.Contains(seen, cur.Offset); hops++ {
		seen = append(seen, cur.Offset)
		ln, ok := cur.Val(dwarf.AttrLinkageName).(string)
		if !ok || ln == "" {
			ln, _ = cur.Val(attrMIPSLinkageName).(string)
		}
		if isMangled(ln) {
			name, linkage = demangleName(ln), true
			break
		}
		if label == "" {
			label = ln
		}
		if plain == "" {
			plain, _ = cur.Val(dwarf.AttrName).(string)
		}
		next, ok := cur.Val(dwarf.AttrAbstractOrigin).(dwarf.Offset)
		if !ok {
			if next, ok = cur.Val(dwarf.AttrSpecification).(dwarf.Offset); !ok {
				break
			}
		}
		r := x.d.Reader()
		r.Seek(next)
		cur, _ = r.Next()
	}
	switch {
	case linkage:
	case plain != "":
		name = plain
	default:
		name, linkage = label, label != ""
	}
	x.names[e.Offset] = funcNameEntry{name, linkage}
	return name, linkage
}

type funcNameEntry struct {
	name    string
	linkage bool
}

// entryPC is the lowest address of a subprogram, where its ELF symbol is.
func (x *dwarfIndex) entryPC(e *dwarf.Entry) (uint64, bool) {
	if lo, ok := e.Val(dwarf.AttrLowpc).(uint64); ok {
		return lo, true
	}
	ranges, _ := x.d.Ranges(e)
	if len(ranges) == 0 {
		return 0, false
	}
	lo := ranges[0][0]
	for _, rg := range ranges {
		lo = min(lo, rg[0])
	}
	return lo, true
}

const attrMIPSLinkageName dwarf.Attr = 0x2007

// frames resolves pc: nil when no unit covers it. The last frame's
// Function is "" when DWARF has line info but no subprogram there.
// symbolAt names the ELF symbol starting exactly at an address, for
// functions whose DWARF has no linkage name (see frames).
func (x *dwarfIndex) frames(pc uint64, symbolAt func(uint64) string) ([]Frame, error) {
	cu := x.unitAt(pc)
	if cu == nil {
		return nil, nil
	}
	lt, lerr := x.lineTableOf(cu)
	file, line, _ := lt.lookup(pc)
	funcs, ferr := x.funcsOf(cu)
	if id := funcs.find(pc); id >= 0 {
		chain, err := x.inlineChain(cu.offs[id], pc)
		if len(chain) > 0 {
			out := make([]Frame, len(chain))
			for i := range chain {
				// Innermost first: frame k shows scope n-1-k; its line
				// is where the scope inside it was inlined, or pc's own
				// line for the innermost.
				sc := chain[len(chain)-1-i]
				name, linkage := x.funcName(sc.entry)
				if !linkage && i == len(chain)-1 {
					// GCC gives lambdas and some clones only a bare
					// DW_AT_name ("operator()"); the mangled ELF symbol
					// at the function's entry is qualified. addr2line
					// does the same.
					if lo, ok := x.entryPC(sc.entry); ok {
						if sym := symbolAt(lo); isMangled(sym) {
							name = demangleName(sym)
						}
					}
				}
				out[i] = Frame{Function: name, File: file, Line: line, Inlined: i < len(chain)-1}
				file, line = lt.fileName(sc.callFile), int(sc.callLine)
			}
			return out, errors.Join(lerr, err)
		}
		if err != nil {
			ferr = err
		}
	}
	if file == "" && lerr == nil && ferr == nil {
		return nil, nil
	}
	return []Frame{{File: file, Line: line}}, errors.Join(lerr, ferr)
}
