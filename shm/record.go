package shm

import (
	"encoding/binary"
	"fmt"
)

// This file is the Go mirror of the record layouts in include/memscope.h:
// explicit little-endian (native on every supported platform) decode and
// encode, in the style of encoding/binary. layout_test.go checks every
// offset and size here against the C header through cgo.

// RecordType is ms_record_header.type.
type RecordType uint16

// Record types (enum ms_record_type).
const (
	RecAlloc   RecordType = 1
	RecFree    RecordType = 2
	RecRealloc RecordType = 3
	RecStack   RecordType = 4
	RecModule  RecordType = 5
	RecThread  RecordType = 6
	RecProcess RecordType = 7
	RecLost    RecordType = 8
	recMax     RecordType = 8
)

func (t RecordType) String() string {
	switch t {
	case RecAlloc:
		return "ALLOC"
	case RecFree:
		return "FREE"
	case RecRealloc:
		return "REALLOC"
	case RecStack:
		return "STACK"
	case RecModule:
		return "MODULE"
	case RecThread:
		return "THREAD"
	case RecProcess:
		return "PROCESS"
	case RecLost:
		return "LOST"
	}
	return fmt.Sprintf("type(%d)", uint16(t))
}

// AllocKind is the allocation entry point (enum ms_alloc_kind).
type AllocKind uint16

// Allocation kinds.
const (
	KindMalloc        AllocKind = 1
	KindCalloc        AllocKind = 2
	KindRealloc       AllocKind = 3
	KindReallocarray  AllocKind = 4
	KindPosixMemalign AllocKind = 5
	KindAlignedAlloc  AllocKind = 6
	KindMemalign      AllocKind = 7
	KindValloc        AllocKind = 8
	KindPvalloc       AllocKind = 9
	kindMax           AllocKind = 9
)

var kindNames = [...]string{"", "malloc", "calloc", "realloc", "reallocarray", "posix_memalign", "aligned_alloc", "memalign", "valloc", "pvalloc"}

func (k AllocKind) String() string {
	if k >= 1 && k <= kindMax {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint16(k))
}

// ModuleEvent is ms_module.event.
type ModuleEvent uint16

// Module events.
const (
	ModuleLoad   ModuleEvent = 1
	ModuleUnload ModuleEvent = 2
)

// ProcessEvent is ms_process.event.
type ProcessEvent uint32

// Process events.
const (
	ProcessStart ProcessEvent = 1
	ProcessFork  ProcessEvent = 2
	ProcessExec  ProcessEvent = 3
	ProcessExit  ProcessEvent = 4
	// ProcessForked is written by the parent after fork() returned;
	// Status is the fork's number, which the child's ProcessFork record
	// carries in its Status too (include/memscope.h F1-F2).
	ProcessForked ProcessEvent = 5
)

func (e ProcessEvent) String() string {
	switch e {
	case ProcessStart:
		return "start"
	case ProcessFork:
		return "fork"
	case ProcessExec:
		return "exec"
	case ProcessExit:
		return "exit"
	case ProcessForked:
		return "forked"
	}
	return fmt.Sprintf("event(%d)", uint32(e))
}

// Record flags (ms_record_header.flags).
const (
	FlagTruncated  = 0x1 // MS_RECF_TRUNCATED
	FlagExitCheck  = 0x2 // MS_RECF_EXIT_CHECK: PROCESS exit; the process waits for a leak check
	FlagThreadExit = 0x4 // MS_RECF_THREAD_EXIT: THREAD written as the thread ends
	// FlagExitReports is MS_RECF_EXIT_REPORTS: with FlagExitCheck, the
	// process (bare mode's first) also waits until its reports are written.
	FlagExitReports = 0x8
	// FlagUnrecorded is MS_RECF_UNRECORDED: a LOST record counting
	// allocator calls that a signal handler made while its thread was
	// inside memscope (recording another call), passed through unrecorded.
	FlagUnrecorded = 0x10
)

