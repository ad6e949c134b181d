package shm

import (
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestOpenRejectsBadHeader(t *testing.T) {
	const chunks = 4
	fileSize := int64(HeaderSize + chunks*MinChunkSize)
	put32 := func(off int64, v uint32) func(*os.File) error {
		return func(f *os.File) error { _, err := f.WriteAt(le.AppendUint32(nil, v), off); return err }
	}
	put64 := func(off int64, v uint64) func(*os.File) error {
		return func(f *os.File) error { _, err := f.WriteAt(le.AppendUint64(nil, v), off); return err }
	}
	truncate := func(n int64) func(*os.File) error {
		return func(f *os.File) error { return f.Truncate(n) }
	}
	tests := []struct {
		name    string
		corrupt func(*os.File) error
		offset  int64
		problem string
	}{
		{"wrong magic", put64(offMagic, 0x474e495254544f4e), offMagic, "bad magic 0x474e495254544f4e"},
		{"wrong version", put32(offVersion, 1), offVersion, "version 1, this analyzer reads version 4"},
		{"truncated below the header", truncate(100), 100, "truncated file: 100 bytes, the header alone needs 4096"},
		{"truncated chunks", truncate(HeaderSize + MinChunkSize), HeaderSize + MinChunkSize,
			fmt.Sprintf("file is %d bytes, header says %d", HeaderSize+MinChunkSize, fileSize)},
		{"file longer than the header says", truncate(fileSize + MinChunkSize), fileSize,
			fmt.Sprintf("file is %d bytes, header says %d", fileSize+MinChunkSize, fileSize)},
		{"header_size", put32(offHeaderSize, 8192), offHeaderSize, "header_size 8192, want 4096"},
		{"chunk_size not a power of two", put32(offChunkSize, 5000), offChunkSize, "chunk_size 5000 is not a power of two"},
		{"chunk_size too small", put32(offChunkSize, 2048), offChunkSize, "chunk_size 2048 is not a power of two in [4096, 16777216]"},
		{"chunk_count does not match file_size", put32(offChunkCount, 5), offFileSize,
			fmt.Sprintf("file_size %d, but header_size + chunk_count*chunk_size = %d", fileSize, fileSize+MinChunkSize)},
		{"chunk_count too small", put32(offChunkCount, 1), offChunkCount, "chunk_count 1 not in [2, 2147483648]"},
		{"file_size", put64(offFileSize, uint64(fileSize)*2), offFileSize, fmt.Sprintf("file_size %d, but", fileSize*2)},
		{"seal_after_ns zero", put64(offSealAfterNS, 0), offSealAfterNS, "seal_after_ns 0 is not positive"},
		{"window too wide", put64(offReserveHead, chunks+1), offReserveHead,
			"reserve_head 5 and last_read_to 0 are not a window of at most 4 chunks"},
		{"last_read_to ahead of reserve_head", put64(offLastReadTo, 3), offReserveHead,
			"reserve_head 0 and last_read_to 3 are not a window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: chunks * MinChunkSize})
			require.NoError(t, r.Close())
			f, err := os.OpenFile(r.Path(), os.O_RDWR, 0)
			require.NoError(t, err)
			require.NoError(t, tt.corrupt(f))
			require.NoError(t, f.Close())

			_, err = Open(r.Path())
			var fe *FormatError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, int64(-1), fe.Chunk)
			require.Equal(t, tt.offset, fe.Offset, "offset of %v", err)
			require.Contains(t, fe.Problem, tt.problem)
			require.Contains(t, err.Error(), fmt.Sprintf("ring %s: header at offset %d: ", r.Path(), tt.offset))
		})
	}
}

