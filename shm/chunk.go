package shm

import "unsafe"

// DecodeChunk parses a chunk's published bytes (data[0:len) of one chunk)
// into records and calls fn for each, in order. It stops at the first
// malformed record with a *RecordError naming its offset, or at the first
// error of fn, which it returns as is. Records alias data; Pid and Tid are
// zero (the chunk header is not part of data).
func DecodeChunk(data []byte, fn func(Record) error) error {
	_, _, err := decodeRecords(data, 0, 0, fn)
	return err
}

// decodeRecords delivers the records of data. It returns the offset after
// the last record fn accepted and how many it accepted; and, if that is
// not the end of data, a *RecordError when the record there is
// malformed, or fn's error when fn refused it (so a retry starts with
// it).
//
// This is Poll's decode loop: the checks of ParseRecordHeader are
// repeated inline (the function is too large for the inliner), and the
// fixed header is read with two loads. ParseRecordHeader is still the
// reference: any record refused here is re-parsed by it for the error.
func decodeRecords(data []byte, pid, tid uint32, fn func(Record) error) (off, n int, err error) {
	for off < len(data) {
		rest := data[off:]
		if len(rest) < RecordHeaderSize {
			break
		}
		// Little-endian: type | len<<16 | flags<<32 (see record.go).
		w := *(*uint64)(unsafe.Pointer(&rest[0]))
		t, ln := RecordType(w), int(uint16(w>>16))
		if ln > len(rest) || ln%8 != 0 || t-1 >= recMax || ln < fixedSizes[t] {
			break
		}
		rec := Record{Pid: pid, Tid: tid, Type: t, Flags: uint32(w >> 32),
			TS: *(*uint64)(unsafe.Pointer(&rest[recOffTS])), Data: rest[:ln:ln]}
		if err := fn(rec); err != nil {
			return off, n, err
		}
		off += ln
		n++
	}
	if off < len(data) {
		_, perr := ParseRecordHeader(data[off:])
		return off, n, &RecordError{Offset: off, Err: perr}
	}
	return off, n, nil
}
