package live

import (
	"path/filepath"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports the Board as Prometheus metrics, per traced process
// (labels pid, program), read at scrape time from the published state. A
// process that ended is exported one last time, with its final values,
// then disappears.
type Collector struct {
	board *Board

	mu       sync.Mutex
	exported map[uint32]bool // ended processes already exported once
}

// NewCollector returns a collector of board.
func NewCollector(board *Board) *Collector {
	return &Collector{board: board, exported: map[uint32]bool{}}
}

var (
	procLabels = []string{"pid", "program"}

	heapBytes   = prometheus.NewDesc("memscope_heap_bytes", "Bytes of heap blocks live now (requested sizes).", procLabels, nil)
	heapObjects = prometheus.NewDesc("memscope_heap_objects", "Heap blocks live now.", procLabels, nil)
	peakBytes   = prometheus.NewDesc("memscope_peak_heap_bytes", "Largest live heap so far.", procLabels, nil)
	allocs      = prometheus.NewDesc("memscope_allocations_total", "Successful allocating calls (a realloc that moves or resizes counts one, and one free).", procLabels, nil)
	frees       = prometheus.NewDesc("memscope_frees_total", "Frees of known blocks.", procLabels, nil)
	allocBytes  = prometheus.NewDesc("memscope_allocated_bytes_total", "Bytes requested by allocating calls.", procLabels, nil)
	dropped     = prometheus.NewDesc("memscope_dropped_events_total", "Events the ring could not take (lossy mode); the reports are incomplete if not 0.", procLabels, nil)
	unrecorded  = prometheus.NewDesc("memscope_unrecorded_calls_total", "Allocator calls signal handlers made inside memscope's hooks, passed through unrecorded; the reports are incomplete if not 0.", procLabels, nil)
	late        = prometheus.NewDesc("memscope_late_events_total", "Events applied out of time order: a thread stalled longer than the reorder window (pairing stays exact; the heap curve may not).", procLabels, nil)
	lag         = prometheus.NewDesc("memscope_analyzer_lag_seconds", "Seconds between the newest event of the process the analyzer applied and now.", procLabels, nil)

	ringCapacity = prometheus.NewDesc("memscope_ring_capacity_bytes", "Capacity of the session's ring.", nil, nil)
	ringUsed     = prometheus.NewDesc("memscope_ring_used_bytes", "Bytes of the ring written and not yet consumed.", nil, nil)
	ringDropped  = prometheus.NewDesc("memscope_ring_dropped_events_total", "Events dropped in the ring, all processes.", nil, nil)
	applied      = prometheus.NewDesc("memscope_events_applied_total", "Allocation and free events the analyzer has applied.", nil, nil)
	processes    = prometheus.NewDesc("memscope_processes", "Traced processes running now.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{heapBytes, heapObjects, peakBytes, allocs, frees, allocBytes, dropped, unrecorded, late, lag,
		ringCapacity, ringUsed, ringDropped, applied, processes} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.board.Load()
	if st == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	running := 0
	for i := range st.Procs {
		p := &st.Procs[i]
		if p.Running {
			running++
		} else if c.exported[p.Pid] {
			continue
		} else {
			c.exported[p.Pid] = true
		}
		labels := []string{strconv.FormatUint(uint64(p.Pid), 10), programName(p)}
		t := p.Totals
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
		}
		counter := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
		}
		gauge(heapBytes, float64(t.LiveBytes))
		gauge(heapObjects, float64(t.LiveObjects))
		gauge(peakBytes, float64(t.PeakBytes))
		counter(allocs, float64(t.Allocations))
		counter(frees, float64(t.Frees))
		counter(allocBytes, float64(t.BytesAllocated))
		counter(dropped, float64(t.DroppedEvents))
		counter(unrecorded, float64(t.UnrecordedCalls))
		counter(late, float64(t.LateEvents))
		var lagS float64
		if p.Running && p.SeenNS != 0 && st.NowNS > p.SeenNS {
			lagS = float64(st.NowNS-p.SeenNS) / 1e9
		}
		gauge(lag, lagS)
	}
	ch <- prometheus.MustNewConstMetric(ringCapacity, prometheus.GaugeValue, float64(uint64(st.Ring.ChunkCount)*uint64(st.Ring.ChunkSize)))
	ch <- prometheus.MustNewConstMetric(ringUsed, prometheus.GaugeValue, float64((st.Ring.ReserveHead-st.Ring.LastReadTo)*uint64(st.Ring.ChunkSize)))
	ch <- prometheus.MustNewConstMetric(ringDropped, prometheus.CounterValue, float64(st.Ring.DroppedEvents))
	ch <- prometheus.MustNewConstMetric(applied, prometheus.CounterValue, float64(st.EventsApplied))
	ch <- prometheus.MustNewConstMetric(processes, prometheus.GaugeValue, float64(running))
}

func programName(p *Proc) string {
	for _, s := range []string{p.Exe, p.Argv0} {
		if b := filepath.Base(s); s != "" && b != "/" && b != "." {
			return b
		}
	}
	return "unknown"
}
