package session

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"memscope/analyzer/engine"
	"memscope/analyzer/journal"
	"memscope/analyzer/reach"
	"memscope/analyzer/report"
	"memscope/shm"
)

// leakChecker runs the leak check of every process that parks at exit
// (DESIGN.md §6.1, X1-X4 in include/memscope.h): stop its threads, read
// the ring to the end, scan its memory, keep the verdicts, release it.
type leakChecker struct {
	ring   *shm.Ring
	rd     *shm.Reader
	eng    *engine.Engine
	out    *outputs
	warned bool // a refused stop was said once on stderr
	// timing: say on stderr how long each check held its process
	// (MEMSCOPE_CHECK_TIMING=1; make bench reads it).
	timing bool
	// reportNow writes the reports of a process that waits for them
	// (engine.ExitCheck.Reports), before it is released.
	reportNow func(pid uint32)
	// scratch is the scans' read buffer, mapped at the first check,
	// grown as scans need it and kept for the others (close).
	scratch *reach.Scratch
	// syms is the session loop's symbol cache (the report writer has its
	// own), for the suppressions.
	syms *report.Symbols
	// journal keeps the verdicts (nil: no journal).
	journal *journal.Writer
	// replayed are verdicts a dead analyzer kept in its journal, by
	// pid, for processes whose records the ring delivers again (verdict
	// notes): their checks ran already, and the processes are gone.
	replayed map[uint32][]byte
}

// keep gives pid its verdict: first in the journal, so that it outlives
// this analyzer once the process is released, then in the engine
// (blocks: the live blocks the check saw, for a checked verdict).
func (c *leakChecker) keep(pid uint32, v verdict, blocks *engine.LiveBlocks) {
	if c.journal != nil {
		// A journal that cannot keep it drops itself and says so.
		c.journal.Note(pid, v.encode())
		_ = c.journal.Flush()
	}
	v.setIn(c.eng, pid, blocks)
}

// close releases what the checks kept.
func (c *leakChecker) close() {
	c.scratch.Close()
	c.scratch = nil
}

// checkAll checks every process that announced its exit since the last
// call.
func (c *leakChecker) checkAll() error {
	for {
		checks := c.eng.TakeExitChecks()
		if len(checks) == 0 {
			return nil
		}
		for _, x := range checks {
			if err := c.check(x); err != nil {
				return err
			}
		}
	}
}

