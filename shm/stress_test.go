package shm

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"memscope/shm/internal/cring"
)

// producerShift puts the producer index in the high bits of each ALLOC's
// ptr; the low bits count the producer's events from 0.
const producerShift = 40

// producerResult is what one producer thread did.
type producerResult struct {
	tid      uint32
	sent     uint64 // events attempted
	written  uint64 // events the writer accepted
	lostLeft uint64 // drops not yet reported by a LOST record at the end
}

// runProducer appends events [0, events) as ALLOC records from a goroutine
// locked to its own OS thread, in batches through the C writer's loop (no
// cgo call per record), then seals its chunk as a thread exit does.
// It stops early, between batches, once stop is set.
func runProducer(c *cring.Ring, id int, events, batch uint64, stop *atomic.Bool, res *producerResult, wg *sync.WaitGroup) {
	defer wg.Done()
	// Never unlocked: the thread exits with the goroutine, so no other
	// producer reuses its tid (LOST records are matched by tid).
	runtime.LockOSThread()
	res.tid = uint32(unix.Gettid())
	w := c.NewWriter(uint32(os.Getpid()), res.tid)
	defer w.Free()
	first := uint64(id) << producerShift
	for res.sent < events && !stop.Load() {
		n := min(batch, events-res.sent)
		ok, _ := w.AppendAllocs(first+res.sent, n)
		res.written += ok
		res.sent += n
		if ok < n/2 {
			// Mostly dropping: give the consumer the CPU (2-core CI).
			time.Sleep(50 * time.Microsecond)
		}
	}
	res.lostLeft = w.Lost()
	w.Seal()
}

// streamCheck follows each producer's stream as the Reader delivers it.
type streamCheck struct {
	next        map[uint64]uint64 // producer -> next event index expected
	lostSeen    map[uint64]uint64 // producer -> LOST counts pending before its next event
	tidOf       map[uint64]uint32
	tidToProd   map[uint32]uint64
	received    uint64
	lostTotal   uint64
	lostRecords uint64
	lossy       bool
}

func newStreamCheck(lossy bool) *streamCheck {
	return &streamCheck{next: map[uint64]uint64{}, lostSeen: map[uint64]uint64{}, tidOf: map[uint64]uint32{},
		tidToProd: map[uint32]uint64{}, lossy: lossy}
}

// record checks one record: ALLOCs of a producer arrive in order, each
// exactly once; in lossy mode a gap is exactly the LOST counts before it.
func (s *streamCheck) record(rec Record) error {
	switch rec.Type {
	case RecLost:
		l, err := rec.Lost()
		if err != nil {
			return err
		}
		p, ok := s.tidToProd[rec.Tid]
		if !ok {
			// LOST before the thread's first delivered event: key it by tid.
			p = 1<<63 | uint64(rec.Tid)
		}
		s.lostSeen[p] += l.Count
		s.lostTotal += l.Count
		s.lostRecords++
		return nil
	case RecAlloc:
	default:
		return fmt.Errorf("unexpected %s record", rec.Type)
	}
	a, err := rec.Alloc()
	if err != nil {
		return err
	}
	p, idx := a.Ptr>>producerShift, a.Ptr&(1<<producerShift-1)
	if tid, ok := s.tidOf[p]; ok && tid != rec.Tid {
		return fmt.Errorf("producer %d event %d from tid %d, earlier ones from %d", p, idx, rec.Tid, tid)
	}
	if _, ok := s.tidOf[p]; !ok {
		s.tidOf[p] = rec.Tid
		s.tidToProd[rec.Tid] = p
		s.lostSeen[p] += s.lostSeen[1<<63|uint64(rec.Tid)]
		delete(s.lostSeen, 1<<63|uint64(rec.Tid))
	}
	want := s.next[p]
	if s.lossy {
		if idx < want || idx-want != s.lostSeen[p] {
			return fmt.Errorf("producer %d: event %d after %d, LOST records said %d dropped in between", p, idx, want, s.lostSeen[p])
		}
		s.lostSeen[p] = 0
	} else if idx != want {
		return fmt.Errorf("producer %d: event %d, want %d", p, idx, want)
	}
	if a.Size != a.Ptr || rec.TS != a.Ptr {
		return fmt.Errorf("producer %d event %d: size %d ts %d", p, idx, a.Size, rec.TS)
	}
	s.next[p] = idx + 1
	s.received++
	return nil
}