// Sizes and limits of the record layouts (mirrors of memscope.h).
const (
	RecordHeaderSize = 16
	allocSize        = 48
	freeSize         = 24
	reallocSize      = 64
	stackFixedSize   = 32
	moduleFixedSize  = 96
	segmentSize      = 32
	threadSize       = 48
	processFixedSize = 40
	lostSize         = 24

	MaxDepth       = 256
	BuildIDMax     = 64
	PathMax        = 2048
	MaxSegments    = 16
	ThreadNameMax  = 16
	maxRecordBytes = 0xffff
)

// Field offsets of the record layouts (struct ms_* in memscope.h).
const (
	recOffType  = 0
	recOffLen   = 2
	recOffFlags = 4
	recOffTS    = 8

	allocOffPtr     = 16
	allocOffSize    = 24
	allocOffStackID = 32
	allocOffKind    = 40
	allocOffPad     = 42
	allocOffAlign   = 44

	freeOffPtr = 16

	reallocOffOldPtr   = 16
	reallocOffNewPtr   = 24
	reallocOffSize     = 32
	reallocOffStackID  = 40
	reallocOffTSBefore = 48
	reallocOffKind     = 56
	reallocOffPad      = 58
	reallocOffPad2     = 60

	stackOffID    = 16
	stackOffDepth = 24
	stackOffPad   = 28
	stackOffPCs   = 32

	segOffVaddr  = 0
	segOffMemsz  = 8
	segOffOffset = 16
	segOffFlags  = 24
	segOffPad    = 28

	moduleOffBias       = 16
	moduleOffEvent      = 24
	moduleOffNSegs      = 26
	moduleOffBuildIDLen = 28
	moduleOffPathLen    = 30
	moduleOffBuildID    = 32

	threadOffTid     = 16
	threadOffNameLen = 20
	threadOffName    = 24
	threadOffStackSP = 40

	processOffPid    = 16
	processOffPpid   = 20
	processOffEvent  = 24
	processOffStatus = 28
	processOffExeLen = 32
	processOffArgLen = 36

	lostOffCount = 16
)

var le = binary.LittleEndian

// Record is one record as delivered by a Reader: the owner of the chunk it
// was written in, and its bytes. Data aliases the ring (or the slice given
// to DecodeChunk) and is only valid until the Reader's next call.
type Record struct {
	Pid   uint32
	Tid   uint32
	Type  RecordType
	Flags uint32
	TS    uint64
	Data  []byte // the whole record, header included
}

// Alloc is MS_REC_ALLOC: a successful allocation, stamped after it returned.
type Alloc struct {
	Ptr     uint64
	Size    uint64
	StackID uint64
	Kind    AllocKind
	Align   uint32
}

// Free is MS_REC_FREE, stamped before the real free.
type Free struct {
	Ptr uint64
}

// Realloc is MS_REC_REALLOC. OldPtr 0 means it was a malloc; NewPtr 0 that
// it freed OldPtr (realloc(p, 0)). TSBefore orders the release of OldPtr,
// the record's TS the birth of NewPtr.
type Realloc struct {
	OldPtr   uint64
	NewPtr   uint64
	Size     uint64
	StackID  uint64
	TSBefore uint64
	Kind     AllocKind
}

// Stack is MS_REC_STACK. PCs[0] is the return address into malloc's caller.
type Stack struct {
	ID  uint64
	PCs []uint64
}

// Segment is one PT_LOAD segment of a Module.
type Segment struct {
	Vaddr  uint64
	Memsz  uint64
	Offset uint64
	Flags  uint32
}

// Module is MS_REC_MODULE: an object loaded into (or unloaded from) a process.
type Module struct {
	Bias     uint64
	Event    ModuleEvent
	BuildID  []byte
	Segments []Segment
	Path     string
}