// check runs the leak check of a process. Only a ring error is returned:
// a check that cannot run leaves its reason in the engine, and the process
// is always released. x.TS is when the process wrote its exit record (the
// library's CLOCK_MONOTONIC, which is ours). With x.Reports the process is
// released only once its reports are written (reportNow).
func (c *leakChecker) check(x engine.ExitCheck) error {
	pid, waitingSince := x.Pid, x.TS
	if note, ok := c.replayed[pid]; ok {
		delete(c.replayed, pid)
		v, err := decodeVerdictNote(note)
		if err != nil {
			v = verdict{reason: fmt.Sprintf("the verdict an earlier analyzer kept is corrupt: %v", err)}
		}
		if err := c.drain(pid); err != nil {
			return err
		}
		c.keep(pid, v, nil)
		if x.Reports && c.reportNow != nil {
			c.reportNow(pid)
		}
		return nil
	}
	if !c.ring.ExitWaiting(pid) {
		c.keep(pid, verdict{reason: "the process stopped waiting for the check before it began (MEMSCOPE_LEAK_CHECK_TIMEOUT)"}, nil)
		return nil
	}
	if done, err := c.nothingToScan(x); done || err != nil {
		return err
	}
	// Every ptrace request must come from the thread that attached.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// No collection while the process waits: the check allocates tens of
	// MB for a big heap, and the analyzer's low GOGC would make it pay
	// for marking the engine's tables in the middle of the wait. The
	// memory is garbage right after, and collected then. (A collector
	// already off is left as it is: until its first collection the
	// analyzer runs with GOGC off under a memory limit, and that
	// collection turns GOGC on: restoring "off" would undo it.)
	if prev := debug.SetGCPercent(-1); prev >= 0 {
		defer debug.SetGCPercent(prev)
	}
	began := time.Now()
	// The exiting thread is scanned in its wait, whatever the timing;
	// other threads are stopped where they are.
	sp, _ := reach.AwaitThreadParked(int(pid), int(x.Tid), parkWait)
	stopped, ok := reach.Parked(int(pid), int(x.Tid), sp)
	var err error
	if !ok {
		stopped, err = reach.Stop(int(pid))
	}
	stoppedIn := time.Since(began)
	if err != nil {
		reason := fmt.Sprintf("cannot stop the process to scan it: %v", err)
		if !c.warned {
			c.warned = true
			fmt.Fprintf(c.out.cfg.Stderr, "memscope: warning: pid %d: %s; its blocks are reported as leaks of unknown kind\n", pid, reason)
		}
		c.keep(pid, verdict{reason: reason}, nil)
		if x.Reports && c.reportNow != nil {
			c.reportNow(pid)
		}
		c.ring.ReleaseExit(pid)
		return nil
	}
	var scan reach.Result
	var drainedIn, blocksIn time.Duration
	released := false
	// release lets the process go on with its exit: as soon as the scan
	// is done (keeping the verdicts is the analyzer's own time), or on
	// any way out of here.
	release := func() {
		if released {
			return
		}
		released = true
		stopped.Resume()
		c.ring.ReleaseExit(pid)
		if c.timing {
			fmt.Fprintf(c.out.cfg.Stderr, "memscope: leak check of pid %d: waited %v, held %v (stop %v, ring %v, blocks %v, scan %v: %d B of roots, %d B in %d blocks)\n",
				pid, waitedSince(c.ring.Clock(), waitingSince).Round(time.Microsecond), time.Since(began).Round(time.Microsecond), stoppedIn.Round(time.Microsecond), drainedIn.Round(time.Microsecond),
				blocksIn.Round(time.Microsecond), scan.Took.Round(time.Microsecond), scan.RootBytes, scan.HeapBytes, len(scan.Kinds))
		}
	}
	defer release()
	// X4: its threads are stopped, so what it published is all there is.
	if err := c.drain(pid); err != nil {
		return err
	}
	drainedIn = time.Since(began) - stoppedIn
	blocks := c.eng.LiveBlocks(pid)
	t := reach.Target{
		Blocks:       blocks.Extents,
		Suppressed:   c.suppressedBlocks(pid, blocks),
		Loader:       loaderBlocks(c.eng, pid, blocks),
		DeadStackSPs: c.eng.DeadStackSPs(pid),
		Exclude:      []string{c.ring.Path()},
	}
	if c.scratch == nil {
		c.scratch = reach.NewScratch()
	}
	t.Scratch = c.scratch
	blocksIn = time.Since(began) - stoppedIn - drainedIn
	res, err := reach.Scan(stopped, t)
	scan = res
	if err != nil {
		c.keep(pid, verdict{reason: fmt.Sprintf("cannot read the process's memory: %v", err)}, nil)
	} else {
		c.keep(pid, verdict{checked: true, addrSum: addrSum(blocks), kinds: res.Kinds}, &blocks)
	}
	if !x.Reports {
		release()
	}
	if x.Reports && c.reportNow != nil {
		c.reportNow(pid)
	}
	return nil
}

// parkWait bounds the wait for the exiting thread to reach the library's
// wait after its exit record (reach.AwaitThreadParked): microseconds,
// unless the machine is busy.
const parkWait = 100 * time.Millisecond

