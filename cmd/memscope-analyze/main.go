// Command memscope-analyze consumes the event ring written by
// libmemscope.so and writes pprof heap profiles, leak reports and timelines.
//
//	memscope-analyze run [flags] -- PROG ARGS...   profile one run of PROG
//	memscope-analyze record --ring PATH            consume a ring made by a bare LD_PRELOAD
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a process exit status out of a command without
// printing anything more (the command already said what happened).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// gcPercent is the analyzer's GOGC unless the environment sets one. Its
// heap is mostly flat, pointer-free tables (the live table, site stats),
// so a collection costs little, while Go's default of 100 lets the heap
// grow to twice the live data: on a program with 1.6 M live blocks that
// was 230 MB instead of 140 MB.
const gcPercent = 20

// gcFloor is a heap the collector counts on top of the live data (a
// ballast: allocated, never touched, so it costs address space, not
// memory). With GOGC 20 alone a small heap is collected every few hundred
// KB of garbage: in a build the analyzer spent 11% of its CPU in the
// collector while writing the reports of hundreds of processes. A make
// -j2 of 101 files: 204 collections without, 107 with it. A big heap
// keeps most of GOGC 20's saving (140 MB live: 28 -> 41 MB of garbage).
const gcFloor = 64 << 20

func main() {
	var ballast []byte
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
		ballast = make([]byte, gcFloor)
	}
	// A closed stdout or stderr (memscope-analyze run ... | head) must
	// not cost the reports: with SIGPIPE notified, a write to a broken
	// pipe returns EPIPE instead of killing us. Not ignored: PROG would
	// inherit SIG_IGN; a caught signal is reset to its default at exec.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	code := execute(os.Args[1:])
	runtime.KeepAlive(ballast)
	os.Exit(code)
}

// execute runs the CLI and returns the process exit status.
func execute(args []string) int {
	root := &cobra.Command{
		Use:   "memscope-analyze",
		Short: "Heap profiler and leak checker for programs using the C allocator",
		Long: `memscope-analyze runs a program with libmemscope.so preloaded (run), or consumes
a ring the library created on its own (record), and writes for every traced
process a pprof heap profile at exit and at peak, a LeakSanitizer-style leak
report (text and JSON) and a Chrome/Perfetto timeline.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRunCommand(), newRecordCommand(), newCheckCommand(), newDiffCommand(), newPsCommand(), newSnapshotCommand(), newLiveCommand(), newGcCommand())
	root.SetArgs(args)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())
	})
	err := root.Execute()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(os.Stderr, "memscope-analyze: %v\n", err)
	return 2
}
