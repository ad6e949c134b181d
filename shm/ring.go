package shm

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Options configure a new ring (Create).
type Options struct {
	ChunkSize       uint32        // 0: MS_DEFAULT_CHUNK_SIZE (16 KiB); power of two, >= MS_MIN_CHUNK_SIZE
	Size            uint64        // capacity N*ChunkSize; 0: MS_DEFAULT_RING_SIZE (64 MiB); rounded up to whole chunks
	SealAfter       time.Duration // 0: 50ms
	ConsumerTimeout time.Duration // 0: 10s
	Lossy           bool          // sets MS_RING_LOSSY
	// MonotonicClock stamps records with CLOCK_MONOTONIC even where the
	// TSC is invariant (otherwise the ring is MS_RING_TSC: Clock).
	MonotonicClock bool
}

// Ring is a mapped ring file. Its immutable geometry is copied out of the
// header once, validated, and never re-read from shared memory.
type Ring struct {
	path            string
	mem             []byte
	chunkSize       uint32
	chunkCount      uint32
	sealAfter       time.Duration
	consumerTimeout time.Duration
	flags           uint32
	creatorUID      uint32
	createdNS       uint64
	clock           *Clock // of the records' timestamps
}

// Info is a snapshot of a ring's header.
type Info struct {
	Path            string
	FileSize        uint64
	ChunkSize       uint32
	ChunkCount      uint32
	SealAfter       time.Duration
	ConsumerTimeout time.Duration
	Lossy           bool
	CreatorUID      uint32
	CreatedNS       uint64 // CLOCK_MONOTONIC
	ReserveHead     uint64
	LastReadTo      uint64
	NextReadFrom    uint64
	HeartbeatNS     uint64 // CLOCK_MONOTONIC
	ConsumerPid     uint32
	CommitFutex     uint32
	FullWaiters     uint32
	DroppedEvents   uint64
	FullWaits       uint64        // times a producer found the ring full
	FullWait        time.Duration // producers' time spent waiting for a free chunk, all threads added
}

// Clock is the clock of the ring's record timestamps.
func (r *Ring) Clock() *Clock { return r.clock }

// monotonicNS is CLOCK_MONOTONIC in ns, the clock of every ring time but
// records' timestamps in an MS_RING_TSC ring (Clock). It is the runtime's
// nanotime, which reads CLOCK_MONOTONIC through the vDSO on Linux: 55 ns
// on the project's VM, where unix.ClockGettime, a system call, takes
// 1.4 µs, and the Reader reads it at every poll. (time.Since of a start
// gives only differences; the library compares these times with its own
// clock_gettime.)
func monotonicNS() uint64 { return uint64(nanotime()) }

//go:linkname nanotime runtime.nanotime
func nanotime() int64

// Create makes a new ring file at path, whose directory must be private
// (CheckPrivateDir). The file is created O_EXCL|O_NOFOLLOW, mode 0600,
// sized and initialised, and mapped.
func Create(path string, opts Options) (*Ring, error) {
	cs, n, err := geometry(opts)
	if err != nil {
		return nil, fmt.Errorf("create ring %s: %w", path, err)
	}
	if err := CheckPrivateDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("create ring %s: %w", path, err)
	}
	sealAfter, timeout := opts.SealAfter, opts.ConsumerTimeout
	if sealAfter <= 0 {
		sealAfter = DefaultSealAfterNS
	}
	if timeout <= 0 {
		timeout = DefaultConsumerTimeNS
	}
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create ring %s: %w", path, err)
	}
	defer unix.Close(fd)
	fileSize := uint64(HeaderSize) + uint64(n)*uint64(cs)
	fail := func(err error) (*Ring, error) {
		_ = os.Remove(path)
		return nil, fmt.Errorf("create ring %s: %w", path, err)
	}
	if err := unix.Ftruncate(fd, int64(fileSize)); err != nil {
		return fail(err)
	}
	mem, err := unix.Mmap(fd, 0, int(fileSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fail(fmt.Errorf("mmap: %w", err))
	}
	r := &Ring{
		path: path, mem: mem, chunkSize: cs, chunkCount: n,
		sealAfter: sealAfter, consumerTimeout: timeout,
		creatorUID: uint32(os.Geteuid()), createdNS: monotonicNS(),
	}
	if opts.Lossy {
		r.flags |= RingLossy
	}
	if !opts.MonotonicClock && InvariantTSC() {
		r.flags |= RingTSC
	}
	r.clock = newClock(r.flags&RingTSC != 0)
	*r.u32(offVersion) = Version
	*r.u32(offHeaderSize) = HeaderSize
	*r.u32(offChunkSize) = cs
	*r.u32(offChunkCount) = n
	*r.u64(offFileSize) = fileSize
	*r.u64(offSealAfterNS) = uint64(sealAfter)
	*r.u64(offConsumerTimeoutNS) = uint64(timeout)
	*r.u32(offFlags) = r.flags
	*r.u32(offCreatorUID) = r.creatorUID
	*r.u64(offCreatedNS) = r.createdNS
	atomic.StoreUint64(r.u64(offHeartbeatNS), r.createdNS)
	// The magic goes last: a ring with a valid magic is fully initialised.
	atomic.StoreUint64(r.u64(offMagic), Magic)
	return r, nil
}

