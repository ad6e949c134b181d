package session

import (
	"memscope/analyzer/engine"
)

// reportWriter writes the reports of ended processes on a goroutine of
// its own, in the order they ended, so that the session's loop goes on
// draining the ring and answering leak checks at exit while a report is
// symbolized and written: a process that exits while another's reports
// are being written no longer waits for them (the shell under pyenv's
// python3 shim: 36 processes, each held at exit behind the reports of the
// ones before it). The writer goroutine owns outputs (and its symbol
// cache) until close returns.
type reportWriter struct {
	out     *outputs
	jobs    chan reportJob
	done    chan struct{}
	results []ProcessResult
}

type reportJob struct {
	p       *engine.Process
	root    uint32        // the session's root as the loop knows it (0: not yet)
	written chan struct{} // closed once p's reports are written, or nil
}

// newReportWriter starts writing reports with out; results are those of
// the processes reported before (a resumed session's).
func newReportWriter(out *outputs, results []ProcessResult) *reportWriter {
	w := &reportWriter{out: out, jobs: make(chan reportJob, 1024), done: make(chan struct{}), results: results}
	go w.loop()
	return w
}

func (w *reportWriter) loop() {
	defer close(w.done)
	for j := range w.jobs {
		if j.p == nil { // sync
			close(j.written)
			continue
		}
		if w.out.root == 0 {
			w.out.root = j.root
		}
		w.results = append(w.results, w.out.write(j.p))
		if j.written != nil {
			close(j.written)
		}
	}
}

// submit queues p's reports. p is no longer the engine's (EndProcess).
func (w *reportWriter) submit(p *engine.Process, root uint32) {
	w.jobs <- reportJob{p: p, root: root}
}

// submitAndWait queues p's reports and returns once they are written.
func (w *reportWriter) submitAndWait(p *engine.Process, root uint32) {
	written := make(chan struct{})
	w.jobs <- reportJob{p: p, root: root, written: written}
	<-written
}

// sync waits until every queued report is written and returns the
// results so far: until the next submit, outputs and the results are the
// caller's to read.
func (w *reportWriter) sync() []ProcessResult {
	written := make(chan struct{})
	w.jobs <- reportJob{written: written}
	<-written
	return w.results
}

// close waits for every queued report and returns the results in the
// order the processes ended; outputs is the caller's again.
func (w *reportWriter) close() []ProcessResult {
	close(w.jobs)
	<-w.done
	return w.results
}
