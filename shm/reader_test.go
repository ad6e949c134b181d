package shm

import (
	"errors"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"memscope/shm/internal/cring"
)

// allocsPerChunk is how many ALLOC records fill a 4 KiB chunk.
const allocsPerChunk = (MinChunkSize - ChunkHeaderSize) / allocSize // 84

// thisThread locks the calling goroutine to its OS thread (the C writer is
// per thread) and returns a writer for it.
func thisThread(t *testing.T, c *cring.Ring) *cring.Writer {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	w := c.NewWriter(uint32(os.Getpid()), uint32(unix.Gettid()))
	t.Cleanup(w.Free)
	return w
}

// appendAllocs writes ALLOC records with ptr = size = ts = from..to-1.
func appendAllocs(t *testing.T, w *cring.Writer, from, to uint64) {
	t.Helper()
	for i := from; i < to; i++ {
		require.True(t, w.AppendAlloc(i, i, i, 0, uint16(KindMalloc), 0), "append %d", i)
	}
}

// span is [from, to) as a slice.
func span(from, to uint64) []uint64 {
	s := make([]uint64, 0, to-from)
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// pollPtrs polls once and returns the ptrs of the ALLOC records delivered
// (nil if none), failing on any other record type.
func pollPtrs(t *testing.T, rd *Reader) []uint64 {
	t.Helper()
	var got []uint64
	n, err := rd.Poll(func(rec Record) error {
		a, err := rec.Alloc()
		if err != nil {
			return err
		}
		got = append(got, a.Ptr)
		return nil
	})
	require.NoError(t, err)
	require.Len(t, got, n)
	return got
}

var errStop = errors.New("stop")

// pollN delivers at most max records: fn refuses the next one.
func pollN(t *testing.T, rd *Reader, max int) []uint64 {
	t.Helper()
	var got []uint64
	n, err := rd.Poll(func(rec Record) error {
		if len(got) == max {
			return errStop
		}
		a, err := rec.Alloc()
		require.NoError(t, err)
		got = append(got, a.Ptr)
		return nil
	})
	if len(got) == max && err != nil {
		require.ErrorIs(t, err, errStop)
	} else {
		require.NoError(t, err)
	}
	require.Equal(t, len(got), n)
	return got
}

func TestIdleProducerChunkIsSealed(t *testing.T) {
	const sealAfter = 30 * time.Millisecond
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 4 * MinChunkSize, SealAfter: sealAfter})
	c := attach(t, r, false)
	w := thisThread(t, c)
	rd, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)

	appendAllocs(t, w, 0, allocsPerChunk/2) // half a chunk, then idle
	idleSince := time.Now()
	require.Equal(t, span(0, allocsPerChunk/2), pollPtrs(t, rd))
	require.NoError(t, rd.Commit())
	require.Equal(t, uint64(0), r.Info().LastReadTo, "unsealed chunk must not be released")

	for rd.Stats().Sealed == 0 {
		require.Less(t, time.Since(idleSince), 5*time.Second, "idle chunk never sealed")
		time.Sleep(5 * time.Millisecond)
		require.Empty(t, pollPtrs(t, rd))
	}
	require.GreaterOrEqual(t, time.Since(idleSince), sealAfter, "sealed before seal_after")
	require.NoError(t, rd.Commit())
	require.Equal(t, uint64(1), r.Info().LastReadTo, "sealed, fully read chunk released")
	require.True(t, rd.Idle())

	// The producer still believes it owns chunk 0: its next append fails
	// its CAS and moves to a fresh chunk without losing the event.
	require.True(t, w.HasChunk())
	require.Equal(t, uint64(0), w.Seq())
	appendAllocs(t, w, allocsPerChunk/2, allocsPerChunk/2+3)
	require.Equal(t, uint64(1), w.Seq())
	require.Equal(t, span(allocsPerChunk/2, allocsPerChunk/2+3), pollPtrs(t, rd))
	require.Empty(t, pollPtrs(t, rd))
	st := rd.Stats()
	require.Equal(t, uint64(1), st.Sealed)
	require.Equal(t, uint64(allocsPerChunk/2+3), st.Records)
	require.Zero(t, st.Dropped)
}