// Thread is MS_REC_THREAD.
type Thread struct {
	Tid  uint32
	Name string
	// StackSP is an address on the thread's stack (0 if unknown).
	StackSP uint64
	// Exiting: written as the thread ends (FlagThreadExit).
	Exiting bool
}

// Process is MS_REC_PROCESS.
type Process struct {
	Pid    uint32
	Ppid   uint32
	Event  ProcessEvent
	Status int32
	Exe    string
	Arg0   string
}

// Lost is MS_REC_LOST: events the writing thread dropped before this record.
type Lost struct {
	Count uint64
}

// DecodeError says what is wrong with a record and where.
type DecodeError struct {
	Type   RecordType
	Len    int
	Reason string
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("%s record of %d bytes: %s", e.Type, e.Len, e.Reason)
}

func (r Record) errorf(format string, args ...any) error {
	return &DecodeError{Type: r.Type, Len: len(r.Data), Reason: fmt.Sprintf(format, args...)}
}

func (r Record) need(t RecordType, n int) error {
	if r.Type != t {
		return r.errorf("decoded as %s", t)
	}
	if len(r.Data) < n {
		return r.errorf("shorter than the %d bytes of its fixed part", n)
	}
	return nil
}

// Alloc decodes an ALLOC record.
func (r Record) Alloc() (Alloc, error) {
	if r.Type != RecAlloc || len(r.Data) < allocSize {
		return Alloc{}, r.need(RecAlloc, allocSize)
	}
	d := (*[allocSize]byte)(r.Data) // one bounds check for all fields
	return Alloc{
		Ptr:     le.Uint64(d[allocOffPtr:]),
		Size:    le.Uint64(d[allocOffSize:]),
		StackID: le.Uint64(d[allocOffStackID:]),
		Kind:    AllocKind(le.Uint16(d[allocOffKind:])),
		Align:   le.Uint32(d[allocOffAlign:]),
	}, nil
}

// Free decodes a FREE record.
func (r Record) Free() (Free, error) {
	if r.Type != RecFree || len(r.Data) < freeSize {
		return Free{}, r.need(RecFree, freeSize)
	}
	return Free{Ptr: le.Uint64(r.Data[freeOffPtr:])}, nil
}

// Realloc decodes a REALLOC record.
func (r Record) Realloc() (Realloc, error) {
	if err := r.need(RecRealloc, reallocSize); err != nil {
		return Realloc{}, err
	}
	d := r.Data
	return Realloc{
		OldPtr:   le.Uint64(d[reallocOffOldPtr:]),
		NewPtr:   le.Uint64(d[reallocOffNewPtr:]),
		Size:     le.Uint64(d[reallocOffSize:]),
		StackID:  le.Uint64(d[reallocOffStackID:]),
		TSBefore: le.Uint64(d[reallocOffTSBefore:]),
		Kind:     AllocKind(le.Uint16(d[reallocOffKind:])),
	}, nil
}

// Stack decodes a STACK record. PCs is a fresh slice.
func (r Record) Stack() (Stack, error) {
	s, _, err := r.StackInto(nil)
	return s, err
}

// StackInto decodes a STACK record like Stack, appending its PCs to buf
// when they fit in buf's capacity (else to a new array of their own):
// Stack.PCs is the appended part, its capacity its length, and the
// second result buf with the PCs appended. A reader keeping many stacks
// decodes them into large arrays instead of one allocation each.
func (r Record) StackInto(buf []uint64) (Stack, []uint64, error) {
	if err := r.need(RecStack, stackFixedSize); err != nil {
		return Stack{}, buf, err
	}
	d := r.Data
	depth := int(le.Uint32(d[stackOffDepth:]))
	if depth > MaxDepth {
		return Stack{}, buf, r.errorf("depth %d exceeds %d", depth, MaxDepth)
	}
	if stackFixedSize+8*depth > len(d) {
		return Stack{}, buf, r.errorf("depth %d does not fit", depth)
	}
	if cap(buf)-len(buf) < depth {
		buf = make([]uint64, 0, depth)
	}
	start := len(buf)
	for i := 0; i < depth; i++ {
		buf = append(buf, le.Uint64(d[stackOffPCs+8*i:]))
	}
	return Stack{ID: le.Uint64(d[stackOffID:]), PCs: buf[start:len(buf):len(buf)]}, buf, nil
}

