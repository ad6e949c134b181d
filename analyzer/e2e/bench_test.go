package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"memscope/shm"
)

// newRing creates a ring drained by a consumer until the benchmark ends.
func newRing(b *testing.B) string {
	dir := b.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	r, err := shm.Create(filepath.Join(dir, "ring"), shm.Options{})
	if err != nil {
		b.Fatal(err)
	}
	rd, err := r.NewReader(shm.ReaderOptions{SealAfter: 5 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			if _, err := rd.Poll(func(shm.Record) error { return nil }); err != nil {
				panic(err)
			}
			if err := rd.Commit(); err != nil {
				panic(err)
			}
		}
	}()
	b.Cleanup(func() {
		close(stop)
		<-done
		r.Close()
	})
	return r.Path()
}

// Benchmarks of the library (not tests): `go test -run '^$' -bench .
// ./analyzer/e2e/`. Each reports the program's own measurement as a
// custom metric next to the same program without the library.

// runPairs runs pairs.c with args, with the library and a draining
// consumer if env is not nil, and returns the number it printed.
func runPairs(b *testing.B, env []string, args ...string) float64 {
	cmd := exec.Command(program(b, "pairs"), args...)
	cmd.Env = cleanEnv()
	if env != nil {
		cmd.Env = append(cmd.Env, "LD_PRELOAD="+library(b), "MEMSCOPE_RING="+newRing(b))
		cmd.Env = append(cmd.Env, env...)
	}
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("pairs %v: %v", args, err)
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		b.Fatalf("pairs printed %q: %v", out, err)
	}
	return v
}

var traceCases = []struct {
	name string
	env  []string
}{
	{"bare", nil},
	{"nostack", []string{"MEMSCOPE_DEPTH=0"}},
	{"depth10", []string{"MEMSCOPE_DEPTH=10"}},
	{"depth40", []string{"MEMSCOPE_DEPTH=40"}},
}

// BenchmarkEventCost: ns per malloc/free pair (two records) at a call
// depth of 50 frames, without stacks and with stacks of depth 10 and 40,
// consumed by the real Reader; "bare" is the program without the library.
func BenchmarkEventCost(b *testing.B) {
	for _, c := range traceCases {
		b.Run(c.name, func(b *testing.B) {
			var total float64
			for i := 0; i < b.N; i++ {
				total += runPairs(b, c.env, "1000000", "50")
			}
			b.ReportMetric(total/float64(b.N), "ns/pair")
			b.ReportMetric(total/float64(b.N)/2, "ns/event")
		})
	}
}

// BenchmarkStartup: wall time of /bin/true, bare and with the library
// joining an existing ring.
func BenchmarkStartup(b *testing.B) {
	lib := library(b)
	for _, preload := range []bool{false, true} {
		name := "bare"
		if preload {
			name = "preload"
		}
		b.Run(name, func(b *testing.B) {
			env := cleanEnv()
			if preload {
				env = append(env, "LD_PRELOAD="+lib, "MEMSCOPE_RING="+newRing(b))
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cmd := exec.Command("/bin/true")
				cmd.Env = env
				if err := cmd.Run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRSS: peak RSS (VmHWM) of pairs.c making 1000 pairs at depth
// 50, bare and traced.
func BenchmarkRSS(b *testing.B) {
	for _, c := range traceCases {
		b.Run(c.name, func(b *testing.B) {
			var total float64
			for i := 0; i < b.N; i++ {
				total += runPairs(b, c.env, "1000", "50", "rss")
			}
			b.ReportMetric(total/float64(b.N), "KiB-VmHWM")
		})
	}
}
