package shm

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"memscope/shm/internal/cring"
)

// goFields is the Go mirror of every struct and field of memscope.h:
// offsets from layout.go and record.go, sizes of the C types.
var goFields = []cring.Field{
	{Name: "ms_ring_header", Off: 0, Size: ringHeaderStructSize},
	{Name: "ms_ring_header.magic", Off: offMagic, Size: 8},
	{Name: "ms_ring_header.version", Off: offVersion, Size: 4},
	{Name: "ms_ring_header.header_size", Off: offHeaderSize, Size: 4},
	{Name: "ms_ring_header.chunk_size", Off: offChunkSize, Size: 4},
	{Name: "ms_ring_header.chunk_count", Off: offChunkCount, Size: 4},
	{Name: "ms_ring_header.file_size", Off: offFileSize, Size: 8},
	{Name: "ms_ring_header.seal_after_ns", Off: offSealAfterNS, Size: 8},
	{Name: "ms_ring_header.consumer_timeout_ns", Off: offConsumerTimeoutNS, Size: 8},
	{Name: "ms_ring_header.flags", Off: offFlags, Size: 4},
	{Name: "ms_ring_header.creator_uid", Off: offCreatorUID, Size: 4},
	{Name: "ms_ring_header.created_ns", Off: offCreatedNS, Size: 8},
	{Name: "ms_ring_header._pad0", Off: offPad0, Size: 8},
	{Name: "ms_ring_header.reserve_head", Off: offReserveHead, Size: 8},
	{Name: "ms_ring_header._pad1", Off: offPad1, Size: 56},
	{Name: "ms_ring_header.last_read_to", Off: offLastReadTo, Size: 8},
	{Name: "ms_ring_header.next_read_from", Off: offNextReadFrom, Size: 8},
	{Name: "ms_ring_header.consumer_heartbeat_ns", Off: offHeartbeatNS, Size: 8},
	{Name: "ms_ring_header.commit_futex", Off: offCommitFutex, Size: 4},
	{Name: "ms_ring_header.consumer_pid", Off: offConsumerPid, Size: 4},
	{Name: "ms_ring_header._pad2", Off: offPad2, Size: 32},
	{Name: "ms_ring_header.full_waiters", Off: offFullWaiters, Size: 4},
	{Name: "ms_ring_header._pad3", Off: offPad3, Size: 4},
	{Name: "ms_ring_header.dropped_events", Off: offDroppedEvents, Size: 8},
	{Name: "ms_ring_header.full_waits", Off: offFullWaits, Size: 8},
	{Name: "ms_ring_header.full_wait_ns", Off: offFullWaitNS, Size: 8},
	{Name: "ms_ring_header._pad4", Off: offPad4, Size: 32},
	{Name: "ms_ring_header.consumer_caps", Off: offConsumerCaps, Size: 4},
	{Name: "ms_ring_header.exit_futex", Off: offExitFutex, Size: 4},
	{Name: "ms_ring_header._pad6", Off: offPad6, Size: 48},
	{Name: "ms_ring_header.exit_waiters", Off: offExitWaiters, Size: 4 * ExitSlots},

	{Name: "ms_chunk_header", Off: 0, Size: chStructSize},
	{Name: "ms_chunk_header.seq", Off: chOffSeq, Size: 8},
	{Name: "ms_chunk_header.state", Off: chOffState, Size: 8},
	{Name: "ms_chunk_header.pid", Off: chOffPid, Size: 4},
	{Name: "ms_chunk_header.tid", Off: chOffTid, Size: 4},
	{Name: "ms_chunk_header.claim_ns", Off: chOffClaimNS, Size: 8},
	{Name: "ms_chunk_header.consumed", Off: chOffConsumed, Size: 8},
	{Name: "ms_chunk_header._pad", Off: chOffPad, Size: 24},

	{Name: "ms_record_header", Off: 0, Size: RecordHeaderSize},
	{Name: "ms_record_header.type", Off: recOffType, Size: 2},
	{Name: "ms_record_header.len", Off: recOffLen, Size: 2},
	{Name: "ms_record_header.flags", Off: recOffFlags, Size: 4},
	{Name: "ms_record_header.ts", Off: recOffTS, Size: 8},

	{Name: "ms_alloc", Off: 0, Size: allocSize},
	{Name: "ms_alloc.h", Off: 0, Size: RecordHeaderSize},
	{Name: "ms_alloc.ptr", Off: allocOffPtr, Size: 8},
	{Name: "ms_alloc.size", Off: allocOffSize, Size: 8},
	{Name: "ms_alloc.stack_id", Off: allocOffStackID, Size: 8},
	{Name: "ms_alloc.kind", Off: allocOffKind, Size: 2},
	{Name: "ms_alloc._pad", Off: allocOffPad, Size: 2},
	{Name: "ms_alloc.align", Off: allocOffAlign, Size: 4},

	{Name: "ms_free", Off: 0, Size: freeSize},
	{Name: "ms_free.h", Off: 0, Size: RecordHeaderSize},
	{Name: "ms_free.ptr", Off: freeOffPtr, Size: 8},

	{Name: "ms_realloc", Off: 0, Size: reallocSize},
	{Name: "ms_realloc.h", Off: 0, Size: RecordHeaderSize},
	{Name: "ms_realloc.old_ptr", Off: reallocOffOldPtr, Size: 8},
	{Name: "ms_realloc.new_ptr", Off: reallocOffNewPtr, Size: 8},
	{Name: "ms_realloc.size", Off: reallocOffSize, Size: 8},
	{Name: "ms_realloc.stack_id", Off: reallocOffStackID, Size: 8},
	{Name: "ms_realloc.ts_before", Off: reallocOffTSBefore, Size: 8},
	{Name: "ms_realloc.kind", Off: reallocOffKind, Size: 2},
	{Name: "ms_realloc._pad", Off: reallocOffPad, Size: 2},
	{Name: "ms_realloc._pad2", Off: reallocOffPad2, Size: 4},

	{Name: "ms_stack", Off: 0, Size: stackFixedSize},
	{Name: "ms_stack.h", Off: 0, Size: RecordHeaderSize},
	{Name: "ms_stack.id", Off: stackOffID, Size: 8},
	{Name: "ms_stack.depth", Off: stackOffDepth, Size: 4},
	{Name: "ms_stack._pad", Off: stackOffPad, Size: 4},
	{Name: "ms_stack.pcs", Off: stackOffPCs, Size: 0},

	{Name: "ms_segment", Off: 0, Size: segmentSize},
	{Name: "ms_segment.vaddr", Off: segOffVaddr, Size: 8},
	{Name: "ms_segment.memsz", Off: segOffMemsz, Size: 8},
	{Name: "ms_segment.offset", Off: segOffOffset, Size: 8},
	{Name: "ms_segment.flags", Off: segOffFlags, Size: 4},
	{Name: "ms_segment._pad", Off: segOffPad, Size: 4},

	{Name: "ms_module", Off: 0, Size: moduleFixedSize},
	{Name: "ms_module.h", Off: 0, Size: RecordHeaderSize},
	{Name: "ms_module.bias", Off: moduleOffBias, Size: 8},
	{Name: "ms_module.event", Off: moduleOffEvent, Size: 2},
	{Name: "ms_module.nsegs", Off: moduleOffNSegs, Size: 2},
	{Name: "ms_module.build_id_len", Off: moduleOffBuildIDLen, Size: 2},
	{Name: "ms_module.path_len", Off: moduleOffPathLen, Size: 2},
	{Name: "ms_module.build_id", Off: moduleOffBuildID, Size: BuildIDMax},

	{Name: "ms_thread", Off: 0, Size: threadSize},
	{Name: "ms_thread.h", Off: 0, Size: RecordHeaderSize},
	{Name: "ms_thread.tid", Off: threadOffTid, Size: 4},
	{Name: "ms_thread.name_len", Off: threadOffNameLen, Size: 4},
	{Name: "ms_thread.name", Off: threadOffName, Size: ThreadNameMax},
	{Name: "ms_thread.stack_sp", Off: threadOffStackSP, Size: 8},

	{Name: "ms_process", Off: 0, Size: processFixedSize},
	{Name: "ms_process.h", Off: 0, Size: RecordHeaderSize},
	{Name: "ms_process.pid", Off: processOffPid, Size: 4},
	{Name: "ms_process.ppid", Off: processOffPpid, Size: 4},
	{Name: "ms_process.event", Off: processOffEvent, Size: 4},
	{Name: "ms_process.status", Off: processOffStatus, Size: 4},
	{Name: "ms_process.exe_len", Off: processOffExeLen, Size: 4},
	{Name: "ms_process.arg_len", Off: processOffArgLen, Size: 4},

	{Name: "ms_lost", Off: 0, Size: lostSize},
	{Name: "ms_lost.h", Off: 0, Size: RecordHeaderSize},
	{Name: "ms_lost.count", Off: lostOffCount, Size: 8},
}

