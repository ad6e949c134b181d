package shm

import (
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkAppend measures one append on the producer side: the C
// writer's loop over ms_ring_begin/fill/ms_ring_end, timed in C (no cgo
// call per record). The ring is drained between batches, untimed.
func BenchmarkAppend(b *testing.B) {
	r := newTestRing(b, Options{})
	c := attach(b, r, false)
	rd, err := r.NewReader(ReaderOptions{})
	if err != nil {
		b.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w := c.NewWriter(uint32(os.Getpid()), uint32(unix.Gettid()))
	defer w.Free()
	batch := uint64(r.Info().ChunkCount-2) * uint64((r.Info().ChunkSize-ChunkHeaderSize)/allocSize)
	var appendNS uint64
	b.ResetTimer()
	for done := uint64(0); done < uint64(b.N); {
		n := min(batch, uint64(b.N)-done)
		written, ns := w.AppendAllocs(done, n)
		if written != n {
			b.Fatalf("dropped %d events", n-written)
		}
		appendNS += ns
		done += n
		b.StopTimer()
		if _, err := rd.Poll(func(Record) error { return nil }); err != nil {
			b.Fatal(err)
		}
		if err := rd.Commit(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(appendNS)/float64(b.N), "ns/append")
}

// BenchmarkThroughput measures events/s through the C writer and the Go
// Reader together: P producer threads append as fast as they can, the
// consumer polls, decodes every ALLOC and commits, losslessly.
func BenchmarkThroughput(b *testing.B) {
	for _, producers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("producers=%d", producers), func(b *testing.B) {
			r := newTestRing(b, Options{})
			c := attach(b, r, false)
			rd, err := r.NewReader(ReaderOptions{})
			if err != nil {
				b.Fatal(err)
			}
			per := uint64(b.N/producers + 1)
			total := per * uint64(producers)
			var wg sync.WaitGroup
			wg.Add(producers)
			b.ResetTimer()
			start := time.Now()
			for p := 0; p < producers; p++ {
				go func(p int) {
					defer wg.Done()
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					w := c.NewWriter(uint32(os.Getpid()), uint32(unix.Gettid()))
					defer w.Free()
					for done := uint64(0); done < per; {
						n := min(100000, per-done)
						w.AppendAllocs(uint64(p)<<producerShift+done, n)
						done += n
					}
					w.Seal()
				}(p)
			}
			var received uint64
			var sum uint64
			decode := func(rec Record) error {
				a, err := rec.Alloc()
				sum += a.Size
				received++
				return err
			}
			for received < total {
				if _, err := rd.Poll(decode); err != nil {
					b.Fatal(err)
				}
				if err := rd.Commit(); err != nil {
					b.Fatal(err)
				}
			}
			elapsed := time.Since(start)
			b.StopTimer()
			wg.Wait()
			if d := r.Info().DroppedEvents; d != 0 {
				b.Fatalf("%d events dropped in lossless mode", d)
			}
			b.ReportMetric(float64(total)/elapsed.Seconds()/1e6, "Mevents/s")
		})
	}
}

// BenchmarkPollDecode measures the consumer alone: Poll over a full ring
// of ALLOC records, decoding each (Record.Alloc), then Rollback to read
// the same records again. A 1 MiB ring stays in cache (as chunks just
// written by producers do); the default 64 MiB ring is read from memory.
func BenchmarkPollDecode(b *testing.B) {
	for _, size := range []uint64{1 << 20, DefaultRingSize} {
		b.Run(fmt.Sprintf("ring=%dMiB", size>>20), func(b *testing.B) { benchmarkPollDecode(b, size) })
	}
}

func benchmarkPollDecode(b *testing.B, size uint64) {
	r := newTestRing(b, Options{Size: size})
	c := attach(b, r, false)
	runtime.LockOSThread()
	w := c.NewWriter(uint32(os.Getpid()), uint32(unix.Gettid()))
	events := uint64(r.Info().ChunkCount-1) * uint64((r.Info().ChunkSize-ChunkHeaderSize)/allocSize)
	if written, _ := w.AppendAllocs(0, events); written != events {
		b.Fatalf("wrote %d of %d", written, events)
	}
	w.Seal()
	w.Free()
	runtime.UnlockOSThread()
	rd, err := r.NewReader(ReaderOptions{})
	if err != nil {
		b.Fatal(err)
	}
	var sum uint64
	decode := func(rec Record) error {
		a, err := rec.Alloc()
		sum += a.Ptr
		return err
	}
	b.ResetTimer()
	delivered := 0
	for delivered < b.N {
		n, err := rd.Poll(decode)
		if err != nil {
			b.Fatal(err)
		}
		if uint64(n) != events {
			b.Fatalf("polled %d of %d", n, events)
		}
		delivered += n
		if err := rd.Rollback(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(delivered)/b.Elapsed().Seconds()/1e6, "Mevents/s")
	b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(delivered), "ns/event")
}

// BenchmarkDecodeChunk measures DecodeChunk alone over a chunk of ALLOCs.
func BenchmarkDecodeChunk(b *testing.B) {
	var data []byte
	for i := uint64(0); len(data)+allocSize <= DefaultChunkSize-ChunkHeaderSize; i++ {
		data = AppendAlloc(data, i, Alloc{Ptr: i, Size: i, Kind: KindMalloc})
	}
	perChunk := len(data) / allocSize
	var sum uint64
	fn := func(rec Record) error {
		a, err := rec.Alloc()
		sum += a.Ptr
		return err
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := DecodeChunk(data, fn); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*perChunk)/b.Elapsed().Seconds()/1e6, "Mevents/s")
}
