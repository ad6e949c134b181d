package report

import (
	"slices"

	"github.com/google/pprof/profile"
)

// profileEncoder writes a profile.Profile as profile.proto bytes, what
// Profile.WriteUncompressed writes for the fields the reports set,
// faster: the pprof package builds its string table, sorts every
// sample's label keys into a fresh slice and copies its location ids
// before encoding, and encoded the tables the two profiles of a process
// share (Profiles) twice. That was the largest part of writing a
// process's reports (a build's 81 leaking compiler drivers and
// assemblers; python's exit, where the run waits for it).
//
// The profiles Profiles builds share their mappings, locations and
// functions: an encoder given the second keeps the first's string table
// and encoded tables, and adds the strings only the second uses at the
// table's end (the first's labels and comment stay in the second's
// table, unused, which pprof allows). A profile with a field the
// reports never set (see encodable) is left to the pprof package.
type profileEncoder struct {
	strings map[string]int64
	table   []string
	// tables holds the encoded mappings, locations and functions of the
	// profile whose tables tablesOf names. It holds them, so that no
	// other profile's tables can be allocated where they were.
	tables   []byte
	tablesOf tableIDs
	keys     []string // a sample's label keys, sorted
	out      protoBuf
}

// tableIDs names the tables of a profile: their first elements and
// lengths.
type tableIDs struct {
	mapping        *profile.Mapping
	location       *profile.Location
	function       *profile.Function
	nm, nloc, nfun int
}

func tablesOf(prof *profile.Profile) tableIDs {
	var t tableIDs
	if t.nm = len(prof.Mapping); t.nm > 0 {
		t.mapping = prof.Mapping[0]
	}
	if t.nloc = len(prof.Location); t.nloc > 0 {
		t.location = prof.Location[0]
	}
	if t.nfun = len(prof.Function); t.nfun > 0 {
		t.function = prof.Function[0]
	}
	return t
}

// encode returns prof's bytes; they are the encoder's until its next
// call.
func (pe *profileEncoder) encode(prof *profile.Profile) []byte {
	if t := tablesOf(prof); t.location == nil || t != pe.tablesOf {
		pe.strings, pe.table = map[string]int64{"": 0}, []string{""}
		pe.tables = pe.encodeTables(prof, pe.tables[:0])
		pe.tablesOf = t
	}
	e := &pe.out
	e.b = e.b[:0]
	for _, st := range prof.SampleType {
		pe.valueType(1, st)
	}
	for _, s := range prof.Sample {
		pe.sample(s)
	}
	e.b = append(e.b, pe.tables...)
	// The scalars name strings too: add them before writing the table.
	dropX, keepX := pe.str(prof.DropFrames), pe.str(prof.KeepFrames)
	var periodX [2]int64
	if pt := prof.PeriodType; pt != nil {
		periodX = [2]int64{pe.str(pt.Type), pe.str(pt.Unit)}
	}
	commentX := make([]int64, len(prof.Comments))
	for i, c := range prof.Comments {
		commentX[i] = pe.str(c)
	}
	defaultX := pe.str(prof.DefaultSampleType)
	for _, s := range pe.table {
		e.bytes(6, s)
	}
	e.int(7, dropX)
	e.int(8, keepX)
	e.int(9, prof.TimeNanos)
	e.int(10, prof.DurationNanos)
	if periodX != [2]int64{} {
		at := e.start(11)
		e.int(1, periodX[0])
		e.int(2, periodX[1])
		e.end(at)
	}
	e.int(12, prof.Period)
	for _, x := range commentX {
		e.tag(13, 0)
		e.varint(uint64(x))
	}
	e.tag(14, 0)
	e.varint(uint64(defaultX))
	return e.b
}

// encodable says whether encode writes all of prof: none of the fields
// the reports leave unset is set.
func encodable(prof *profile.Profile) bool {
	if prof.DocURL != "" {
		return false
	}
	for _, s := range prof.Sample {
		if len(s.NumUnit) > 0 {
			return false
		}
	}
	for _, l := range prof.Location {
		if l.IsFolded {
			return false
		}
		for _, ln := range l.Line {
			if ln.Column != 0 {
				return false
			}
		}
	}
	for _, f := range prof.Function {
		if f.StartLine != 0 {
			return false
		}
	}
	return true
}

// str returns the index of s in the string table, adding it.
func (pe *profileEncoder) str(s string) int64 {
	if i, ok := pe.strings[s]; ok {
		return i
	}
	i := int64(len(pe.table))
	pe.strings[s] = i
	pe.table = append(pe.table, s)
	return i
}

func (pe *profileEncoder) valueType(field int, vt *profile.ValueType) {
	typeX, unitX := pe.str(vt.Type), pe.str(vt.Unit)
	e := &pe.out
	at := e.start(field)
	e.int(1, typeX)
	e.int(2, unitX)
	e.end(at)
}

