// Package session is one recording session: a ring, the consumer that
// drains it into the engine, the lifecycle of every process that writes to
// it, and the reports written when each of them ends. `run` feeds it the
// exits it reaps; `record` lets it watch the processes itself.
package session

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"memscope/analyzer/engine"
	"memscope/analyzer/journal"
	"memscope/analyzer/live"
	"memscope/analyzer/report"
	"memscope/analyzer/symbolize"
	"memscope/shm"
)

// Config is what a session needs besides its ring.
type Config struct {
	Ring             *shm.Ring
	OutDir           string
	Suppressions     string // LSan-format suppressions text
	SuppressionsName string // its file name, for messages
	KeepRing         bool
	// JournalLimit bounds the journal of what the session consumed, which
	// lets an analyzer resuming the ring after this one died write the
	// same reports (analyzer/journal): bytes, 0 for the default (512
	// MiB), negative for no journal.
	JournalLimit int64
	// CheckpointEvery is how many bytes of records pass between
	// checkpoints of the session's state in its journal, which keep it
	// bounded (0: a quarter of the ring while the state is small, else
	// 64 MiB or 8 times the state: checkpoint.go).
	CheckpointEvery int64
	// SymbolCache keeps the symbols resolved with DWARF across runs
	// (symbolize.Options.CacheDir); "": none.
	SymbolCache string
	Stderr      io.Writer
	// NoLeakCheck turns the reachability check at exit off: every block
	// still allocated is then a leak of unknown kind.
	NoLeakCheck bool
	// ShowReachable lists reachable blocks in the text leak report.
	ShowReachable bool
	// Reports says which processes get their report files: ReportsAll
	// (or ""), ReportsLeaking (those that leaked and the root),
	// ReportsRoot. The session's index lists every process.
	Reports string
	// Root is the session's first process (run: PROG); 0: the first
	// process that ends, or is reported.
	Root uint32
	// CheckTiming says on stderr how long each leak check held its process.
	CheckTiming bool

	// Serve: serve the session on a unix socket beside the ring
	// (live.SocketPath), for `live --attach`, `ps` and `snapshot`.
	Serve bool
	// Board, if set, receives the published state (for --metrics); the
	// session makes its own to serve the socket otherwise.
	Board *live.Board
	// SnapshotEvery writes a numbered heap profile of every running
	// process at this interval (--snapshot-every); 0: none.
	SnapshotEvery time.Duration
	// Command and Output describe the session for viewers: the program
	// run, and where its output goes when captured.
	Command []string
	Output  string

	// PollInterval is how long the consumer sleeps when the ring is empty.
	PollInterval time.Duration
	// Grace is how long record mode waits, once every known process is
	// gone and the ring is idle, for a process it has not heard of yet
	// (a child between fork and its first record).
	Grace time.Duration
}

// Exit is the end of one process, as its reaper saw it.
type Exit struct {
	Pid    uint32
	Status engine.ExitStatus
}

// StatusOf is how a process ended, from its wait(2) status.
func StatusOf(ws unix.WaitStatus) engine.ExitStatus {
	if ws.Signaled() {
		return engine.ExitStatus{Known: true, Signal: int(ws.Signal())}
	}
	return engine.ExitStatus{Known: true, Code: ws.ExitStatus()}
}

// Result is what a session found.
type Result struct {
	Index             string // the session's index, when it had several processes
	Processes         []ProcessResult
	UnsuppressedLeaks bool
}

// ProcessResult is the outcome for one traced process.
type ProcessResult struct {
	Pid          uint32
	Program      string
	Files        []string
	LeakedBytes  uint64
	Unsuppressed bool
	// UnsuppressedBytes/Objects are what --fail-on-leak counts: direct,
	// indirect and (check not run) unknown leaks that no suppression hid.
	UnsuppressedBytes, UnsuppressedObjects uint64
	// Checked: the leak check ran.
	Checked bool
}

// FailOnLeakLine says why --fail-on-leak fails the run: what leaked in
// which processes and where the reports are. It is the last line the run
// prints on stderr.
func (r Result) FailOnLeakLine(outDir string) string {
	var bytes, objects uint64
	var who []string
	for _, p := range r.Processes {
		if !p.Unsuppressed {
			continue
		}
		bytes += p.UnsuppressedBytes
		objects += p.UnsuppressedObjects
		what := fmt.Sprintf("pid %d %s: %d B in %d", p.Pid, filepath.Base(p.Program), p.UnsuppressedBytes, p.UnsuppressedObjects)
		if !p.Checked {
			what += " (reachability not checked)"
		}
		who = append(who, what)
	}
	const most = 3
	if len(who) > most {
		who = append(who[:most], fmt.Sprintf("%d more", len(who)-most))
	}
	return fmt.Sprintf("memscope: --fail-on-leak: %d byte(s) leaked in %d object(s) in %d process(es) (%s); reports in %s",
		bytes, objects, countUnsuppressed(r.Processes), strings.Join(who, ", "), outDir)
}

