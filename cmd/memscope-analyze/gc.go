package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"memscope/analyzer/journal"
	"memscope/analyzer/live"
	"memscope/analyzer/session"
	"memscope/shm"
)

// orphanWarnBytes: run says so once when orphaned rings take more.
const orphanWarnBytes = 256 << 20

// listOrphans prints the rings of dir that no analyzer consumes, with
// what to do about them; it returns their total size.
func listOrphans(w io.Writer, dir string) int64 {
	rings, err := live.Rings(dir)
	if err != nil {
		return 0
	}
	var total int64
	for _, r := range rings {
		switch r.State {
		case live.RingOrphaned:
			total += r.Size
			fmt.Fprintf(w, "orphaned ring %s (%d MiB): finish its reports with memscope-analyze record --ring %s --out DIR, or memscope-analyze gc\n",
				r.Path, r.Size>>20, r.Path)
		case live.RingUnconsumed:
			fmt.Fprintf(w, "ring %s (%d MiB) has no analyzer but processes still write to it: memscope-analyze record --ring %s takes over\n",
				r.Path, r.Size>>20, r.Path)
		case live.RingBad:
			fmt.Fprintf(w, "unreadable ring %s: %v\n", r.Path, r.Err)
		}
	}
	return total
}

// warnOrphans says once, on stderr, when orphaned rings take a lot of
// memory (they live in /dev/shm or the runtime directory: RAM).
func warnOrphans(dir string) {
	rings, err := live.Rings(dir)
	if err != nil {
		return
	}
	var total int64
	n := 0
	for _, r := range rings {
		if r.State == live.RingOrphaned {
			total += r.Size
			n++
		}
	}
	if total > orphanWarnBytes {
		fmt.Fprintf(os.Stderr, "memscope: warning: %d orphaned ring(s) in %s take %d MiB of memory; memscope-analyze ps lists them, memscope-analyze gc removes them\n", n, dir, total>>20)
	}
}

func newGcCommand() *cobra.Command {
	var of outputFlags
	var force bool
	c := &cobra.Command{
		Use:   "gc [--out DIR] [--force]",
		Short: "Finish the reports of orphaned rings, then remove them",
		Long: `gc finds the rings of the private directory whose analyzer and processes are
all gone (an analyzer that was killed leaves its ring behind), writes the
reports of what each holds into --out, as record --ring would, and removes it.
--force removes them without writing reports. Rings still in use are left
alone. It also removes the files of unwind rules the library leaves there
(.rules-BUILDID, shared by the processes of the same programs): the next runs
make them again.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			dir, err := shm.DefaultDir()
			if err != nil {
				return err
			}
			rings, err := live.Rings(dir)
			if err != nil {
				return err
			}
			removed := 0
			for _, r := range rings {
				if r.State != live.RingOrphaned {
					continue
				}
				if !force {
					if err := finishRing(c.Context(), &of, r.Path); err != nil {
						fmt.Fprintf(os.Stderr, "memscope gc: %s: %v; kept (--force removes it)\n", r.Path, err)
						continue
					}
				}
				os.Remove(r.Path)
				os.Remove(live.SocketPath(r.Path))
				journal.Remove(r.Path)
				fmt.Fprintf(os.Stderr, "memscope gc: removed %s (%d MiB)\n", r.Path, r.Size>>20)
				removed++
			}
			if removed == 0 {
				fmt.Fprintln(os.Stderr, "memscope gc: no orphaned ring")
			}
			removeRuleFiles(dir)
			return nil
		},
	}
	of.register(c)
	c.Flags().BoolVar(&force, "force", false, "remove orphaned rings without writing their reports")
	return c
}

// removeRuleFiles removes the files of unwind rules libmemscope.so keeps
// in dir (preload/rulecache.c: .rules-BUILDID, and .rules-BUILDID.PID
// while one is written), and says how many.
func removeRuleFiles(dir string) {
	paths, _ := filepath.Glob(filepath.Join(dir, ".rules-*"))
	n, size := 0, int64(0)
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() || os.Remove(p) != nil {
			continue
		}
		n++
		size += fi.Size()
	}
	if n > 0 {
		fmt.Fprintf(os.Stderr, "memscope gc: removed %d file(s) of unwind rules (%d KiB); the next runs make them again\n", n, (size+1023)>>10)
	}
}

// finishRing reports what a ring holds, as record --ring does.
func finishRing(ctx context.Context, of *outputFlags, path string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := of.sessionConfig()
	if err != nil {
		return err
	}
	cfg.Serve = false
	ring, err := shm.Open(path)
	if err != nil {
		return err
	}
	cfg.Ring = ring
	_, err = session.Run(ctx, cfg, nil)
	return err
}
