package shm

import "fmt"

// FormatError reports shared memory that breaks the ring format: a bad
// header field, chunk header or record. The ring is untrusted input, so
// every such problem is an error naming what is wrong and where.
type FormatError struct {
	Path    string // ring file
	Chunk   int64  // chunk sequence, or -1 for the ring header
	Slot    int64  // slot of Chunk, or -1
	Offset  int64  // file offset of the bad field or record
	Problem string
}

func (e *FormatError) Error() string {
	if e.Chunk < 0 {
		return fmt.Sprintf("ring %s: header at offset %d: %s", e.Path, e.Offset, e.Problem)
	}
	return fmt.Sprintf("ring %s: chunk %d (slot %d) at offset %d: %s", e.Path, e.Chunk, e.Slot, e.Offset, e.Problem)
}

// RecordError reports a malformed record found by DecodeChunk.
type RecordError struct {
	Offset int   // offset of the record in the chunk data
	Err    error // what is wrong
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("record at chunk data offset %d: %v", e.Offset, e.Err)
}

func (e *RecordError) Unwrap() error { return e.Err }