// geometry validates opts and returns the chunk size and count.
func geometry(opts Options) (uint32, uint32, error) {
	cs := opts.ChunkSize
	if cs == 0 {
		cs = DefaultChunkSize
	}
	if cs < MinChunkSize || cs > MaxChunkSize || bits.OnesCount32(cs) != 1 {
		return 0, 0, fmt.Errorf("chunk size %d is not a power of two in [%d, %d]", cs, MinChunkSize, MaxChunkSize)
	}
	size := opts.Size
	if size == 0 {
		size = DefaultRingSize
	}
	n := (size + uint64(cs) - 1) / uint64(cs)
	if n < MinChunkCount {
		n = MinChunkCount
	}
	if n > maxChunkCount {
		return 0, 0, fmt.Errorf("ring size %d needs %d chunks, more than %d", size, n, uint64(maxChunkCount))
	}
	return cs, uint32(n), nil
}

// Open maps an existing ring after validating it fully: a regular file
// owned by us (not followed through a symlink), the magic, the version and
// every size in the header against the file.
func Open(path string) (*Ring, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open ring %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("open ring %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("open ring %s: not a regular file", path)
	}
	if int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("open ring %s: owned by uid %d, not by us (uid %d)", path, st.Uid, os.Geteuid())
	}
	if st.Size < HeaderSize {
		return nil, &FormatError{Path: path, Chunk: -1, Slot: -1, Offset: st.Size,
			Problem: fmt.Sprintf("truncated file: %d bytes, the header alone needs %d", st.Size, HeaderSize)}
	}
	mem, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("open ring %s: mmap: %w", path, err)
	}
	r := &Ring{path: path, mem: mem}
	if err := r.loadHeader(uint64(st.Size)); err != nil {
		_ = unix.Munmap(mem)
		return nil, err
	}
	return r, nil
}

