package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"memscope/analyzer/engine"
	"memscope/analyzer/session"
	"memscope/shm"
)

// LeakExitCode is what --fail-on-leak exits with when unsuppressed leaks
// remain: LeakSanitizer's code, so CI scripts written for LSan keep working.
const LeakExitCode = 23

// outputFlags are the flags run and record share: where reports go and
// how leaks are judged.
type outputFlags struct {
	outDir        string
	failOnLeak    bool
	suppressions  string
	keepRing      bool
	noLeakCheck   bool
	showReachable bool
	snapshotEvery time.Duration
	metricsAddr   string
	reports       string
}

func (o *outputFlags) register(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&o.outDir, "out", envDefault("MEMSCOPE_OUT", "."), "directory for the reports (env MEMSCOPE_OUT)")
	f.BoolVar(&o.failOnLeak, "fail-on-leak", false, fmt.Sprintf("exit %d when unsuppressed leaks remain", LeakExitCode))
	f.StringVar(&o.suppressions, "suppressions", os.Getenv("MEMSCOPE_SUPPRESSIONS"), "LeakSanitizer-format suppressions file (env MEMSCOPE_SUPPRESSIONS)")
	f.BoolVar(&o.keepRing, "keep-ring", false, "keep the ring file after the run is reported")
	f.BoolVar(&o.noLeakCheck, "no-leak-check", false, "do not check reachability at exit: every block still allocated is a leak of unknown kind")
	f.BoolVar(&o.showReachable, "show-reachable", false, "list reachable blocks in the text leak report too")
	f.DurationVar(&o.snapshotEvery, "snapshot-every", 0, "write a numbered heap profile of every running process at this interval, e.g. 60s")
	f.StringVar(&o.metricsAddr, "metrics", "", "serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9464")
	f.StringVar(&o.reports, "reports", envDefault("MEMSCOPE_REPORTS", session.ReportsLeaking),
		"which processes get report files: all, leaking (those that leaked, and the first), root; the index lists every process (env MEMSCOPE_REPORTS)")
}

// symbolCacheDir is where symbols resolved with DWARF are kept across
// runs (symbolize.Options.CacheDir): MEMSCOPE_SYMBOL_CACHE, or
// memscope/symbols in the user's cache directory ($XDG_CACHE_HOME, else
// ~/.cache); "" (no cache) when MEMSCOPE_SYMBOL_CACHE is "off" or there
// is no cache directory.
func symbolCacheDir() string {
	switch dir := os.Getenv("MEMSCOPE_SYMBOL_CACHE"); dir {
	case "off", "0":
		return ""
	case "":
		base, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		return filepath.Join(base, "memscope", "symbols")
	default:
		return dir
	}
}

// monotonicClock reports whether MEMSCOPE_CLOCK asks for records stamped
// with CLOCK_MONOTONIC rather than the time-stamp counter (the library
// reads the same variable in bare mode).
func monotonicClock() (bool, error) {
	switch v := os.Getenv("MEMSCOPE_CLOCK"); v {
	case "", "tsc":
		return false, nil
	case "monotonic":
		return true, nil
	default:
		return false, fmt.Errorf("MEMSCOPE_CLOCK=%q: want tsc or monotonic", v)
	}
}

// journalLimit reads MEMSCOPE_JOURNAL: the largest journal a session
// keeps (session.Config.JournalLimit), "off" for none.
func journalLimit() (int64, error) {
	switch v := os.Getenv("MEMSCOPE_JOURNAL"); v {
	case "":
		return 0, nil
	case "off", "0":
		return -1, nil
	default:
		n, err := parseSize(v)
		if err != nil || n > 1<<62 {
			return 0, fmt.Errorf("MEMSCOPE_JOURNAL=%q: want a size (e.g. 512M) or off", v)
		}
		return int64(n), nil
	}
}

// checkpointEvery reads MEMSCOPE_CHECKPOINT_EVERY: how many bytes of
// records the journal takes between checkpoints
// (session.Config.CheckpointEvery; "": the default).
func checkpointEvery() (int64, error) {
	v := os.Getenv("MEMSCOPE_CHECKPOINT_EVERY")
	if v == "" {
		return 0, nil
	}
	n, err := parseSize(v)
	if err != nil || n == 0 || n > 1<<62 {
		return 0, fmt.Errorf("MEMSCOPE_CHECKPOINT_EVERY=%q: want a size (e.g. 64M)", v)
	}
	return int64(n), nil
}

