package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"memscope/analyzer/live"
)

// The live view's cost (issue 16): the recording's throughput with
// viewers attached, against none; and a snapshot of a million live blocks:
// how long it takes, and how long publishing a state holds the consumer
// (the only time viewers cost it: they read copies).

// liveViewersRow times the micro workload under `run`, in alternating
// rounds with no viewer and with 4 viewers polling the session's state at
// 10 Hz; throughput with viewers over throughput without.
func liveViewersRow(analyzer, benchDir, tmp string, runs int, pairs int64) row {
	r := row{Workload: "live: 4 viewers at 10 Hz", Unit: "x"}
	argv := []string{filepath.Join(benchDir, "alloc_loop"), fmt.Sprint(pairs), "10", "1"}
	var alone, watched []float64
	for i := 0; i < runs; i++ {
		for _, viewers := range []int{0, 4} {
			d, err := timeWithViewers(analyzer, tmp, argv, viewers)
			if err != nil {
				r.Note = err.Error()
				return r
			}
			if viewers == 0 {
				alone = append(alone, d.Seconds())
			} else {
				watched = append(watched, d.Seconds())
			}
		}
	}
	ratio := median(alone) / median(watched)
	r.Memscope = ptr(ratio)
	r.Note = fmt.Sprintf("throughput with 4 viewers / without: median run %.2f s watched, %.2f s alone (%d runs each)", median(watched), median(alone), runs)
	r.check("viewers/none >= 0.95", func() (bool, bool) { return ratio >= 0.95, true })
	return r
}

// timeWithViewers runs argv under `run` with its own private directory
// and, once its session socket is there, viewers polling it at 10 Hz.
func timeWithViewers(analyzer, tmp string, argv []string, viewers int) (time.Duration, error) {
	dir, err := os.MkdirTemp(tmp, "live-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command(analyzer, append([]string{"run", "--out", dir, "--"}, argv...)...)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+dir)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if viewers > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			socket := awaitSocket(ctx, filepath.Join(dir, "memscope"))
			if socket == "" {
				return
			}
			for v := 0; v < viewers; v++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cl, err := live.Dial(socket)
					if err != nil {
						return
					}
					t := time.NewTicker(100 * time.Millisecond)
					defer t.Stop()
					for {
						select {
						case <-ctx.Done():
							return
						case <-t.C:
							cl.State(ctx)
						}
					}
				}()
			}
		}()
	}
	err = cmd.Wait()
	d := time.Since(start)
	cancel()
	wg.Wait()
	if err != nil {
		return 0, fmt.Errorf("%s: %v", strings.Join(argv, " "), err)
	}
	return d, nil
}

func awaitSocket(ctx context.Context, dir string) string {
	for ctx.Err() == nil {
		if socks, _ := live.Sockets(dir); len(socks) > 0 {
			return socks[0]
		}
		time.Sleep(5 * time.Millisecond)
	}
	return ""
}

// liveSnapshotRows snapshots a process holding a million blocks, several
// times, and reports the median time of a snapshot and the longest time
// a publication held the consumer.
func liveSnapshotRows(analyzer, benchDir, tmp string, runs int) []row {
	snap := row{Workload: "live: snapshot of 1 M blocks", Unit: "ms/run"}
	stall := row{Workload: "live: consumer held to publish", Unit: "ms/run"}
	err := func() error {
		dir, err := os.MkdirTemp(tmp, "snap-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cmd := exec.Command(analyzer, "run", "--out", dir, "--", filepath.Join(benchDir, "liveheap"), "1000000", "100", "wait")
		cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+dir)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		defer func() { stdin.Close(); cmd.Wait() }()
		if line, err := bufio.NewReader(out).ReadString('\n'); err != nil || line != "ready\n" {
			return fmt.Errorf("liveheap did not get ready: %q %v", line, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		socket := awaitSocket(ctx, filepath.Join(dir, "memscope"))
		cl, err := live.Dial(socket)
		if err != nil {
			return err
		}
		// Wait until the engine has applied the whole heap.
		var pid uint32
		var v *live.View
		for ctx.Err() == nil {
			if v, err = cl.State(ctx); err == nil && len(v.Processes) > 0 && v.Processes[0].HeapObjects == 1000000 {
				pid = v.Processes[0].Pid
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if pid == 0 {
			return fmt.Errorf("the session never showed the 1000000 live blocks")
		}
		var took []float64
		for i := 0; i < runs; i++ {
			start := time.Now()
			if _, err := cl.Snapshot(ctx, pid); err != nil {
				return err
			}
			took = append(took, float64(time.Since(start))/float64(time.Millisecond))
		}
		if v, err = cl.State(ctx); err != nil {
			return err
		}
		sort.Float64s(took)
		snap.Memscope = ptr(median(took))
		snap.Note = fmt.Sprintf("pprof profile of a process with 1000000 live blocks from 2 sites, median of %d", runs)
		stall.Memscope = ptr(float64(v.MaxPublishNS) / 1e6)
		stall.Note = "longest time building a published state held the consumer, over the whole run (viewers and snapshots read the copies)"
		return nil
	}()
	if err != nil {
		snap.Note, stall.Note = err.Error(), err.Error()
	}
	snap.check("<= 500 ms", func() (bool, bool) { return snap.Memscope != nil && *snap.Memscope <= 500, snap.Memscope != nil })
	stall.check("<= 10 ms", func() (bool, bool) { return stall.Memscope != nil && *stall.Memscope <= 10, stall.Memscope != nil })
	return []row{snap, stall}
}