func TestPollRejectsBadChunk(t *testing.T) {
	const chunks = 4
	dataCap := uint32(MinChunkSize - ChunkHeaderSize)
	good := AppendFree(nil, 1, Free{Ptr: 0x10}) // 24 bytes, then the bad record
	withRecord := func(typ, n uint16) []byte {
		b := append([]byte(nil), good...)
		b = le.AppendUint16(b, typ)
		b = le.AppendUint16(b, n)
		return append(b, make([]byte, 20)...) // 24 bytes published
	}
	slot1 := int64(HeaderSize + 1*MinChunkSize) // chunk sequence 5 lives in slot 1
	const seq = 5
	tests := []struct {
		name    string
		setup   func(r *Ring)
		offset  int64
		problem string
	}{
		{"chunk length past the chunk", func(r *Ring) {
			writeChunk(r, seq, good, false)
			atomic.StoreUint64(r.chunk(seq).state(), stateGen(seq)|uint64(dataCap+8))
		}, slot1 + chOffState, fmt.Sprintf("published length %d runs past the chunk's %d data bytes", dataCap+8, dataCap)},
		{"chunk length not a multiple of 8", func(r *Ring) {
			writeChunk(r, seq, good, false)
			atomic.StoreUint64(r.chunk(seq).state(), stateGen(seq)|20)
		}, slot1 + chOffState, "published length 20 is not a multiple of 8"},
		{"wrong generation", func(r *Ring) {
			writeChunk(r, seq, good, true)
			atomic.StoreUint64(r.chunk(seq).state(), stateSealed|stateGen(seq+1)|24)
		}, slot1 + chOffState, "carries generation 7, want 6 for sequence 5"},
		{"seq word of another chunk", func(r *Ring) {
			writeChunk(r, seq, good, true)
			atomic.StoreUint64(r.chunk(seq).seq(), seqClaimed(seq+chunks))
		}, slot1 + chOffSeq, "seq word 0x14 is not a claim of sequence 5"},
		{"consumed past the chunk", func(r *Ring) {
			writeChunk(r, seq, good, true)
			atomic.StoreUint64(r.chunk(seq).consumed(), uint64(dataCap+8))
		}, slot1 + chOffConsumed, fmt.Sprintf("consumed offset %d is not a multiple of 8 within", dataCap+8)},
		{"consumed past the published length", func(r *Ring) {
			writeChunk(r, seq, good, true)
			atomic.StoreUint64(r.chunk(seq).consumed(), 48)
		}, slot1 + chOffState, "published length 24 is below the consumed offset 48"},
		{"record length 0", func(r *Ring) { writeChunk(r, seq, withRecord(uint16(RecFree), 0), true) },
			slot1 + ChunkHeaderSize + 24, "record at chunk data offset 24: FREE record has length 0"},
		{"record length not a multiple of 8", func(r *Ring) { writeChunk(r, seq, withRecord(uint16(RecFree), 20), true) },
			slot1 + ChunkHeaderSize + 24, "FREE record has length 20 (not a multiple of 8"},
		{"record length past the chunk", func(r *Ring) { writeChunk(r, seq, withRecord(uint16(RecAlloc), 48), true) },
			slot1 + ChunkHeaderSize + 24, "ALLOC record of length 48 runs past the chunk (24 bytes left)"},
		{"unknown record type", func(r *Ring) { writeChunk(r, seq, withRecord(9, 24), true) },
			slot1 + ChunkHeaderSize + 24, "unknown record type 9"},
		{"record type 0", func(r *Ring) { writeChunk(r, seq, withRecord(0, 24), true) },
			slot1 + ChunkHeaderSize + 24, "unknown record type 0"},
		{"record shorter than its fixed part", func(r *Ring) { writeChunk(r, seq, withRecord(uint16(RecAlloc), 24), true) },
			slot1 + ChunkHeaderSize + 24, "ALLOC record has length 24, shorter than its fixed part (48 bytes)"},
	}
	for _, tt := range tests {
		for _, viaChunks := range []bool{false, true} {
			name := tt.name
			if viaChunks {
				name += " (PollChunks)"
			}
			t.Run(name, func(t *testing.T) {
				r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: chunks * MinChunkSize})
				// Start at sequence 5: chunks 0-4 came and went.
				atomic.StoreUint64(r.u64(offLastReadTo), seq)
				for i := uint64(0); i < chunks; i++ {
					prev := i + seq - chunks // previous occupant of the slot of i+5-4
					atomic.StoreUint64(r.chunk(prev).seq(), seqClaimed(prev))
					atomic.StoreUint64(r.chunk(prev).state(), stateFree(prev+chunks))
				}
				tt.setup(r)
				rd, err := r.NewReader(ReaderOptions{})
				require.NoError(t, err)
				var delivered []RecordType
				if viaChunks {
					// A consumer with its own decode loop (the engine's)
					// reports the bad record as a *RecordError.
					_, err = rd.PollChunks(func(_, _ uint32, data []byte) (int, int, error) {
						off := 0
						for off < len(data) {
							rec, err := ParseRecordHeader(data[off:])
							if err != nil {
								return off, len(delivered), &RecordError{Offset: off, Err: err}
							}
							delivered = append(delivered, rec.Type)
							off += len(rec.Data)
						}
						return off, len(delivered), nil
					})
				} else {
					_, err = rd.Poll(func(rec Record) error { delivered = append(delivered, rec.Type); return nil })
				}
				var fe *FormatError
				require.ErrorAs(t, err, &fe)
				require.Equal(t, int64(seq), fe.Chunk)
				require.Equal(t, int64(1), fe.Slot)
				require.Equal(t, tt.offset, fe.Offset, "offset of %v", err)
				require.Contains(t, fe.Problem, tt.problem)
				require.Contains(t, err.Error(), fmt.Sprintf("chunk 5 (slot 1) at offset %d: ", tt.offset))
				if tt.offset >= slot1+ChunkHeaderSize {
					require.Equal(t, []RecordType{RecFree}, delivered, "the good record before the bad one")
				}
				// The error is sticky, never a panic or a skip.
				_, err2 := rd.Poll(func(Record) error { return nil })
				require.Equal(t, err.Error(), err2.Error())
			})
		}
	}
}