func TestConcurrentProducers(t *testing.T) {
	for _, lossy := range []bool{false, true} {
		for _, producers := range []int{1, 4, 16} {
			name := fmt.Sprintf("lossless/producers=%d", producers)
			if lossy {
				name = fmt.Sprintf("lossy/producers=%d", producers)
			}
			t.Run(name, func(t *testing.T) {
				testConcurrentProducers(t, producers, lossy)
			})
		}
	}
}

func testConcurrentProducers(t *testing.T, producers int, lossy bool) {
	const chunkSize = MinChunkSize
	const minWraps = 2000
	chunks := uint64(max(4, 2*producers))
	perChunk := uint64((chunkSize - ChunkHeaderSize) / allocSize)
	events := minWraps * chunks * perChunk / uint64(producers) * 11 / 10
	var stop atomic.Bool
	if lossy {
		// Producers outrun the consumer and drop most events: let them run
		// until the ring has wrapped minWraps times.
		events = 1 << 36
	}
	r := newTestRing(t, Options{ChunkSize: chunkSize, Size: chunks * chunkSize, Lossy: lossy})
	c := attach(t, r, false)
	rd, err := r.NewReader(ReaderOptions{})
	require.NoError(t, err)

	results := make([]producerResult, producers)
	var wg sync.WaitGroup
	wg.Add(producers)
	for i := range producers {
		go runProducer(c, i, events, 500, &stop, &results[i], &wg)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()

	check := newStreamCheck(lossy)
	err = consume(rd, func(rec Record) error {
		if lossy && r.Info().ReserveHead >= minWraps*chunks {
			stop.Store(true)
		}
		return check.record(rec)
	}, finished)
	// Producers must be gone before the test fails (and unmaps the ring).
	select {
	case <-finished:
	case <-time.After(time.Minute):
		t.Fatalf("producers did not finish; consumer: %v", err)
	}
	require.NoError(t, err)
	require.True(t, rd.Idle(), "window not empty after every producer sealed")

	info := r.Info()
	var sent, written, lostLeft uint64
	for _, res := range results {
		if !lossy {
			require.Equal(t, events, res.sent)
		}
		sent += res.sent
		written += res.written
		lostLeft += res.lostLeft
	}
	require.GreaterOrEqual(t, info.ReserveHead/chunks, uint64(minWraps), "ring wrapped too few times")
	require.Equal(t, written, check.received, "every written event delivered exactly once")
	require.Equal(t, sent, check.received+info.DroppedEvents, "received + dropped == sent")
	require.Equal(t, info.DroppedEvents, check.lostTotal+lostLeft, "header drops == LOST records + unreported")
	for i := range producers {
		p := uint64(i)
		// The last event delivered plus the drops after it end the stream.
		require.Equal(t, results[i].sent, check.next[p]+results[i].lostLeft+check.lostSeen[p], "producer %d", i)
	}
	if lossy {
		require.Positive(t, info.DroppedEvents, "lossy run dropped nothing: the test did not exercise drops")
	} else {
		require.Zero(t, info.DroppedEvents)
		require.Zero(t, check.lostTotal)
		require.Equal(t, sent, check.received)
	}
	st := rd.Stats()
	require.Equal(t, check.received+check.lostRecords, st.Records)
	t.Logf("%d producers, %d events each, %d chunks of %d: reserve_head %d (%d wraps), received %d, dropped %d, full waits %d, stats %+v",
		producers, events, chunks, chunkSize, info.ReserveHead, info.ReserveHead/chunks, check.received, info.DroppedEvents, info.FullWaits, st)
}

// consume polls and commits until finished is closed, then once more. On
// an error it keeps draining (ignoring records) so that lossless producers
// can finish, or stops if the ring itself is broken, and returns the error.
func consume(rd *Reader, fn func(Record) error, finished <-chan struct{}) error {
	var first error
	deliver := func(rec Record) error {
		if first != nil {
			return nil
		}
		if err := fn(rec); err != nil {
			first = err
		}
		return nil
	}
	deadline := time.Now().Add(2 * time.Minute)
	for drained := false; !drained; {
		select {
		case <-finished:
			drained = true // one last Poll after every producer sealed
		default:
		}
		if _, err := rd.Poll(deliver); err != nil {
			return err
		}
		if err := rd.Commit(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("consumer timed out")
		}
	}
	return first
}