// sessionConfig checks the output flags and turns them into a session.Config.
func (o *outputFlags) sessionConfig() (session.Config, error) {
	cfg := session.Config{OutDir: o.outDir, KeepRing: o.keepRing, Stderr: os.Stderr,
		NoLeakCheck: o.noLeakCheck, ShowReachable: o.showReachable,
		CheckTiming: os.Getenv("MEMSCOPE_CHECK_TIMING") == "1",
		Serve:       true, SnapshotEvery: o.snapshotEvery,
		SymbolCache: symbolCacheDir()}
	switch o.reports {
	case session.ReportsAll, session.ReportsLeaking, session.ReportsRoot:
		cfg.Reports = o.reports
	default:
		return cfg, fmt.Errorf("--reports %q: want all, leaking or root", o.reports)
	}
	limit, err := journalLimit()
	if err != nil {
		return cfg, err
	}
	cfg.JournalLimit = limit
	if cfg.CheckpointEvery, err = checkpointEvery(); err != nil {
		return cfg, err
	}
	if o.snapshotEvery < 0 {
		return cfg, fmt.Errorf("--snapshot-every %v: want a positive interval", o.snapshotEvery)
	}
	if err := checkOutDir(o.outDir); err != nil {
		return cfg, err
	}
	if o.suppressions != "" {
		data, err := os.ReadFile(o.suppressions)
		if err != nil {
			return cfg, fmt.Errorf("--suppressions: %w", err)
		}
		cfg.Suppressions = string(data)
		cfg.SuppressionsName = o.suppressions
	}
	return cfg, nil
}

// checkOutDir fails early, before PROG runs, if reports could not be written.
// A missing directory is created (0755, as mkdir -p would), as users of
// -o/--output flags expect.
func checkOutDir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("--out %s: %w", dir, err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("--out %s: %w", dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("--out %s is not a directory", dir)
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("--out %s is not writable", dir)
	}
	return nil
}

type runFlags struct {
	outputFlags
	lib      string
	ringSize uint64
	depth    int
	lossy    bool
}