// Chunks 0-2 full and sealed, chunk 3 partly, of which a consumer
// delivered and committed up to the middle of chunk 1 (killScene).
const (
	sceneTotal     = 3*allocsPerChunk + 48
	sceneCommitted = allocsPerChunk + 20
)

// killScene writes sceneTotal allocations from this thread into a new
// ring, and delivers and commits the first sceneCommitted with the
// Reader it returns.
func killScene(t *testing.T) (*Ring, *cring.Writer, *Reader) {
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 8 * MinChunkSize})
	c := attach(t, r, false)
	w := thisThread(t, c)
	appendAllocs(t, w, 0, sceneTotal)
	rd, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)
	require.Equal(t, span(0, sceneCommitted), pollN(t, rd, sceneCommitted))
	require.NoError(t, rd.Commit())
	return r, w, rd
}

func TestKillAndResume(t *testing.T) {
	const total, committed = sceneTotal, sceneCommitted
	r, w, rd := killScene(t)
	require.Equal(t, span(committed, total), pollPtrs(t, rd)) // delivered, never committed
	info := r.Info()
	require.Equal(t, uint64(1), info.LastReadTo)
	require.Equal(t, uint64(4), info.ReserveHead)

	// The consumer dies: drop the Reader and the mapping without a commit.
	require.NoError(t, r.Close())

	r2, err := Open(r.Path())
	require.NoError(t, err)
	t.Cleanup(func() { _ = r2.Close() })
	rd2, err := r2.NewReader(ReaderOptions{})
	require.NoError(t, err)
	require.Equal(t, span(committed, total), pollPtrs(t, rd2), "exactly the uncommitted events")
	require.Empty(t, pollPtrs(t, rd2))
	appendAllocs(t, w, total, total+10)
	require.Equal(t, span(total, total+10), pollPtrs(t, rd2))
	require.NoError(t, rd2.Commit())
	require.Equal(t, uint64(3), r2.Info().LastReadTo)
}

// TestSkipToWhatACheckpointCovers: a consumer that dies after its
// checkpoint (ReadChunks: what it read) and before its Commit leaves
// records the checkpoint covers uncommitted; the Reader that resumes
// skips them (SkipTo) and delivers exactly the rest, then commits past
// them; a ReadChunks before it saw the chunks says the same offsets.
func TestSkipToWhatACheckpointCovers(t *testing.T) {
	const total, committed = sceneTotal, sceneCommitted
	r, _, rd := killScene(t)
	const covered = 2*allocsPerChunk + 7 // mid-chunk 2: the checkpoint's
	require.Equal(t, span(committed, covered), pollN(t, rd, covered-committed))
	checkpoint := map[uint64]uint32{}
	require.NoError(t, rd.ReadChunks(func(seq uint64, off uint32) { checkpoint[seq] = off }))
	require.Equal(t, map[uint64]uint32{1: allocsPerChunk * allocSize, 2: 7 * allocSize}, checkpoint)
	require.NoError(t, r.Close()) // dies before its Commit

	r2, err := Open(r.Path())
	require.NoError(t, err)
	t.Cleanup(func() { _ = r2.Close() })
	rd2, err := r2.NewReader(ReaderOptions{})
	require.NoError(t, err)
	rd2.SkipTo(checkpoint)
	again := map[uint64]uint32{}
	require.NoError(t, rd2.ReadChunks(func(seq uint64, off uint32) { again[seq] = off }))
	require.Equal(t, checkpoint, again, "not seen yet: the offsets it was told")
	require.Equal(t, span(covered, total), pollPtrs(t, rd2), "exactly what the checkpoint does not cover")
	require.NoError(t, rd2.Commit())
	require.Equal(t, uint64(3), r2.Info().LastReadTo)
}

