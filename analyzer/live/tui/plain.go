package tui

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"
)

// Plain is the view without a terminal: one status line per process,
// every interval, until ctx is done or finished is closed (then one last
// time).
func Plain(ctx context.Context, src Source, w io.Writer, interval time.Duration, finished <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-finished:
			printStatus(ctx, src, w)
			return
		case <-t.C:
			printStatus(ctx, src, w)
		}
	}
}

func printStatus(ctx context.Context, src Source, w io.Writer) {
	v, err := src.State(ctx)
	if err != nil {
		fmt.Fprintf(w, "memscope live: %v\n", err)
		return
	}
	for _, p := range v.Processes {
		if !p.Running {
			continue
		}
		fill := 0.0
		if v.Ring.CapacityBytes > 0 {
			fill = 100 * float64(v.Ring.UsedBytes) / float64(v.Ring.CapacityBytes)
		}
		fmt.Fprintf(w, "memscope live: +%s pid %d %s: heap %d B in %d objects, peak %d B, %d allocs, %d frees, ring %.0f%%, dropped %d, late %d\n",
			dur(uint64(v.UptimeNS)), p.Pid, filepath.Base(p.Program), p.HeapBytes, p.HeapObjects, p.PeakBytes,
			p.Allocations, p.Frees, fill, p.DroppedEvents+v.Ring.DroppedEvents, p.LateEvents)
	}
}
