package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"memscope/analyzer/live"
	"memscope/analyzer/live/tui"
	"memscope/analyzer/report"
	"memscope/analyzer/session"
)

func newLiveCommand() *cobra.Command {
	var rf runFlags
	var attach, noCapture bool
	c := &cobra.Command{
		Use:   "live [flags] -- PROG [ARGS...]  |  live --attach [PID|SOCKET]",
		Short: "Watch a program's heap while it runs (a terminal view; run's reports at the end)",
		Long: `live runs PROG as run does and shows its heap while it runs: heap, peak, rates,
ring fill, losses, a heap-over-time graph, and the allocation sites (sortable,
filterable, per thread, own or total, with their stacks), for every process of
the tree. PROG's stdout and stderr go to memscope.PROG.output.txt in --out
(--no-capture leaves them on the terminal). The reports are written as with
run; when PROG ends the view stays with its final state until q. Quitting the
view early leaves the recording running until PROG ends.

live --attach views a running session (run, live or a bare LD_PRELOAD): with
no argument the only one, else the session tracing PID, or the socket named.
Without a terminal, live prints one status line per second.`,
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			if attach {
				if len(args) > 1 {
					return fmt.Errorf("live --attach takes at most one PID or socket")
				}
				arg := ""
				if len(args) == 1 {
					arg = args[0]
				}
				return attachView(ctx, arg, rf.outDir)
			}
			if len(args) == 0 {
				return fmt.Errorf("live needs a program: memscope-analyze live [flags] -- PROG [ARGS...], or --attach")
			}
			return liveRun(ctx, &rf, args, noCapture)
		},
	}
	c.Flags().SetInterspersed(false)
	rf.register(c)
	registerRunFlags(c, &rf)
	c.Flags().BoolVar(&attach, "attach", false, "view a running session instead of starting PROG")
	c.Flags().BoolVar(&noCapture, "no-capture", false, "leave PROG's stdout and stderr on the terminal")
	return c
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// snapshotSaver writes a snapshot the view took into dir.
func snapshotSaver(dir string) func(pid uint32, program string, data []byte) (string, error) {
	return func(pid uint32, program string, data []byte) (string, error) {
		name := fmt.Sprintf("memscope.%s.%d.snapshot-%s.pb.gz", filepath.Base(program), pid, time.Now().Format("20060102-150405"))
		err := report.WriteFileAtomic(dir, name, func(w io.Writer) error { _, err := w.Write(data); return err })
		return filepath.Join(dir, name), err
	}
}

func attachView(ctx context.Context, arg, outDir string) error {
	cl, _, err := dialSession(ctx, arg)
	if err != nil {
		return err
	}
	if _, err := cl.State(ctx); err != nil {
		return err
	}
	if !isTerminal(os.Stdout) {
		tui.Plain(ctx, cl, os.Stdout, time.Second, nil)
		return nil
	}
	_, err = tea.NewProgram(tui.New(cl, tui.Options{SaveSnapshot: snapshotSaver(outDir)})).Run()
	return err
}

// lockedBuffer collects the session's stderr while the view owns the
// terminal.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func liveRun(ctx context.Context, rf *runFlags, args []string, noCapture bool) error {
	tty := isTerminal(os.Stdout)
	board := &live.Board{}
	var hooks runHooks
	var output string
	if !noCapture {
		if err := checkOutDir(rf.outDir); err != nil {
			return err
		}
		output = filepath.Join(rf.outDir, fmt.Sprintf("memscope.%s.output.txt", filepath.Base(args[0])))
		f, err := os.OpenFile(output, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("cannot capture the program's output: %w", err)
		}
		defer f.Close()
		hooks.stdout, hooks.stderr = f, f
	}
	var summary lockedBuffer
	hooks.session = func(cfg *session.Config) {
		cfg.Board = board
		cfg.Output = output
		if tty {
			cfg.Stderr = &summary // the view owns the terminal
		}
	}
	finished := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- runProgramWith(ctx, rf, args, hooks)
		close(finished)
	}()
	src := live.NewBoardSource(board, symbolCacheDir())
	if !tty {
		tui.Plain(ctx, src, os.Stdout, time.Second, finished)
		return <-done
	}
	model := tui.New(src, tui.Options{SaveSnapshot: snapshotSaver(rf.outDir), Finished: finished})
	if _, err := tea.NewProgram(model).Run(); err != nil {
		fmt.Fprintf(os.Stderr, "memscope live: %v\n", err)
	}
	select {
	case <-finished:
	default:
		fmt.Fprintf(os.Stderr, "memscope live: view closed; recording %s until it exits\n", filepath.Base(args[0]))
	}
	err := <-done
	os.Stderr.WriteString(summary.String())
	return err
}