func TestPollChunksResumesWhereTheConsumerStopped(t *testing.T) {
	// A ChunkFunc takes whole records from the start of a chunk's unread
	// bytes; what it does not take comes again, first, in the next poll.
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 4 * MinChunkSize})
	c := attach(t, r, false)
	w := thisThread(t, c)
	const total = allocsPerChunk + 16 // chunk 0 full, chunk 1 partly
	appendAllocs(t, w, 0, total)
	rd, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)

	// take is a consumer that takes at most max records, then refuses.
	var got []uint64
	var calls []int // records offered per call
	take := func(max int) ChunkFunc {
		return func(pid, tid uint32, data []byte) (int, int, error) {
			require.Equal(t, uint32(os.Getpid()), pid)
			require.Equal(t, uint32(unix.Gettid()), tid)
			require.Zero(t, len(data)%allocSize)
			calls = append(calls, len(data)/allocSize)
			off, n := 0, 0
			for off < len(data) {
				if len(got) == max {
					return off, n, errStop
				}
				rec, err := ParseRecordHeader(data[off:])
				require.NoError(t, err)
				a, err := rec.Alloc()
				require.NoError(t, err)
				got = append(got, a.Ptr)
				off, n = off+len(rec.Data), n+1
			}
			return off, n, nil
		}
	}
	n, err := rd.PollChunks(take(10))
	require.ErrorIs(t, err, errStop)
	require.Equal(t, 10, n)
	require.Equal(t, span(0, 10), got)
	require.Equal(t, []int{allocsPerChunk}, calls, "stops at the first refusal")

	got, calls = nil, nil
	n, err = rd.PollChunks(take(total))
	require.NoError(t, err)
	require.Equal(t, total-10, n)
	require.Equal(t, span(10, total), got)
	require.Equal(t, []int{allocsPerChunk - 10, 16}, calls, "chunk 0 from record 10, then chunk 1")

	calls = nil
	n, err = rd.PollChunks(take(total))
	require.NoError(t, err)
	require.Zero(t, n)
	require.Empty(t, calls, "nothing unread: no call")
	appendAllocs(t, w, total, total+3)
	require.Equal(t, span(total, total+3), pollPtrs(t, rd), "Poll goes on where PollChunks stopped")
}

func TestResumeAfterCrashInCommit(t *testing.T) {
	// A consumer that died inside Commit after resetting a slot but before
	// publishing last_read_to: the next one must skip that chunk.
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 4 * MinChunkSize})
	c := attach(t, r, false)
	w := thisThread(t, c)
	appendAllocs(t, w, 0, allocsPerChunk+5)
	rd, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)
	require.Equal(t, span(0, allocsPerChunk+5), pollPtrs(t, rd))
	// What Commit does for chunk 0, minus its last step.
	ch := r.chunk(0)
	atomic.StoreUint64(ch.state(), stateFree(4))
	rd2, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)
	require.Equal(t, span(allocsPerChunk, allocsPerChunk+5), pollPtrs(t, rd2))
	require.NoError(t, rd2.Commit())
	require.Equal(t, uint64(1), r.Info().LastReadTo)
}

func TestRollback(t *testing.T) {
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 8 * MinChunkSize})
	c := attach(t, r, false)
	w := thisThread(t, c)
	rd, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)

	appendAllocs(t, w, 0, 100)
	require.Equal(t, span(0, 100), pollPtrs(t, rd))
	require.NoError(t, rd.Commit())

	appendAllocs(t, w, 100, 300) // crosses into chunks 1-3
	require.Equal(t, span(100, 300), pollPtrs(t, rd))
	require.NoError(t, rd.Rollback())
	require.Equal(t, span(100, 300), pollPtrs(t, rd), "exactly the uncommitted batch again")
	require.NoError(t, rd.Rollback())

	// A failed batch: deliver part, roll back, deliver all.
	require.Equal(t, span(100, 150), pollN(t, rd, 50))
	require.Equal(t, span(150, 300), pollPtrs(t, rd), "Poll continues after the refused record")
	require.NoError(t, rd.Rollback())
	appendAllocs(t, w, 300, 310)
	require.Equal(t, span(100, 310), pollPtrs(t, rd))
	require.NoError(t, rd.Commit())
	require.NoError(t, rd.Rollback())
	require.Empty(t, pollPtrs(t, rd), "nothing after a rollback to the latest commit")
	require.Equal(t, uint64(3), r.Info().LastReadTo)
}

