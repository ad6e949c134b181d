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
	"syscall"

	"github.com/spf13/cobra"
)

// exitError carries a process exit status out of a command without
// printing anything more (the command already said what happened).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	var floor *heapFloor
	if os.Getenv("GOGC") == "" {
		floor = startHeapFloor() // heapfloor.go
	}
	// A closed stdout or stderr (memscope-analyze run ... | head) must
	// not cost the reports: with SIGPIPE notified, a write to a broken
	// pipe returns EPIPE instead of killing us. Not ignored: PROG would
	// inherit SIG_IGN; a caught signal is reset to its default at exec.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	code := execute(os.Args[1:])
	runtime.KeepAlive(floor)
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