// loadHeader validates the header of a freshly mapped ring and copies the
// immutable fields out of it.
func (r *Ring) loadHeader(fileSize uint64) error {
	bad := func(off int64, format string, args ...any) error {
		return &FormatError{Path: r.path, Chunk: -1, Slot: -1, Offset: off, Problem: fmt.Sprintf(format, args...)}
	}
	if m := atomic.LoadUint64(r.u64(offMagic)); m != Magic {
		return bad(offMagic, "bad magic %#x, want %#x (not a memscope ring)", m, uint64(Magic))
	}
	if v := *r.u32(offVersion); v != Version {
		return bad(offVersion, "version %d, this analyzer reads version %d", v, Version)
	}
	if hs := *r.u32(offHeaderSize); hs != HeaderSize {
		return bad(offHeaderSize, "header_size %d, want %d", hs, HeaderSize)
	}
	cs, n := *r.u32(offChunkSize), *r.u32(offChunkCount)
	if cs < MinChunkSize || cs > MaxChunkSize || bits.OnesCount32(cs) != 1 {
		return bad(offChunkSize, "chunk_size %d is not a power of two in [%d, %d]", cs, MinChunkSize, MaxChunkSize)
	}
	if n < MinChunkCount || uint64(n) > maxChunkCount {
		return bad(offChunkCount, "chunk_count %d not in [%d, %d]", n, MinChunkCount, uint64(maxChunkCount))
	}
	want := uint64(HeaderSize) + uint64(n)*uint64(cs)
	if fs := *r.u64(offFileSize); fs != want {
		return bad(offFileSize, "file_size %d, but header_size + chunk_count*chunk_size = %d", fs, want)
	}
	if fileSize != want {
		return bad(int64(min(fileSize, want)), "file is %d bytes, header says %d (truncated or resized)", fileSize, want)
	}
	r.chunkSize, r.chunkCount = cs, n
	r.sealAfter = time.Duration(*r.u64(offSealAfterNS))
	r.consumerTimeout = time.Duration(*r.u64(offConsumerTimeoutNS))
	if r.sealAfter <= 0 {
		return bad(offSealAfterNS, "seal_after_ns %d is not positive", *r.u64(offSealAfterNS))
	}
	if r.consumerTimeout <= 0 {
		return bad(offConsumerTimeoutNS, "consumer_timeout_ns %d is not positive", *r.u64(offConsumerTimeoutNS))
	}
	r.flags = *r.u32(offFlags)
	if r.flags&RingTSC != 0 && !InvariantTSC() {
		return bad(offFlags, "flags %#x: records stamped with the time-stamp counter, which this machine does not have invariant (a ring from another machine?)", r.flags)
	}
	r.clock = newClock(r.flags&RingTSC != 0)
	r.creatorUID = *r.u32(offCreatorUID)
	r.createdNS = *r.u64(offCreatedNS)
	head, done := atomic.LoadUint64(r.u64(offReserveHead)), atomic.LoadUint64(r.u64(offLastReadTo))
	if head < done || head-done > uint64(n) {
		return bad(offReserveHead, "reserve_head %d and last_read_to %d are not a window of at most %d chunks", head, done, n)
	}
	return nil
}

// Close unmaps the ring. Readers of r must not be used afterwards.
func (r *Ring) Close() error {
	if r.mem == nil {
		return nil
	}
	err := unix.Munmap(r.mem)
	r.mem = nil
	if err != nil {
		return fmt.Errorf("ring %s: munmap: %w", r.path, err)
	}
	return nil
}

// Path returns the ring's file name.
func (r *Ring) Path() string { return r.path }

// Info returns a snapshot of the header (only the geometry once closed).
func (r *Ring) Info() Info {
	if r.mem == nil {
		return Info{Path: r.path, ChunkSize: r.chunkSize, ChunkCount: r.chunkCount, SealAfter: r.sealAfter,
			ConsumerTimeout: r.consumerTimeout, Lossy: r.flags&RingLossy != 0, CreatorUID: r.creatorUID, CreatedNS: r.createdNS}
	}
	return Info{
		Path:            r.path,
		FileSize:        uint64(len(r.mem)),
		ChunkSize:       r.chunkSize,
		ChunkCount:      r.chunkCount,
		SealAfter:       r.sealAfter,
		ConsumerTimeout: r.consumerTimeout,
		Lossy:           r.flags&RingLossy != 0,
		CreatorUID:      r.creatorUID,
		CreatedNS:       r.createdNS,
		ReserveHead:     atomic.LoadUint64(r.u64(offReserveHead)),
		LastReadTo:      atomic.LoadUint64(r.u64(offLastReadTo)),
		NextReadFrom:    atomic.LoadUint64(r.u64(offNextReadFrom)),
		HeartbeatNS:     atomic.LoadUint64(r.u64(offHeartbeatNS)),
		ConsumerPid:     atomic.LoadUint32(r.u32(offConsumerPid)),
		CommitFutex:     atomic.LoadUint32(r.u32(offCommitFutex)),
		FullWaiters:     atomic.LoadUint32(r.u32(offFullWaiters)),
		DroppedEvents:   atomic.LoadUint64(r.u64(offDroppedEvents)),
		FullWaits:       atomic.LoadUint64(r.u64(offFullWaits)),
		FullWait:        time.Duration(atomic.LoadUint64(r.u64(offFullWaitNS))),
	}
}