func newRunCommand() *cobra.Command {
	var rf runFlags
	c := &cobra.Command{
		Use:   "run [flags] -- PROG [ARGS...]",
		Short: "Run PROG with libmemscope.so preloaded and report on every process it starts",
		Long: `run creates a ring, starts PROG with libmemscope.so preloaded, consumes the ring
while PROG runs, follows every process of its tree (fork, exec, orphans), writes
each process's reports when it ends, prints a summary on stderr and exits with
PROG's exit status (128+N when a signal N killed it), or with 23 under
--fail-on-leak when unsuppressed leaks remain. PROG's stdin, stdout and stderr
are untouched; Ctrl-C reaches PROG and the reports are still written.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) == 0 {
				return fmt.Errorf("run needs a program: memscope-analyze run [flags] -- PROG [ARGS...]")
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			return runProgram(c.Context(), &rf, args)
		},
	}
	c.Flags().SetInterspersed(false) // flags after PROG belong to PROG
	rf.register(c)
	registerRunFlags(c, &rf)
	return c
}

// registerRunFlags adds the flags that start PROG (run and live).
func registerRunFlags(c *cobra.Command, rf *runFlags) {
	f := c.Flags()
	f.StringVar(&rf.lib, "lib", os.Getenv("MEMSCOPE_LIB"), "interposer to preload (default: libmemscope.so beside this program)")
	rf.ringSize = uint64(shm.DefaultRingSize)
	if v := os.Getenv("MEMSCOPE_RING_SIZE"); v != "" {
		n, err := parseSize(v)
		if err != nil {
			fmt.Fprintf(os.Stderr, "memscope-analyze: MEMSCOPE_RING_SIZE: %v; using the default\n", err)
		} else {
			rf.ringSize = n
		}
	}
	f.Var(sizeFlag{&rf.ringSize}, "ring-size", "ring capacity, e.g. 64M (env MEMSCOPE_RING_SIZE)")
	f.IntVar(&rf.depth, "depth", envInt("MEMSCOPE_DEPTH", 64), fmt.Sprintf("call stack depth recorded, 0..%d, 0 for none (env MEMSCOPE_DEPTH)", shm.MaxDepth))
	f.BoolVar(&rf.lossy, "lossy", os.Getenv("MEMSCOPE_MODE") == "lossy", "drop events instead of slowing PROG when the ring is full (env MEMSCOPE_MODE=lossy)")
}

func envInt(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "memscope-analyze: %s=%q is not a number; using %d\n", name, v, def)
		return def
	}
	return n
}

// runHooks change how runProgram runs PROG (for live): nil fields keep
// run's behaviour.
type runHooks struct {
	// stdout and stderr of PROG (default: ours).
	stdout, stderr *os.File
	// session adjusts the session's configuration before it starts.
	session func(cfg *session.Config)
	// started is called once PROG runs, with its pid; the session runs on
	// this goroutine meanwhile.
	started func(pid int)
}

func runProgram(ctx context.Context, rf *runFlags, args []string) error {
	return runProgramWith(ctx, rf, args, runHooks{})
}

func runProgramWith(ctx context.Context, rf *runFlags, args []string, hooks runHooks) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if rf.depth < 0 || rf.depth > shm.MaxDepth {
		return fmt.Errorf("--depth %d: want 0..%d (0: no stacks)", rf.depth, shm.MaxDepth)
	}
	cfg, err := rf.sessionConfig()
	if err != nil {
		return err
	}
	cfg.Command = args
	if hooks.session != nil {
		hooks.session(&cfg)
	}
	stopMetrics, err := rf.startMetrics(&cfg)
	if err != nil {
		return err
	}
	defer stopMetrics()
	prog, err := resolveProgram(args[0])
	if err != nil {
		return err
	}
	lib, err := findLibrary(rf.lib)
	if err != nil {
		return err
	}
	monotonic, err := monotonicClock()
	if err != nil {
		return err
	}
	dir, err := shm.DefaultDir()
	if err != nil {
		return err
	}
	warnOrphans(dir)
	ringPath := filepath.Join(dir, fmt.Sprintf("run.%d.%d.ring", os.Getpid(), time.Now().UnixNano()))
	ring, err := shm.Create(ringPath, shm.Options{Size: rf.ringSize, Lossy: rf.lossy, MonotonicClock: monotonic})
	if err != nil {
		return err
	}
	cfg.Ring = ring
	if !cfg.NoLeakCheck {
		// Before PROG starts: a short program may exit before the session
		// has read anything, and it must wait for its check all the same.
		ring.EnableLeakChecks()
	}

	// Orphans of the traced tree are reparented to us, so every process
	// of the run is reaped (and reported) here.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		ring.Close()
		os.Remove(ringPath)
		return fmt.Errorf("cannot become the subreaper of the run: %w", err)
	}
	env := childEnv(lib, map[string]string{
		"MEMSCOPE_RING":  ringPath,
		"MEMSCOPE_DEPTH": strconv.Itoa(rf.depth),
	})
	files := []uintptr{0, 1, 2}
	if hooks.stdout != nil {
		files[1] = hooks.stdout.Fd()
	}
	if hooks.stderr != nil {
		files[2] = hooks.stderr.Fd()
	}
	pid, err := startTraced(prog, args, env, files)
	if err != nil {
		ring.Close()
		os.Remove(ringPath)
		return err
	}
	// Only now: wait4 before the fork would find no child and end the run.
	exits := reapChildren()
	stopSignals := forwardSignals(pid)
	defer stopSignals()

	var rootStatus engine.ExitStatus
	sessExits := make(chan session.Exit, 64)
	go func() {
		defer close(sessExits)
		for e := range exits {
			if int(e.Pid) == pid {
				rootStatus = e.Status
			}
			sessExits <- e
		}
	}()
	cfg.Root = uint32(pid)
	if hooks.started != nil {
		hooks.started(pid)
	}
	res, err := session.Run(ctx, cfg, sessExits)
	if err != nil {
		// The recording is lost, but PROG is not ours to abandon: wait for
		// its tree and leave with its status, so a CI job still sees it.
		fmt.Fprintf(cfg.Stderr, "memscope-analyze: %v; no reports for this run\n", err)
		for range sessExits {
		}
		if code := exitCodeOf(rootStatus); code != 0 {
			return &exitError{code: code}
		}
		return &exitError{code: 2}
	}
	if !res.Traced(uint32(pid)) {
		if isStaticELF(prog) {
			fmt.Fprintf(os.Stderr, "memscope: %s is statically linked, so libmemscope.so could not be loaded into it: nothing was recorded\n", prog)
		} else {
			fmt.Fprintf(os.Stderr, "memscope: %s never loaded libmemscope.so (setuid, or LD_PRELOAD removed?): nothing was recorded\n", prog)
		}
	}
	if rf.failOnLeak && res.UnsuppressedLeaks {
		fmt.Fprintln(os.Stderr, res.FailOnLeakLine(cfg.OutDir))
		return &exitError{code: LeakExitCode}
	}
	if code := exitCodeOf(rootStatus); code != 0 {
		return &exitError{code: code}
	}
	return nil
}
