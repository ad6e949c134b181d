package shm

// Go mirror of the ring layout in include/memscope.h. layout_test.go
// compares every constant, size and offset here (and the record offsets in
// record.go) with the C header through cgo (shm/internal/cring).

// Ring file constants.
const (
	Magic                 = 0x45504f43534d454d // MS_MAGIC, bytes "MEMSCOPE"
	Version               = 4                  // MS_VERSION
	HeaderSize            = 4096               // MS_HEADER_SIZE
	ChunkHeaderSize       = 64                 // MS_CHUNK_HEADER_SIZE
	MinChunkSize          = 4096               // MS_MIN_CHUNK_SIZE
	MaxChunkSize          = 1 << 24            // MS_MAX_CHUNK_SIZE
	DefaultChunkSize      = 16384              // MS_DEFAULT_CHUNK_SIZE
	DefaultRingSize       = 64 << 20           // MS_DEFAULT_RING_SIZE
	MinChunkCount         = 2                  // MS_MIN_CHUNK_COUNT
	maxChunkCount         = 1 << 31            // ring.c: n <= 2^32/2
	DefaultSealAfterNS    = 50000000           // MS_DEFAULT_SEAL_AFTER_NS
	DefaultConsumerTimeNS = 10000000000        // MS_DEFAULT_CONSUMER_TIMEOUT_NS

	RingLossy = 0x1 // MS_RING_LOSSY
	RingTSC   = 0x2 // MS_RING_TSC

	CapLeakCheck = 0x1 // MS_CAP_LEAK_CHECK
	ExitSlots    = 64  // MS_EXIT_SLOTS

	PrivateMagic = 0x5441564952505350 // MS_PRIVATE_MAGIC: first word of the library's own tables
)

// struct ms_ring_header offsets.
const (
	offMagic             = 0
	offVersion           = 8
	offHeaderSize        = 12
	offChunkSize         = 16
	offChunkCount        = 20
	offFileSize          = 24
	offSealAfterNS       = 32
	offConsumerTimeoutNS = 40
	offFlags             = 48
	offCreatorUID        = 52
	offCreatedNS         = 56
	offPad0              = 64
	offReserveHead       = 72
	offPad1              = 80
	offLastReadTo        = 136
	offNextReadFrom      = 144
	offHeartbeatNS       = 152
	offCommitFutex       = 160
	offConsumerPid       = 164
	offPad2              = 168
	offFullWaiters       = 200
	offPad3              = 204
	offDroppedEvents     = 208
	offFullWaits         = 216
	offFullWaitNS        = 224
	offPad4              = 232
	offConsumerCaps      = 264
	offExitFutex         = 268
	offPad6              = 272
	offExitWaiters       = 320
	ringHeaderStructSize = 576
)

// struct ms_chunk_header offsets.
const (
	chOffSeq      = 0
	chOffState    = 8
	chOffPid      = 16
	chOffTid      = 20
	chOffClaimNS  = 24
	chOffConsumed = 32
	chOffPad      = 40
	chStructSize  = 64
)

// ms_chunk_header.state bits (I4-I6).
const (
	stateSealed   = 1 << 63
	stateWriting  = 1 << 62
	stateGenShift = 32
	stateGenMask  = 0x3fffffff // after shifting
	stateLenMask  = 0xffffffff
	stateGenField = stateGenMask << stateGenShift
)

// seqClaimed is MS_SEQ_CLAIMED(i).
func seqClaimed(i uint64) uint64 { return (i + 1) << 1 }

// seqAbandoned is MS_SEQ_ABANDONED(i).
func seqAbandoned(i uint64) uint64 { return (i+1)<<1 | 1 }

// stateGen is MS_STATE_GEN(i).
func stateGen(i uint64) uint64 { return (i%stateGenMask + 1) << stateGenShift }

// stateFree is MS_STATE_FREE(i): the state word of a slot reset by the
// consumer and waiting for the chunk with sequence i (see I1, I4).
func stateFree(i uint64) uint64 { return stateGen(i) | stateLenMask }

// stateInitial is the state word a slot holds before the owner of
// sequence i initialises it: 0 in the first round, MS_STATE_FREE(i) after.
func stateInitial(i uint64, n uint64) uint64 {
	if i < n {
		return 0
	}
	return stateFree(i)
}