func countUnsuppressed(ps []ProcessResult) int {
	n := 0
	for _, p := range ps {
		if p.Unsuppressed {
			n++
		}
	}
	return n
}

// Traced reports whether pid wrote anything to the ring.
func (r Result) Traced(pid uint32) bool {
	for _, p := range r.Processes {
		if p.Pid == pid {
			return true
		}
	}
	return false
}

func (c *Config) defaults() {
	if c.PollInterval == 0 {
		c.PollInterval = time.Millisecond
	}
	if c.Grace == 0 {
		c.Grace = 500 * time.Millisecond
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
}

// pidWatch follows a process we did not start, through a pidfd.
type pidWatch struct {
	fd       int
	gone     bool
	exitSeen time.Time         // when the pidfd first said the process is gone
	status   engine.ExitStatus // from PIDFD_GET_INFO (Linux 6.15+), else unknown
}

func watchPid(pid uint32) *pidWatch {
	fd, err := unix.PidfdOpen(int(pid), 0)
	if err != nil {
		return &pidWatch{fd: -1, gone: true} // ESRCH: already gone
	}
	return &pidWatch{fd: fd}
}

// statusWait bounds how long a report waits for the parent of an exited
// process to reap it, which is when the kernel publishes its exit status.
const statusWait = 200 * time.Millisecond

// pidPoll polls the pidfds of the watched processes not yet seen gone,
// all in one system call without blocking (a call each cost 1.4 µs on
// the project's VM), and notes when each one that is gone was first
// seen. Its slices are kept between polls.
type pidPoll struct {
	fds     []unix.PollFd
	watches []*pidWatch
	last    time.Time // of the last poll
}

// pidPollEvery: while the ring is busy the pidfds are polled at most this
// often. The loop turns some 8 000 times a second then (threads 2: 7 900
// ppoll calls in a one-second run, the analyzer's most frequent system
// call), and an exit seen a millisecond later changes nothing: its
// records are read first anyway. An idle loop polls at every turn.
const pidPollEvery = time.Millisecond

func (p *pidPoll) poll(watches map[uint32]*pidWatch, now time.Time, busy bool) {
	if busy && now.Sub(p.last) < pidPollEvery {
		return
	}
	p.last = now
	p.fds, p.watches = p.fds[:0], p.watches[:0]
	for _, w := range watches {
		if !w.gone && w.exitSeen.IsZero() {
			p.fds = append(p.fds, unix.PollFd{Fd: int32(w.fd), Events: unix.POLLIN})
			p.watches = append(p.watches, w)
		}
	}
	if len(p.fds) == 0 {
		return
	}
	if n, err := unix.Poll(p.fds, 0); err != nil || n == 0 {
		return
	}
	for i, fd := range p.fds {
		if fd.Revents != 0 {
			p.watches[i].exitSeen = now
		}
	}
	clear(p.watches) // no references kept to watches that go
}

// exited says whether the process is gone, as pidPoll saw. Once it is, it
// waits up to statusWait for its exit status (the kernel gives it to a
// pidfd only after the parent has reaped the zombie, Linux 6.15+).
func (w *pidWatch) exited() bool {
	if w.gone {
		return true
	}
	if w.exitSeen.IsZero() {
		return false
	}
	info := unix.PidfdInfo{Mask: unix.PIDFD_INFO_EXIT}
	if err := unix.IoctlPidfdInfo(w.fd, &info); err == nil && info.Mask&unix.PIDFD_INFO_EXIT != 0 {
		w.status = StatusOf(unix.WaitStatus(info.Exit_code))
	} else if err == nil && time.Since(w.exitSeen) < statusWait {
		return false // not reaped yet
	}
	w.gone = true
	unix.Close(w.fd)
	return true
}

func (w *pidWatch) close() {
	if !w.gone {
		unix.Close(w.fd)
		w.gone = true
	}
}

// ending is a process known to be gone whose last records may still be
// in the ring.
type ending struct {
	pid    uint32
	status engine.ExitStatus
	// statusBy: in run mode, a process a pidfd saw go before the reaper
	// said how it ended may be our child: wait until then for its status.
	statusBy time.Time
}

// Run consumes cfg.Ring until every process that writes to it is gone and
// reported. Every process the engine hears of is watched through a pidfd,
// so each is reported as soon as it is gone and its records are read. In
// run mode (exits != nil) the reaper's exits carry the statuses of our
// children, and the session ends when the channel is closed (the whole
// tree is reaped); in record mode (exits == nil) it ends once every
// process is gone and the ring has stayed idle for cfg.Grace. The ring is
// closed, and removed unless cfg.KeepRing.
func Run(ctx context.Context, cfg Config, exits <-chan Exit) (res Result, err error) {
	cfg.defaults()
	ring := cfg.Ring
	var jr *journal.Writer // set by startJournal below
	defer func() {
		// The journal goes at the same time as the ring: the unlink
		// that drops a tmpfs file's last reference frees its pages,
		// which took python dicts 18 ms for its journal, then 15 ms
		// for the ring (munmap and unlink), after its reports.
		var removed sync.WaitGroup
		if jr != nil {
			removed.Add(1)
			go func() {
				defer removed.Done()
				if cfg.KeepRing {
					jr.Close()
				} else {
					jr.Remove()
				}
			}()
		}
		ring.Close()
		if cfg.KeepRing {
			fmt.Fprintf(cfg.Stderr, "memscope: ring kept at %s\n", ring.Path())
		} else {
			os.Remove(ring.Path())
		}
		removed.Wait()
	}()
	rd, err := ring.NewReader(shm.ReaderOptions{PollBytes: pollBytes})
	if err != nil {
		return res, fmt.Errorf("ring %s: %w", ring.Path(), err)
	}
	out, err := newOutputs(cfg, func() uint64 { return ring.Info().DroppedEvents })
	if err != nil {
		return res, err
	}
	clock := ring.Clock()
	if rd.Resumed() {
		// The dead analyzer's times are on its line: convert on it too.
		if h, err := journal.ReadHeader(journal.Path(ring.Path())); err == nil {
			clock.Adopt(shm.StampConvOf(h.StampBase, h.StampMul))
		}
	}
	eng := engine.New(engine.Options{Stamps: clock.Conv()})
	cp := newCheckpointer(cfg)
	jr, jroot, restored, missing := startJournal(cfg, ring, rd, eng, cp)
	if missing != "" {
		fmt.Fprintf(cfg.Stderr, "memscope: warning: %s; every report will say it is incomplete\n", missing)
	}
	if cfg.Root == 0 {
		cfg.Root = jroot
	}
	out.root = cfg.Root
	out.missing = missing
	reportedEarly := map[uint32]bool{}
	var results []ProcessResult // of the processes reported before the checkpoint restored
	if restored != nil {
		restored.restore(out)
		results = restored.Results
		for _, pid := range restored.ReportedEarly {
			reportedEarly[pid] = true
		}
		if cfg.Root == 0 {
			cfg.Root = out.root
		}
	}
	root := cfg.Root // the loop's copy: out is the writer's from here on
	// The loop's own symbol cache, for the leak checker's suppressions and
	// the live publisher; the report writer has the other (writer.go).
	loopSyms := report.NewSymbols(symbolize.New(symbolize.Options{CacheDir: cfg.SymbolCache}))
	checker := &leakChecker{ring: ring, rd: rd, eng: eng, out: out, syms: loopSyms, timing: cfg.CheckTiming, journal: jr}
	if restored != nil {
		checker.replayed = restored.Verdicts
	}
	defer checker.close()
	if !cfg.NoLeakCheck {
		ring.EnableLeakChecks()
	}
	// Whatever ends the session, no process may wait for a check that
	// will not come.
	defer ring.DisableLeakChecks()

	board := cfg.Board
	if board == nil && cfg.Serve {
		board = &live.Board{}
	}
	pub := newPublisher(cfg, board, loopSyms)
	if cfg.Serve {
		srv, err := live.Listen(live.SocketPath(ring.Path()), board, cfg.SymbolCache)
		if err != nil {
			fmt.Fprintf(cfg.Stderr, "memscope: warning: %v; live view, ps and snapshot will not find this session\n", err)
		} else {
			defer srv.Close()
		}
	}

	endings := map[uint32]*ending{}
	watches := map[uint32]*pidWatch{}
	var pids pidPoll
	defer func() {
		for _, w := range watches {
			w.close()
		}
	}()
	exitsOpen := exits != nil
	var idleSince, treeGone time.Time

	// reportedEarly: processes reported before they ended (they waited
	// for it at exit, reportNow): what comes of them later is not
	// reported again.
	writer := newReportWriter(out, results)
	writerOpen := true
	closeWriter := func() {
		if writerOpen {
			writerOpen = false
			res.Processes = append(res.Processes, writer.close()...)
		}
	}
	defer closeWriter() // an error return still waits for the reports under way
	finish := func(e *ending, wait bool) {
		delete(endings, e.pid)
		p := eng.EndProcess(e.pid, e.status)
		if p == nil {
			return // never traced (static binary, FOLLOW_FORK=0, not ours)
		}
		if reportedEarly[e.pid] {
			delete(reportedEarly, e.pid)
			return
		}
		if !p.Reach.Checked && p.Reach.Reason == "" {
			p.Reach.Reason = notCheckedReason(p, cfg.NoLeakCheck)
		}
		if wait {
			writer.submitAndWait(p, root)
		} else {
			writer.submit(p, root)
		}
		pub.processEnded(p)
		pub.tick(eng, ring.Info, true)
	}
	// Bare mode's first process waits at exit for its reports: its status
	// is the one of its exit record, and it has nothing more to record.
	checker.reportNow = func(pid uint32) {
		finish(&ending{pid: pid}, true)
		reportedEarly[pid] = true
	}
	end := func(pid uint32, status engine.ExitStatus, statusBy time.Time) {
		if e := endings[pid]; e != nil {
			if status.Known && !e.status.Known {
				e.status = status // the reaper's word, after the pidfd's
			}
			return
		}
		if w := watches[pid]; w != nil {
			w.close()
			delete(watches, pid)
		}
		rd.SealProcess(pid)
		endings[pid] = &ending{pid: pid, status: status, statusBy: statusBy}
	}

	// checkpoint writes a checkpoint when one is due (idle: the last poll
	// found nothing to read) and commits what it covers.
	checkpoint := func(idle bool) error {
		if !cp.due(rd, idle) {
			return nil
		}
		// The reports of the processes that ended are written (sync).
		if !cp.write(rd, eng, sessionStateOf(out, writer.sync(), reportedEarly, checker.replayed)) && cp.ringMode() {
			jr.Abandon("a checkpoint could not be written")
		}
		if err := rd.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}

	for {
		exitSeq := ring.ExitSeq() // before the poll: AwaitExit below
		n, err := pollOnce(rd, eng, jr)
		if err == nil {
			err = checker.checkAll()
		}
		if err != nil {
			return res, fmt.Errorf("ring %s: %w", ring.Path(), err)
		}
		if err := checkpoint(n == 0); err != nil {
			return res, fmt.Errorf("ring %s: %w", ring.Path(), err)
		}
		if !rd.Behind() {
			// Not while the ring holds a backlog: its records, stamped
			// long before now, would come after the window had passed
			// them, late, and their frees would wait for the watermark
			// (a resumed ring's analyzer reads what the program wrote
			// while none read it: 16 199 late events and a wrong peak).
			eng.Advance(clock.Now())
		}
		pub.tick(eng, ring.Info, false)

		// Learn who has ended: the reaper (our children), then pidfds.
		if exitsOpen {
		drain:
			for {
				select {
				case e, ok := <-exits:
					if !ok {
						exitsOpen = false
						break drain
					}
					end(e.Pid, e.Status, time.Time{})
				default:
					break drain
				}
			}
		}
		for _, pid := range eng.Pids() {
			if watches[pid] == nil && endings[pid] == nil {
				if root == 0 {
					root = pid // record mode: the first process seen
				}
				watches[pid] = watchPid(pid)
			}
		}
		now := time.Now()
		pids.poll(watches, now, n > 0)
		for pid, w := range watches {
			if w.exited() {
				delete(watches, pid)
				var by time.Time
				if exitsOpen && !w.status.Known {
					by = now.Add(statusWait)
				}
				end(pid, w.status, by)
			}
		}

		// Report those whose records have all been read.
		for _, e := range endings {
			if rd.Pending(e.pid) || (!e.status.Known && now.Before(e.statusBy)) {
				continue
			}
			finish(e, false)
		}

		if len(endings) == 0 && !exitsOpen {
			if exits != nil {
				// Run mode: the whole tree has been reaped. Give the pidfds of
				// processes reaped by a parent of their own a moment to say
				// how they ended (a pid reused by a stranger never will).
				if treeGone.IsZero() {
					treeGone = time.Now()
				}
				if len(watches) == 0 || time.Since(treeGone) > 2*statusWait {
					break
				}
				time.Sleep(cfg.PollInterval)
				continue
			}
			if len(watches) == 0 && rd.Idle() && n == 0 {
				if idleSince.IsZero() {
					idleSince = time.Now()
				} else if time.Since(idleSince) >= cfg.Grace {
					break
				}
			} else {
				idleSince = time.Time{}
			}
		}
		if ctx.Err() != nil && exits == nil {
			break // record mode interrupted: report what we have
		}
		if n == 0 {
			// Idle: until the poll interval, or a process parks at
			// exit for its check (X5), whose wait is the program's.
			ring.AwaitExit(exitSeq, cfg.PollInterval)
		}
	}

	// Whatever the engine still holds belongs to processes whose end we did
	// not see (record mode interrupted, or a process reaped by a parent of
	// its own, not by us): drain what they left in the ring, then report
	// them with an unknown status.
	if err := drainRemaining(rd, eng, jr, cfg, checker, checkpoint); err != nil {
		return res, fmt.Errorf("ring %s: %w", ring.Path(), err)
	}
	eng.Flush()
	for _, pid := range eng.Pids() {
		finish(&ending{pid: pid}, false)
	}
	pub.flush(eng, ring.Info)
	closeWriter()
	out.writeWarnings()
	// Best effort: a cache that cannot be written costs the next run time.
	_ = loopSyms.SaveCache()
	_ = out.syms.SaveCache()
	if len(res.Processes) > 1 {
		path, err := out.writeIndex(out.root, cfg.Command)
		if err != nil {
			fmt.Fprintf(cfg.Stderr, "memscope: cannot write %s: %v\n", path, err)
		} else {
			res.Index = path
		}
		out.finishSummary(path)
	}
	if info := ring.Info(); info.FullWait >= time.Millisecond { // less is not worth a line
		_ = report.WriteRingWait(cfg.Stderr, info.FullWaits, info.FullWait, uint64(info.ChunkCount)*uint64(info.ChunkSize))
	}
	for _, p := range res.Processes {
		if p.Unsuppressed {
			res.UnsuppressedLeaks = true
		}
	}
	return res, nil
}

// pollOnce applies every record the ring holds now and settles the
// engine to the watermark. It commits them unless the journal leaves
// records in the ring until its next checkpoint (checkpointer); a
// journal that keeps them notes the watermark, for a replay to settle
// at the same point.
func pollOnce(rd *shm.Reader, eng *engine.Engine, jw *journal.Writer) (int, error) {
	n, err := rd.PollChunks(eng.ApplyChunk)
	if err != nil {
		return n, err
	}
	w := rd.Watermark()
	eng.Settle(w)
	if n > 0 && (jw == nil || !jw.RingMode()) {
		// (Records left in the ring are committed after the next
		// checkpoint: checkpointer.)
		if jw != nil {
			jw.Note(0, settleNote(w))
		}
		if err := rd.Commit(); err != nil {
			return n, fmt.Errorf("commit: %w", err)
		}
	}
	return n, nil
}

// pollBytes bounds the records one poll hands the engine (about 7000
// events): an analyzer that fell behind works through the backlog in
// pieces whose pending events stay in the CPU's caches, committing (and
// so freeing ring space for waiting threads) after each.
const pollBytes = 256 << 10

// drainWait bounds how long the end of a session waits for the records of
// processes it did not see end.
const drainWait = 2 * time.Second

// drainRemaining seals the chunks of every process the engine still holds
// that is gone, and polls until their records are all read (or drainWait).
func drainRemaining(rd *shm.Reader, eng *engine.Engine, jw *journal.Writer, cfg Config, checker *leakChecker, checkpoint func(idle bool) error) error {
	deadline := time.Now().Add(drainWait)
	for {
		pending := false
		for _, pid := range eng.Pids() {
			if unix.Kill(int(pid), 0) == unix.ESRCH {
				rd.SealProcess(pid)
			}
			if rd.Pending(pid) {
				pending = true
			}
		}
		if !pending || time.Now().After(deadline) {
			return nil
		}
		n, err := pollOnce(rd, eng, jw)
		if err == nil {
			err = checker.checkAll()
		}
		if err == nil {
			err = checkpoint(n == 0)
		}
		if err != nil {
			return err
		}
		if n == 0 {
			time.Sleep(cfg.PollInterval)
		}
	}
}