func TestProducerGoesLossyWithoutConsumer(t *testing.T) {
	const timeout = 300 * time.Millisecond
	// Before the ring: its heartbeat, from which the producer counts the
	// timeout, is stamped when it is created (taken after, this read
	// could be later than the heartbeat and fail by microseconds).
	created := time.Now()
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 2 * MinChunkSize, ConsumerTimeout: timeout})
	c := attach(t, r, false) // lossless: it waits for a consumer, up to the timeout
	w := thisThread(t, c)

	// Two chunks hold 2*84 records; the ring is then full and nobody reads.
	appendAllocs(t, w, 0, 2*allocsPerChunk)
	start := time.Now()
	require.False(t, w.AppendAlloc(1000, 1000, 1000, 0, 1, 0), "full ring, no consumer: dropped")
	waited := time.Since(start)
	require.GreaterOrEqual(t, time.Since(created), timeout, "dropped before the consumer timeout")
	require.Less(t, waited, 10*time.Second, "producer hung")
	// Now lossy: later events drop without waiting again.
	start = time.Now()
	for i := uint64(1001); i < 1010; i++ {
		require.False(t, w.AppendAlloc(i, i, i, 0, 1, 0))
	}
	require.Less(t, time.Since(start), timeout)
	require.Equal(t, uint64(10), r.Info().DroppedEvents)
	require.Equal(t, uint64(10), w.Lost())

	// A consumer shows up: the producer records again, LOST first.
	rd, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)
	var ptrs []uint64
	var lost []uint64
	poll := func() {
		_, err := rd.Poll(func(rec Record) error {
			switch rec.Type {
			case RecLost:
				l, err := rec.Lost()
				require.NoError(t, err)
				lost = append(lost, l.Count)
				ptrs = append(ptrs, 1<<63) // marks where the LOST record came
			case RecAlloc:
				a, err := rec.Alloc()
				require.NoError(t, err)
				ptrs = append(ptrs, a.Ptr)
			}
			return nil
		})
		require.NoError(t, err)
		require.NoError(t, rd.Commit())
	}
	poll()
	require.Equal(t, span(0, 2*allocsPerChunk), ptrs)
	require.True(t, w.AppendAlloc(2000, 2000, 2000, 0, 1, 0))
	ptrs = nil
	poll()
	require.Equal(t, []uint64{1 << 63, 2000}, ptrs)
	require.Equal(t, []uint64{10}, lost)
	require.Zero(t, w.Lost())
	require.Equal(t, uint64(10), rd.Stats().Dropped)
}

// writeChunk puts a chunk with sequence seq in the ring by hand, as a
// producer would: reserved, claimed, owned by pid/tid, data published.
func writeChunk(r *Ring, seq uint64, data []byte, sealed bool) {
	ch := r.chunk(seq)
	atomic.StoreUint64(r.u64(offReserveHead), seq+1)
	atomic.StoreUint64(ch.seq(), seqClaimed(seq))
	atomic.StoreUint32(ch.pid(), 4242)
	atomic.StoreUint32(ch.tid(), 4243)
	copy(r.data(seq, 0, uint32(len(data))), data)
	st := stateGen(seq) | uint64(len(data))
	if sealed {
		st |= stateSealed
	}
	atomic.StoreUint64(ch.state(), st)
}