func TestLayoutMatchesC(t *testing.T) {
	cFields := cring.Fields()
	require.ElementsMatch(t, cFields, goFields, "Go mirror of memscope.h layouts")
	// Every field of the C header is covered (ElementsMatch also checks
	// the reverse), and the header fits in its page.
	require.LessOrEqual(t, ringHeaderStructSize, HeaderSize)
	require.LessOrEqual(t, chStructSize, ChunkHeaderSize)
}

func TestConstantsMatchC(t *testing.T) {
	want := map[string]uint64{
		"MS_MAGIC": Magic, "MS_VERSION": Version, "MS_HEADER_SIZE": HeaderSize,
		"MS_CHUNK_HEADER_SIZE": ChunkHeaderSize, "MS_MIN_CHUNK_SIZE": MinChunkSize,
		"MS_MAX_CHUNK_SIZE": MaxChunkSize, "MS_DEFAULT_CHUNK_SIZE": DefaultChunkSize,
		"MS_DEFAULT_RING_SIZE": DefaultRingSize, "MS_MIN_CHUNK_COUNT": MinChunkCount,
		"MS_DEFAULT_SEAL_AFTER_NS": DefaultSealAfterNS, "MS_DEFAULT_CONSUMER_TIMEOUT_NS": DefaultConsumerTimeNS,
		"MS_RING_LOSSY":   RingLossy,
		"MS_STATE_SEALED": stateSealed, "MS_STATE_WRITING": stateWriting, "MS_STATE_GEN_SHIFT": stateGenShift,
		"MS_STATE_GEN_MASK": stateGenMask, "MS_STATE_LEN_MASK": stateLenMask,
		"MS_REC_ALLOC": uint64(RecAlloc), "MS_REC_FREE": uint64(RecFree), "MS_REC_REALLOC": uint64(RecRealloc),
		"MS_REC_STACK": uint64(RecStack), "MS_REC_MODULE": uint64(RecModule), "MS_REC_THREAD": uint64(RecThread),
		"MS_REC_PROCESS": uint64(RecProcess), "MS_REC_LOST": uint64(RecLost), "MS_REC_MAX": uint64(recMax),
		"MS_RECF_TRUNCATED": FlagTruncated, "MS_RECF_EXIT_CHECK": FlagExitCheck, "MS_RECF_THREAD_EXIT": FlagThreadExit,
		"MS_RECF_EXIT_REPORTS": FlagExitReports, "MS_RECF_UNRECORDED": FlagUnrecorded,
		"MS_CAP_LEAK_CHECK": CapLeakCheck, "MS_EXIT_SLOTS": ExitSlots, "MS_PRIVATE_MAGIC": PrivateMagic,
		"MS_KIND_MALLOC": uint64(KindMalloc), "MS_KIND_CALLOC": uint64(KindCalloc), "MS_KIND_REALLOC": uint64(KindRealloc),
		"MS_KIND_REALLOCARRAY": uint64(KindReallocarray), "MS_KIND_POSIX_MEMALIGN": uint64(KindPosixMemalign),
		"MS_KIND_ALIGNED_ALLOC": uint64(KindAlignedAlloc), "MS_KIND_MEMALIGN": uint64(KindMemalign),
		"MS_KIND_VALLOC": uint64(KindValloc), "MS_KIND_PVALLOC": uint64(KindPvalloc), "MS_KIND_MAX": uint64(kindMax),
		"MS_MAX_DEPTH": MaxDepth, "MS_BUILD_ID_MAX": BuildIDMax, "MS_PATH_MAX": PathMax,
		"MS_MAX_SEGMENTS": MaxSegments, "MS_THREAD_NAME_MAX": ThreadNameMax,
		"MS_MODULE_LOAD": uint64(ModuleLoad), "MS_MODULE_UNLOAD": uint64(ModuleUnload),
		"MS_PROCESS_START": uint64(ProcessStart), "MS_PROCESS_FORK": uint64(ProcessFork),
		"MS_PROCESS_EXEC": uint64(ProcessExec), "MS_PROCESS_EXIT": uint64(ProcessExit), "MS_PROCESS_FORKED": uint64(ProcessForked),
	}
	require.Equal(t, want, cring.Consts())
}

func TestSequenceMacrosMatchC(t *testing.T) {
	const n = 7
	for _, i := range []uint64{0, 1, 2, 6, 7, 8, 1000, stateGenMask - 1, stateGenMask, stateGenMask + 1,
		2 * stateGenMask, 1 << 40, math.MaxUint64 / 4, math.MaxUint64 - 2} {
		require.Equal(t, cring.SeqClaimed(i), seqClaimed(i), "MS_SEQ_CLAIMED(%d)", i)
		require.Equal(t, cring.SeqAbandoned(i), seqAbandoned(i), "MS_SEQ_ABANDONED(%d)", i)
		require.Equal(t, cring.StateGen(i), stateGen(i), "MS_STATE_GEN(%d)", i)
		require.NotZero(t, stateGen(i), "GEN(%d) must never be 0 (I4)", i)
		require.Equal(t, cring.StateFree(i), stateFree(i), "MS_STATE_FREE(%d)", i)
		require.Equal(t, cring.StateInitial(i, n), stateInitial(i, n), "MS_STATE_INITIAL(%d, %d)", i, n)
	}
}