func (pe *profileEncoder) sample(s *profile.Sample) {
	e := &pe.out
	at := e.start(2)
	if len(s.Location) > 0 {
		ids := e.start(1)
		for _, l := range s.Location {
			e.varint(l.ID)
		}
		e.end(ids)
	}
	if len(s.Value) > 0 {
		vs := e.start(2)
		for _, v := range s.Value {
			e.varint(uint64(v))
		}
		e.end(vs)
	}
	pe.keys = sortedKeys(pe.keys, s.Label)
	for _, k := range pe.keys {
		keyX := pe.str(k)
		for _, v := range s.Label[k] {
			strX := pe.str(v)
			l := e.start(3)
			e.int(1, keyX)
			e.int(2, strX)
			e.end(l)
		}
	}
	pe.keys = sortedKeys(pe.keys, s.NumLabel)
	for _, k := range pe.keys {
		keyX := pe.str(k)
		for _, v := range s.NumLabel[k] {
			l := e.start(3)
			e.int(1, keyX)
			e.int(3, v)
			e.end(l)
		}
	}
	e.end(at)
}

// sortedKeys returns m's keys in order, in buf's array.
func sortedKeys[V any](buf []string, m map[string]V) []string {
	buf = buf[:0]
	for k := range m {
		buf = append(buf, k)
	}
	slices.Sort(buf)
	return buf
}

// encodeTables appends prof's mappings, locations and functions to b.
func (pe *profileEncoder) encodeTables(prof *profile.Profile, b []byte) []byte {
	e := protoBuf{b: b}
	for _, m := range prof.Mapping {
		fileX, buildX := pe.str(m.File), pe.str(m.BuildID)
		at := e.start(3)
		e.uint(1, m.ID)
		e.uint(2, m.Start)
		e.uint(3, m.Limit)
		e.uint(4, m.Offset)
		e.int(5, fileX)
		e.int(6, buildX)
		e.bool(7, m.HasFunctions)
		e.bool(8, m.HasFilenames)
		e.bool(9, m.HasLineNumbers)
		e.bool(10, m.HasInlineFrames)
		e.end(at)
	}
	for _, l := range prof.Location {
		at := e.start(4)
		e.uint(1, l.ID)
		if l.Mapping != nil {
			e.uint(2, l.Mapping.ID)
		}
		e.uint(3, l.Address)
		for _, ln := range l.Line {
			lat := e.start(4)
			if ln.Function != nil {
				e.uint(1, ln.Function.ID)
			}
			e.int(2, ln.Line)
			e.end(lat)
		}
		e.end(at)
	}
	for _, f := range prof.Function {
		nameX, sysX, fileX := pe.str(f.Name), pe.str(f.SystemName), pe.str(f.Filename)
		at := e.start(5)
		e.uint(1, f.ID)
		e.int(2, nameX)
		e.int(3, sysX)
		e.int(4, fileX)
		e.end(at)
	}
	return e.b
}

// protoBuf appends protocol buffer fields: varints, and length-delimited
// ones whose length is written once their body is (start, end).
type protoBuf struct {
	b []byte
}

func (e *protoBuf) varint(x uint64) {
	for x >= 0x80 {
		e.b = append(e.b, byte(x)|0x80)
		x >>= 7
	}
	e.b = append(e.b, byte(x))
}

func (e *protoBuf) tag(field, wire int) { e.varint(uint64(field)<<3 | uint64(wire)) }

// uint, int and bool write a field unless it is zero (proto3 defaults).
func (e *protoBuf) uint(field int, x uint64) {
	if x != 0 {
		e.tag(field, 0)
		e.varint(x)
	}
}

func (e *protoBuf) int(field int, x int64) { e.uint(field, uint64(x)) }

func (e *protoBuf) bool(field int, x bool) {
	if x {
		e.tag(field, 0)
		e.b = append(e.b, 1)
	}
}

func (e *protoBuf) bytes(field int, s string) {
	e.tag(field, 2)
	e.varint(uint64(len(s)))
	e.b = append(e.b, s...)
}

// start begins a length-delimited field, one byte kept for its length;
// end writes the length, moving the body when it needs more bytes.
func (e *protoBuf) start(field int) int {
	e.tag(field, 2)
	e.b = append(e.b, 0)
	return len(e.b)
}

func (e *protoBuf) end(at int) {
	n := len(e.b) - at
	if n < 0x80 {
		e.b[at-1] = byte(n)
		return
	}
	var lenBuf [10]byte
	k := 0
	for x := uint64(n); ; k++ {
		if x < 0x80 {
			lenBuf[k] = byte(x)
			k++
			break
		}
		lenBuf[k] = byte(x) | 0x80
		x >>= 7
	}
	e.b = append(e.b, lenBuf[:k-1]...) // room for the longer length
	copy(e.b[at-1+k:], e.b[at:at+n])
	copy(e.b[at-1:], lenBuf[:k])
}