// nothingToScan finishes the check of a process that holds no block: with
// every record it published applied, no live block and no thread but the
// one waiting at exit (inside the library, where an allocation, even a
// signal handler's, is not recorded), no block can appear, so the verdict
// is known without stopping and scanning it, which would cost it a few ms
// at exit: /bin/true, and many of the hundreds of processes of a build or
// a shell script. Reports whether it did.
func (c *leakChecker) nothingToScan(x engine.ExitCheck) (bool, error) {
	pid := x.Pid
	if err := c.drain(pid); err != nil {
		return false, err
	}
	if c.eng.LiveObjects(pid) != 0 || !singleThread(pid) {
		return false, nil
	}
	c.keep(pid, verdict{checked: true}, &engine.LiveBlocks{})
	if x.Reports && c.reportNow != nil {
		c.reportNow(pid)
	}
	c.ring.ReleaseExit(pid)
	if c.timing {
		fmt.Fprintf(c.out.cfg.Stderr, "memscope: leak check of pid %d: waited %v, nothing to scan (no live block, one thread)\n", pid, waitedSince(c.ring.Clock(), x.TS).Round(time.Microsecond))
	}
	return true, nil
}

// drain applies what the ring holds (a bounded number of polls: other
// processes keep writing) and every record of pid still waiting for its
// turn in time order.
func (c *leakChecker) drain(pid uint32) error {
	for range 16 {
		n, err := pollOnce(c.rd, c.eng, c.journal)
		if err != nil {
			return err
		}
		if n == 0 {
			break
		}
	}
	c.eng.FlushProcess(pid)
	return nil
}

// waitedSince is how long ago ts (a record's time) was, 0 if ahead.
func waitedSince(clock *shm.Clock, ts uint64) time.Duration {
	if now := clock.Now(); now > ts {
		return time.Duration(now - ts)
	}
	return 0
}

// singleThread reports whether pid has exactly one thread now.
func singleThread(pid uint32) bool {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	return err == nil && len(ents) == 1
}

// suppressedBlocks says which of pid's blocks were allocated at a
// suppressed stack (nil when none was): the leak check does not report
// what only they hold. The suppressions are read-only, shared with the
// report writer.
func (c *leakChecker) suppressedBlocks(pid uint32, blocks engine.LiveBlocks) []bool {
	supp := c.out.supp
	if supp == nil {
		return nil
	}
	p := c.eng.Snapshot(pid)
	if p == nil {
		return nil
	}
	return blocksAtSites(blocks, func(site uint32) bool {
		stack, ts := c.eng.SiteStack(pid, site)
		_, suppressed := supp.Match(c.syms.Frames(p, stack, ts))
		return suppressed
	})
}

// loaderBlocks says which blocks the dynamic linker allocated.
func loaderBlocks(eng *engine.Engine, pid uint32, blocks engine.LiveBlocks) []bool {
	return blocksAtSites(blocks, func(site uint32) bool { return eng.AllocatedByLoader(pid, site) })
}

// blocksAtSites marks the blocks whose site has the property at, asked
// once per site; nil when no block has it (reach.Target's "none").
func blocksAtSites(blocks engine.LiveBlocks, at func(site uint32) bool) []bool {
	bySite := map[uint32]bool{}
	var out []bool
	for i, site := range blocks.Sites {
		yes, ok := bySite[site]
		if !ok {
			yes = at(site)
			bySite[site] = yes
		}
		if yes {
			if out == nil {
				out = make([]bool, len(blocks.Sites))
			}
			out[i] = true
		}
	}
	return out
}

// notCheckedReason says why the leak check did not run on p, from how it
// ended, when nothing more precise was recorded.
func notCheckedReason(p *engine.Process, disabled bool) string {
	switch {
	case disabled:
		return "the leak check is off (--no-leak-check)"
	case p.Exit.Known && p.Exit.Signal != 0:
		return fmt.Sprintf("the process was killed by signal %d", p.Exit.Signal)
	case p.ExitRecorded:
		return "the process did not wait for the check at exit (it left through _exit or _Exit, or MEMSCOPE_LEAK_CHECK_TIMEOUT=0)"
	}
	return "the process ended without a normal exit (killed, or a raw exit_group)"
}