func TestWritingChunkOfDeadThread(t *testing.T) {
	for _, alive := range []bool{true, false} {
		r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 4 * MinChunkSize, SealAfter: 10 * time.Millisecond})
		var rec []byte
		rec = AppendFree(rec, 1, Free{Ptr: 0x10})
		rec = AppendFree(rec, 2, Free{Ptr: 0x20})
		writeChunk(r, 0, rec, false)
		// The owner died in the middle of its third record.
		ch := r.chunk(0)
		copy(r.data(0, uint32(len(rec)), uint32(len(rec))+8), []byte{2, 0, 24, 0})
		atomic.StoreUint64(ch.state(), atomic.LoadUint64(ch.state())|stateWriting)
		var asked [][2]uint32
		rd, err := r.NewReader(ReaderOptions{
			ProcessAlive: func(pid uint32) bool { return true },
			ThreadAlive: func(pid, tid uint32) bool {
				asked = append(asked, [2]uint32{pid, tid})
				return alive
			},
		})
		require.NoError(t, err)
		var ptrs []uint64
		// Alive: 200ms of polling must not seal. Dead: poll until sealed.
		deadline := time.Now().Add(200 * time.Millisecond)
		if !alive {
			deadline = time.Now().Add(5 * time.Second)
		}
		for time.Now().Before(deadline) && (alive || r.Info().LastReadTo == 0) {
			_, err := rd.Poll(func(rec Record) error {
				f, err := rec.Free()
				require.NoError(t, err)
				require.Equal(t, uint32(4242), rec.Pid)
				require.Equal(t, uint32(4243), rec.Tid)
				ptrs = append(ptrs, f.Ptr)
				return nil
			})
			require.NoError(t, err)
			require.NoError(t, rd.Commit())
			time.Sleep(2 * time.Millisecond)
		}
		require.Equal(t, []uint64{0x10, 0x20}, ptrs, "the complete prefix, once")
		require.NotEmpty(t, asked)
		require.Equal(t, [2]uint32{4242, 4243}, asked[0])
		if alive {
			require.Zero(t, rd.Stats().Sealed, "never seal under a live writer")
			require.Equal(t, uint64(0), r.Info().LastReadTo)
			require.True(t, rd.Pending(4242))
		} else {
			require.Equal(t, uint64(1), rd.Stats().Sealed)
			require.Equal(t, uint64(1), r.Info().LastReadTo)
			require.False(t, rd.Pending(4242))
		}
	}
}

func TestSealProcessAndPending(t *testing.T) {
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 4 * MinChunkSize, SealAfter: time.Hour})
	writeChunk(r, 0, AppendFree(nil, 1, Free{Ptr: 0x10}), false)
	ch := r.chunk(0)
	atomic.StoreUint64(ch.state(), atomic.LoadUint64(ch.state())|stateWriting)
	rd, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)
	n, err := rd.Poll(func(Record) error { return nil })
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.True(t, rd.Pending(4242))
	require.False(t, rd.Pending(1), "another process's chunks only")
	rd.SealProcess(1)
	require.Zero(t, rd.Stats().Sealed)
	rd.SealProcess(4242)
	require.Equal(t, uint64(1), rd.Stats().Sealed)
	require.Equal(t, stateSealed|stateGen(0)|freeSize, atomic.LoadUint64(ch.state()), "sealed at the complete prefix, WRITING cleared")
	require.True(t, rd.Pending(4242), "sealed but not yet seen sealed by Poll")
	n, err = rd.Poll(func(Record) error { return nil })
	require.NoError(t, err)
	require.Zero(t, n)
	require.False(t, rd.Pending(4242))
	require.NoError(t, rd.Commit())
	require.True(t, rd.Idle())

	// A reservation nobody claimed yet may belong to anyone.
	atomic.AddUint64(r.u64(offReserveHead), 1)
	require.True(t, rd.Pending(4242))
	require.True(t, rd.Pending(1))
	require.False(t, rd.Idle())

	// Claimed, owner written, state not initialised: it is pid's.
	ch = r.chunk(1)
	atomic.StoreUint64(ch.seq(), seqClaimed(1))
	atomic.StoreUint32(ch.pid(), 4242)
	atomic.StoreUint32(ch.tid(), 4243)
	require.True(t, rd.Pending(4242))
	require.False(t, rd.Pending(1))
	rd.SealProcess(4242)
	require.Equal(t, stateSealed|stateGen(1), atomic.LoadUint64(ch.state()))
	_, err = rd.Poll(func(Record) error { return nil })
	require.NoError(t, err)
	require.False(t, rd.Pending(4242))
	require.True(t, rd.Idle(), "the empty sealed chunk is released by Poll")
}