// Module decodes a MODULE record.
func (r Record) Module() (Module, error) {
	if err := r.need(RecModule, moduleFixedSize); err != nil {
		return Module{}, err
	}
	d := r.Data
	m := Module{Bias: le.Uint64(d[moduleOffBias:]), Event: ModuleEvent(le.Uint16(d[moduleOffEvent:]))}
	nsegs := int(le.Uint16(d[moduleOffNSegs:]))
	bidLen := int(le.Uint16(d[moduleOffBuildIDLen:]))
	pathLen := int(le.Uint16(d[moduleOffPathLen:]))
	if bidLen > BuildIDMax {
		return Module{}, r.errorf("build ID length %d exceeds %d", bidLen, BuildIDMax)
	}
	if nsegs > MaxSegments {
		return Module{}, r.errorf("%d segments exceed %d", nsegs, MaxSegments)
	}
	if pathLen > PathMax {
		return Module{}, r.errorf("path length %d exceeds %d", pathLen, PathMax)
	}
	end := moduleFixedSize + segmentSize*nsegs + pathLen
	if end > len(d) {
		return Module{}, r.errorf("%d segments and a %d-byte path do not fit", nsegs, pathLen)
	}
	m.BuildID = append([]byte(nil), d[moduleOffBuildID:moduleOffBuildID+bidLen]...)
	m.Segments = make([]Segment, nsegs)
	for i := range m.Segments {
		s := d[moduleFixedSize+segmentSize*i:]
		m.Segments[i] = Segment{Vaddr: le.Uint64(s[segOffVaddr:]), Memsz: le.Uint64(s[segOffMemsz:]), Offset: le.Uint64(s[segOffOffset:]), Flags: le.Uint32(s[segOffFlags:])}
	}
	off := moduleFixedSize + segmentSize*nsegs
	m.Path = string(d[off : off+pathLen])
	return m, nil
}

// Thread decodes a THREAD record.
func (r Record) Thread() (Thread, error) {
	if err := r.need(RecThread, threadSize); err != nil {
		return Thread{}, err
	}
	d := r.Data
	n := int(le.Uint32(d[threadOffNameLen:]))
	if n > ThreadNameMax {
		return Thread{}, r.errorf("name length %d exceeds %d", n, ThreadNameMax)
	}
	return Thread{Tid: le.Uint32(d[threadOffTid:]), Name: string(d[threadOffName : threadOffName+n]),
		StackSP: le.Uint64(d[threadOffStackSP:]), Exiting: r.Flags&FlagThreadExit != 0}, nil
}

// Process decodes a PROCESS record.
func (r Record) Process() (Process, error) {
	if err := r.need(RecProcess, processFixedSize); err != nil {
		return Process{}, err
	}
	d := r.Data
	p := Process{
		Pid:    le.Uint32(d[processOffPid:]),
		Ppid:   le.Uint32(d[processOffPpid:]),
		Event:  ProcessEvent(le.Uint32(d[processOffEvent:])),
		Status: int32(le.Uint32(d[processOffStatus:])),
	}
	exeLen, argLen := int(le.Uint32(d[processOffExeLen:])), int(le.Uint32(d[processOffArgLen:]))
	if exeLen > PathMax || argLen > PathMax || processFixedSize+exeLen+argLen > len(d) {
		return Process{}, r.errorf("strings of %d and %d bytes do not fit", exeLen, argLen)
	}
	p.Exe = string(d[processFixedSize : processFixedSize+exeLen])
	p.Arg0 = string(d[processFixedSize+exeLen : processFixedSize+exeLen+argLen])
	return p, nil
}