// u64 and u32 address a header field; every access to a field other
// processes write goes through sync/atomic.
func (r *Ring) u64(off uintptr) *uint64 { return (*uint64)(unsafe.Pointer(&r.mem[off])) }
func (r *Ring) u32(off uintptr) *uint32 { return (*uint32)(unsafe.Pointer(&r.mem[off])) }

// slotOffset is the file offset of the slot of chunk sequence seq.
func (r *Ring) slotOffset(seq uint64) uint64 {
	return HeaderSize + (seq%uint64(r.chunkCount))*uint64(r.chunkSize)
}

// chunk returns the slot of seq's header words.
func (r *Ring) chunk(seq uint64) chunkHeader {
	off := r.slotOffset(seq)
	return chunkHeader{base: unsafe.Pointer(&r.mem[off]), off: off}
}

// chunkHeader points at a struct ms_chunk_header in the mapping.
type chunkHeader struct {
	base unsafe.Pointer
	off  uint64 // file offset
}

func (c chunkHeader) seq() *uint64      { return (*uint64)(unsafe.Add(c.base, chOffSeq)) }
func (c chunkHeader) state() *uint64    { return (*uint64)(unsafe.Add(c.base, chOffState)) }
func (c chunkHeader) pid() *uint32      { return (*uint32)(unsafe.Add(c.base, chOffPid)) }
func (c chunkHeader) tid() *uint32      { return (*uint32)(unsafe.Add(c.base, chOffTid)) }
func (c chunkHeader) consumed() *uint64 { return (*uint64)(unsafe.Add(c.base, chOffConsumed)) }

// dataCap is the room for records in a chunk.
func (r *Ring) dataCap() uint32 { return r.chunkSize - ChunkHeaderSize }

// data returns the chunk data of seq's slot, [from, to).
func (r *Ring) data(seq uint64, from, to uint32) []byte {
	off := r.slotOffset(seq) + ChunkHeaderSize
	return r.mem[off+uint64(from) : off+uint64(to) : off+uint64(to)]
}

var errClosed = errors.New("ring is closed")

// catchFault turns a fault on the mapping into an error. Another process
// of the same user can truncate the ring file under us; the mapping then
// raises SIGBUS, which must not crash the analyzer. Use as
// "defer r.catchFault(&err, debug.SetPanicOnFault(true))" at the top of a
// method that reads the mapping: that arms the runtime's panic-on-fault
// for the method's duration, and catchFault restores the previous setting.
// Panics that are not faults on the mapping are re-raised.
func (r *Ring) catchFault(err *error, wasPanicOnFault bool) {
	recovered := recover()
	debug.SetPanicOnFault(wasPanicOnFault)
	if recovered == nil {
		return
	}
	if fault, ok := recovered.(interface{ Addr() uintptr }); ok && len(r.mem) > 0 {
		addr, base := fault.Addr(), uintptr(unsafe.Pointer(&r.mem[0]))
		if addr >= base && addr < base+uintptr(len(r.mem)) {
			*err = &FormatError{Path: r.path, Chunk: -1, Slot: -1, Offset: int64(addr - base),
				Problem: "cannot read the mapping here: the ring file was truncated under us"}
			return
		}
	}
	panic(recovered)
}

// ProducerPids returns the distinct pids that own the chunks of the ring's
// window (those not yet consumed): the processes still writing to it, or
// that wrote what no consumer has read yet.
func (r *Ring) ProducerPids() []uint32 {
	if r.mem == nil {
		return nil
	}
	seen := map[uint32]bool{}
	var out []uint32
	lrt := atomic.LoadUint64(r.u64(offLastReadTo))
	head := atomic.LoadUint64(r.u64(offReserveHead))
	if head < lrt || head-lrt > uint64(r.chunkCount) {
		return nil
	}
	for seq := lrt; seq < head; seq++ {
		if pid := atomic.LoadUint32(r.chunk(seq).pid()); pid != 0 && !seen[pid] {
			seen[pid] = true
			out = append(out, pid)
		}
	}
	return out
}