func TestCreateRefusesUnsafePaths(t *testing.T) {
	t.Run("directory not 0700", func(t *testing.T) {
		dir := privateDir(t)
		require.NoError(t, os.Chmod(dir, 0o755))
		_, err := Create(filepath.Join(dir, "ring"), Options{})
		require.ErrorContains(t, err, "mode 0755, want 0700")
		require.NoFileExists(t, filepath.Join(dir, "ring"))
	})
	t.Run("directory is a symlink", func(t *testing.T) {
		dir := privateDir(t)
		real := filepath.Join(dir, "real")
		require.NoError(t, os.Mkdir(real, 0o700))
		link := filepath.Join(dir, "link")
		require.NoError(t, os.Symlink(real, link))
		_, err := Create(filepath.Join(link, "ring"), Options{})
		require.ErrorContains(t, err, "is a symlink")
		require.NoFileExists(t, filepath.Join(real, "ring"))
	})
	t.Run("ring path is a symlink", func(t *testing.T) {
		dir := privateDir(t)
		target := filepath.Join(privateDir(t), "target")
		require.NoError(t, os.Symlink(target, filepath.Join(dir, "ring")))
		_, err := Create(filepath.Join(dir, "ring"), Options{})
		require.ErrorIs(t, err, unix.EEXIST)
		require.NoFileExists(t, target, "must not create through the symlink")
	})
	t.Run("ring exists", func(t *testing.T) {
		r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 2 * MinChunkSize})
		_, err := Create(r.Path(), Options{})
		require.ErrorIs(t, err, unix.EEXIST)
	})
	t.Run("directory not ours", func(t *testing.T) {
		dir := privateDir(t)
		if os.Geteuid() == 0 {
			require.NoError(t, os.Chown(dir, 65534, 65534))
		} else {
			dir = "/" // owned by root
		}
		_, err := Create(filepath.Join(dir, "ring"), Options{})
		require.ErrorContains(t, err, "not by us")
	})
	t.Run("bad geometry", func(t *testing.T) {
		dir := privateDir(t)
		_, err := Create(filepath.Join(dir, "ring"), Options{ChunkSize: 5000})
		require.ErrorContains(t, err, "chunk size 5000 is not a power of two")
		_, err = Create(filepath.Join(dir, "ring"), Options{ChunkSize: 2048})
		require.ErrorContains(t, err, "chunk size 2048")
	})
}

func TestOpenRefusesUnsafeFiles(t *testing.T) {
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 2 * MinChunkSize})
	link := filepath.Join(filepath.Dir(r.Path()), "link")
	require.NoError(t, os.Symlink(r.Path(), link))
	_, err := Open(link)
	require.ErrorIs(t, err, unix.ELOOP)
	if os.Geteuid() == 0 {
		require.NoError(t, os.Chown(r.Path(), 65534, 65534))
		_, err = Open(r.Path())
		require.ErrorContains(t, err, "owned by uid 65534, not by us")
	}
}