// Lost decodes a LOST record.
func (r Record) Lost() (Lost, error) {
	if err := r.need(RecLost, lostSize); err != nil {
		return Lost{}, err
	}
	return Lost{Count: le.Uint64(r.Data[lostOffCount:])}, nil
}

// fixedSizes is the size of each record type's fixed part (its C struct).
var fixedSizes = [recMax + 1]int{
	RecAlloc:   allocSize,
	RecFree:    freeSize,
	RecRealloc: reallocSize,
	RecStack:   stackFixedSize,
	RecModule:  moduleFixedSize,
	RecThread:  threadSize,
	RecProcess: processFixedSize,
	RecLost:    lostSize,
}

// ParseRecordHeader validates the record header at the start of b, which
// holds the rest of the chunk's published data, and returns the record.
// It checks what every consumer relies on: a known type, a length that is
// a multiple of 8, at least the type's fixed part and at most what is left.
func ParseRecordHeader(b []byte) (Record, error) {
	// Fast path, small enough to inline into the consumer's loop.
	if len(b) >= RecordHeaderSize {
		t := RecordType(le.Uint16(b[recOffType:]))
		n := int(le.Uint16(b[recOffLen:]))
		if n <= len(b) && n%8 == 0 && t-1 < recMax && n >= fixedSizes[t] {
			return Record{Type: t, Flags: le.Uint32(b[recOffFlags:]), TS: le.Uint64(b[recOffTS:]), Data: b[:n:n]}, nil
		}
	}
	return Record{}, recordHeaderError(b)
}

// recordHeaderError says why ParseRecordHeader refused b.
func recordHeaderError(b []byte) error {
	if len(b) < RecordHeaderSize {
		return fmt.Errorf("record header needs %d bytes, %d left", RecordHeaderSize, len(b))
	}
	t := RecordType(le.Uint16(b[recOffType:]))
	n := int(le.Uint16(b[recOffLen:]))
	switch {
	case n == 0:
		return fmt.Errorf("%s record has length 0", t)
	case n < RecordHeaderSize || n%8 != 0:
		return fmt.Errorf("%s record has length %d (not a multiple of 8 of at least %d)", t, n, RecordHeaderSize)
	case n > len(b):
		return fmt.Errorf("%s record of length %d runs past the chunk (%d bytes left)", t, n, len(b))
	case t == 0 || t > recMax:
		return fmt.Errorf("unknown record type %d", uint16(t))
	default: // n < fixedSizes[t]
		return fmt.Errorf("%s record has length %d, shorter than its fixed part (%d bytes)", t, n, fixedSizes[t])
	}
}

// ---- Encoding (tests, fuzz seeds, synthetic streams) ----

func pad8(n int) int { return (n + 7) &^ 7 }

func appendHeader(b []byte, t RecordType, n int, flags uint32, ts uint64) []byte {
	b = le.AppendUint16(b, uint16(t))
	b = le.AppendUint16(b, uint16(n))
	b = le.AppendUint32(b, flags)
	return le.AppendUint64(b, ts)
}

// AppendAlloc appends an ALLOC record.
func AppendAlloc(b []byte, ts uint64, a Alloc) []byte {
	b = appendHeader(b, RecAlloc, allocSize, 0, ts)
	b = le.AppendUint64(b, a.Ptr)
	b = le.AppendUint64(b, a.Size)
	b = le.AppendUint64(b, a.StackID)
	b = le.AppendUint16(b, uint16(a.Kind))
	b = le.AppendUint16(b, 0)
	return le.AppendUint32(b, a.Align)
}

// AppendFree appends a FREE record.
func AppendFree(b []byte, ts uint64, f Free) []byte {
	b = appendHeader(b, RecFree, freeSize, 0, ts)
	return le.AppendUint64(b, f.Ptr)
}