func TestUnclaimedReservationIsAbandoned(t *testing.T) {
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 4 * MinChunkSize, SealAfter: 20 * time.Millisecond})
	// A producer reserved sequence 0 and died before claiming its slot.
	atomic.StoreUint64(r.u64(offReserveHead), 1)
	rd, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)
	start := time.Now()
	for rd.Stats().Abandoned == 0 {
		require.Less(t, time.Since(start), 5*time.Second)
		require.Empty(t, pollPtrs(t, rd))
		time.Sleep(2 * time.Millisecond)
	}
	require.GreaterOrEqual(t, time.Since(start), 20*time.Millisecond)
	require.Equal(t, seqAbandoned(0), atomic.LoadUint64(r.chunk(0).seq()))
	require.NoError(t, rd.Commit())
	require.Equal(t, uint64(1), r.Info().LastReadTo)

	// The ring goes on: a real producer uses the next chunks.
	c := attach(t, r, false)
	w := thisThread(t, c)
	appendAllocs(t, w, 0, 10)
	require.Equal(t, uint64(1), w.Seq())
	require.Equal(t, span(0, 10), pollPtrs(t, rd))
}

func TestClaimedButUninitialisedChunk(t *testing.T) {
	// The owner claimed slot 0 and stalled before initialising its state:
	// it is sealed only after the consumer timeout when the owner is
	// unknown, and the owner's late CAS then fails (I4).
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 2 * MinChunkSize,
		SealAfter: 5 * time.Millisecond, ConsumerTimeout: 60 * time.Millisecond})
	atomic.StoreUint64(r.u64(offReserveHead), 1)
	atomic.StoreUint64(r.chunk(0).seq(), seqClaimed(0))
	rd, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)
	start := time.Now()
	for rd.Stats().Sealed == 0 {
		require.Less(t, time.Since(start), 5*time.Second)
		require.Empty(t, pollPtrs(t, rd))
		time.Sleep(2 * time.Millisecond)
	}
	require.GreaterOrEqual(t, time.Since(start), 60*time.Millisecond, "owner unknown: wait the consumer timeout")
	// Sealed empty, so released by the same Poll and reset for sequence 2:
	// a late CAS from 0 cannot succeed.
	require.Equal(t, uint64(1), r.Info().LastReadTo)
	require.Equal(t, stateFree(2), atomic.LoadUint64(r.chunk(0).state()))
	require.False(t, atomic.CompareAndSwapUint64(r.chunk(0).state(), 0, stateGen(0)))
}

func TestRecordsRoundTripThroughC(t *testing.T) {
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 4 * MinChunkSize})
	c := attach(t, r, false)
	w := thisThread(t, c)
	want := []any{
		Process{Pid: 100, Ppid: 1, Event: ProcessExec, Status: -1, Exe: "/usr/bin/app", Arg0: "app"},
		Module{Bias: 0x5555, Event: ModuleUnload, BuildID: []byte{0xde, 0xad}, Segments: []Segment{{Vaddr: 1, Memsz: 2, Offset: 3, Flags: 5}, {Vaddr: 10, Memsz: 20, Offset: 30, Flags: 4}}, Path: "/lib/x.so"},
		Thread{Tid: 77, Name: "a-thread-name-16"},
		Stack{ID: 9, PCs: []uint64{1, 2, 3, 4, 5}},
		Realloc{OldPtr: 1, NewPtr: 2, Size: 3, StackID: 9, TSBefore: 4, Kind: KindReallocarray},
		Lost{Count: 12},
		Alloc{Ptr: 0x10, Size: 5, StackID: 9, Kind: KindPosixMemalign, Align: 64},
		Free{Ptr: 0x10},
	}
	for i, v := range want {
		var b []byte
		ts := uint64(1000 + i)
		switch v := v.(type) {
		case Process:
			b = AppendProcess(b, ts, v)
		case Module:
			b = AppendModule(b, ts, v)
		case Thread:
			b = AppendThread(b, ts, v)
		case Stack:
			b = AppendStack(b, ts, 0, v)
		case Realloc:
			b = AppendRealloc(b, ts, v)
		case Lost:
			b = AppendLost(b, ts, v)
		case Alloc:
			b = AppendAlloc(b, ts, v)
		case Free:
			b = AppendFree(b, ts, v)
		}
		require.True(t, w.AppendRaw(b))
	}
	// The same events written field by field by C.
	require.True(t, w.AppendAlloc(2000, 0x10, 5, 9, uint16(KindPosixMemalign), 64))
	require.True(t, w.AppendFree(2001, 0x10))
	require.False(t, w.AppendRaw(make([]byte, 12)), "a record that breaks I7 is dropped, not written")

	rd, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)
	var got []any
	var ts []uint64
	_, err = rd.Poll(func(rec Record) error {
		var v any
		var err error
		switch rec.Type {
		case RecProcess:
			v, err = rec.Process()
		case RecModule:
			v, err = rec.Module()
		case RecThread:
			v, err = rec.Thread()
		case RecStack:
			v, err = rec.Stack()
		case RecRealloc:
			v, err = rec.Realloc()
		case RecLost:
			v, err = rec.Lost()
		case RecAlloc:
			v, err = rec.Alloc()
		case RecFree:
			v, err = rec.Free()
		}
		got = append(got, v)
		ts = append(ts, rec.TS)
		return err
	})
	require.NoError(t, err)
	require.Equal(t, append(want, want[6], want[7]), got)
	require.Equal(t, []uint64{1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 2000, 2001}, ts)
	require.Equal(t, uint64(1), r.Info().DroppedEvents)
}