func TestCreateInitialisesHeader(t *testing.T) {
	r := newTestRing(t, Options{ChunkSize: 8192, Size: 10*8192 + 1, Lossy: true, SealAfter: 7e6, ConsumerTimeout: 3e9})
	before := monotonicNS()
	info := r.Info()
	require.Equal(t, uint32(8192), info.ChunkSize)
	require.Equal(t, uint32(11), info.ChunkCount, "size rounded up to whole chunks")
	require.Equal(t, uint64(HeaderSize+11*8192), info.FileSize)
	require.True(t, info.Lossy)
	require.Equal(t, int64(7e6), int64(info.SealAfter))
	require.Equal(t, int64(3e9), int64(info.ConsumerTimeout))
	require.Equal(t, uint32(os.Geteuid()), info.CreatorUID)
	require.Equal(t, info.CreatedNS, info.HeartbeatNS)
	require.LessOrEqual(t, info.CreatedNS, before)
	require.Greater(t, info.CreatedNS, before-uint64(60e9))
	require.Zero(t, info.ReserveHead)
	require.Zero(t, info.ConsumerPid)
	var st unix.Stat_t
	require.NoError(t, unix.Stat(r.Path(), &st))
	require.Equal(t, uint32(0o600), st.Mode&0o777)

	// Defaults, and the C writer accepts what Create made.
	r2 := newTestRing(t, Options{})
	require.Equal(t, uint32(DefaultChunkSize), r2.Info().ChunkSize)
	require.Equal(t, uint32(DefaultRingSize/DefaultChunkSize), r2.Info().ChunkCount)
	require.Equal(t, int64(DefaultSealAfterNS), int64(r2.Info().SealAfter))
	require.False(t, r2.Info().Lossy)
	attach(t, r2, false)
}

func TestDefaultDir(t *testing.T) {
	xdg := privateDir(t)
	t.Setenv("XDG_RUNTIME_DIR", xdg)
	dir, err := DefaultDir()
	require.NoError(t, err)
	require.Equal(t, filepath.Join(xdg, "memscope"), dir)
	fi, err := os.Lstat(dir)
	require.NoError(t, err)
	require.Equal(t, os.ModeDir|0o700, fi.Mode())
	again, err := DefaultDir()
	require.NoError(t, err)
	require.Equal(t, dir, again)

	require.NoError(t, os.Chmod(dir, 0o755))
	_, err = DefaultDir()
	require.ErrorContains(t, err, "mode 0755, want 0700")

	xdg2 := privateDir(t)
	t.Setenv("XDG_RUNTIME_DIR", xdg2)
	require.NoError(t, os.Symlink(xdg, filepath.Join(xdg2, "memscope")))
	_, err = DefaultDir()
	require.ErrorContains(t, err, "is a symlink")
}

func TestPollSurvivesTruncatedFile(t *testing.T) {
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 4 * MinChunkSize})
	writeChunk(r, 0, AppendFree(nil, 1, Free{Ptr: 0x10}), true)
	rd, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)
	// Another process of ours shrinks the file under the mapping.
	require.NoError(t, os.Truncate(r.Path(), HeaderSize))
	_, err = rd.Poll(func(Record) error { return nil })
	var fe *FormatError
	require.ErrorAs(t, err, &fe)
	require.GreaterOrEqual(t, fe.Offset, int64(HeaderSize), "a fault in slot 0")
	require.Less(t, fe.Offset, int64(HeaderSize+MinChunkSize), "a fault in slot 0")
	require.Contains(t, err.Error(), "truncated under us")
	// Panics of the callback itself are not swallowed.
	require.NoError(t, os.Truncate(r.Path(), HeaderSize+4*MinChunkSize))
	writeChunk(r, 0, AppendFree(nil, 1, Free{Ptr: 0x10}), true)
	require.PanicsWithValue(t, "boom", func() {
		_, _ = rd.Poll(func(Record) error { panic("boom") })
	})
}