// AppendRealloc appends a REALLOC record.
func AppendRealloc(b []byte, ts uint64, r Realloc) []byte {
	b = appendHeader(b, RecRealloc, reallocSize, 0, ts)
	for _, v := range []uint64{r.OldPtr, r.NewPtr, r.Size, r.StackID, r.TSBefore} {
		b = le.AppendUint64(b, v)
	}
	b = le.AppendUint16(b, uint16(r.Kind))
	b = le.AppendUint16(b, 0)
	return le.AppendUint32(b, 0)
}

// AppendStack appends a STACK record.
func AppendStack(b []byte, ts uint64, flags uint32, s Stack) []byte {
	b = appendHeader(b, RecStack, stackFixedSize+8*len(s.PCs), flags, ts)
	b = le.AppendUint64(b, s.ID)
	b = le.AppendUint32(b, uint32(len(s.PCs)))
	b = le.AppendUint32(b, 0)
	for _, pc := range s.PCs {
		b = le.AppendUint64(b, pc)
	}
	return b
}

// AppendModule appends a MODULE record.
func AppendModule(b []byte, ts uint64, m Module) []byte {
	n := pad8(moduleFixedSize + segmentSize*len(m.Segments) + len(m.Path))
	b = appendHeader(b, RecModule, n, 0, ts)
	b = le.AppendUint64(b, m.Bias)
	b = le.AppendUint16(b, uint16(m.Event))
	b = le.AppendUint16(b, uint16(len(m.Segments)))
	b = le.AppendUint16(b, uint16(len(m.BuildID)))
	b = le.AppendUint16(b, uint16(len(m.Path)))
	var bid [BuildIDMax]byte
	copy(bid[:], m.BuildID)
	b = append(b, bid[:]...)
	for _, s := range m.Segments {
		b = le.AppendUint64(b, s.Vaddr)
		b = le.AppendUint64(b, s.Memsz)
		b = le.AppendUint64(b, s.Offset)
		b = le.AppendUint32(b, s.Flags)
		b = le.AppendUint32(b, 0)
	}
	b = append(b, m.Path...)
	return append(b, make([]byte, n-(moduleFixedSize+segmentSize*len(m.Segments)+len(m.Path)))...)
}

// AppendThread appends a THREAD record (FlagThreadExit if t.Exiting).
func AppendThread(b []byte, ts uint64, t Thread) []byte {
	var flags uint32
	if t.Exiting {
		flags = FlagThreadExit
	}
	b = appendHeader(b, RecThread, threadSize, flags, ts)
	b = le.AppendUint32(b, t.Tid)
	name := t.Name
	if len(name) > ThreadNameMax {
		name = name[:ThreadNameMax]
	}
	b = le.AppendUint32(b, uint32(len(name)))
	var nb [ThreadNameMax]byte
	copy(nb[:], name)
	b = append(b, nb[:]...)
	return le.AppendUint64(b, t.StackSP)
}

// AppendProcess appends a PROCESS record.
func AppendProcess(b []byte, ts uint64, p Process) []byte {
	n := pad8(processFixedSize + len(p.Exe) + len(p.Arg0))
	b = appendHeader(b, RecProcess, n, 0, ts)
	b = le.AppendUint32(b, p.Pid)
	b = le.AppendUint32(b, p.Ppid)
	b = le.AppendUint32(b, uint32(p.Event))
	b = le.AppendUint32(b, uint32(p.Status))
	b = le.AppendUint32(b, uint32(len(p.Exe)))
	b = le.AppendUint32(b, uint32(len(p.Arg0)))
	b = append(b, p.Exe...)
	b = append(b, p.Arg0...)
	return append(b, make([]byte, n-(processFixedSize+len(p.Exe)+len(p.Arg0)))...)
}

// AppendLost appends a LOST record.
func AppendLost(b []byte, ts uint64, l Lost) []byte {
	b = appendHeader(b, RecLost, lostSize, 0, ts)
	return le.AppendUint64(b, l.Count)
}