func TestProducerNeverWaitsOnReleasableChunks(t *testing.T) {
	// A consumer that commits only after a Poll that delivered something
	// (as a session does). Chunk 0 is delivered and committed while its
	// owner still fills it; then the owner seals it and waits for room
	// (chunk 1 is held by another, idle thread). No record is left to
	// deliver, yet chunk 0 must be released, or the owner waits for ever.
	r := newTestRing(t, Options{ChunkSize: MinChunkSize, Size: 2 * MinChunkSize,
		SealAfter: time.Hour, ConsumerTimeout: 10 * time.Second})
	c := attach(t, r, false)
	rd, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)

	step := make(chan struct{})
	appended := make(chan bool)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its writer
		w := c.NewWriter(uint32(os.Getpid()), uint32(unix.Gettid()))
		defer w.Free()
		w.AppendAlloc(0, 0, 0, 0, 1, 0) // takes chunk 0
		step <- struct{}{}
		<-step
		for i := uint64(1); i < allocsPerChunk; i++ {
			w.AppendAlloc(i, i, i, 0, 1, 0) // fills chunk 0, unsealed
		}
		step <- struct{}{}
		<-step
		appended <- w.AppendAlloc(allocsPerChunk, allocsPerChunk, allocsPerChunk, 0, 1, 0)
	}()
	<-step
	w2 := thisThread(t, c)
	appendAllocs(t, w2, 1000, 1001) // chunk 1, then idle
	step <- struct{}{}
	<-step
	require.Equal(t, append(span(0, allocsPerChunk), 1000), sortedPtrs(pollPtrs(t, rd)))
	require.NoError(t, rd.Commit())
	step <- struct{}{} // the owner seals chunk 0 and waits for room

	deadline := time.After(5 * time.Second) // well below the consumer timeout
	var got []uint64
	for {
		n, err := rd.Poll(func(rec Record) error {
			a, err := rec.Alloc()
			got = append(got, a.Ptr)
			return err
		})
		require.NoError(t, err)
		if n > 0 {
			require.NoError(t, rd.Commit())
		}
		select {
		case ok := <-appended:
			require.True(t, ok)
			_, err := rd.Poll(func(rec Record) error {
				a, err := rec.Alloc()
				got = append(got, a.Ptr)
				return err
			})
			require.NoError(t, err)
			require.Equal(t, []uint64{allocsPerChunk}, got)
			require.Zero(t, r.Info().DroppedEvents)
			return
		case <-deadline:
			<-appended // once the heartbeat is stale the producer drops and ends
			t.Fatal("producer waited for a slot the consumer could release")
		default:
			time.Sleep(time.Millisecond)
		}
	}
}

func sortedPtrs(p []uint64) []uint64 {
	slices.Sort(p)
	return p
}
