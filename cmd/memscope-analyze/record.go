package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"memscope/analyzer/session"
	"memscope/shm"
)

func newRecordCommand() *cobra.Command {
	var of outputFlags
	var ringPath string
	c := &cobra.Command{
		Use:   "record --ring PATH",
		Short: "Consume a ring written by LD_PRELOAD=libmemscope.so and report on its processes",
		Long: `record is what libmemscope.so starts when a program is run with a bare
LD_PRELOAD (no MEMSCOPE_RING): it consumes the ring the library created, writes
each process's reports when it ends, and exits when every process that wrote to
the ring is gone. On the ring of an analyzer that died (a run or record killed),
record restores the last checkpoint of the journal that analyzer kept beside
the ring (RING.journal), replays the records and leak-check verdicts after it,
and reads the ring on from where it stopped: the reports are the ones it would
have written (MEMSCOPE_JOURNAL bounds the journal, 512M by default; off: none;
MEMSCOPE_CHECKPOINT_EVERY sets how many bytes of records pass between
checkpoints).`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			ctx := c.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			if ringPath == "" {
				return fmt.Errorf("--ring is required")
			}
			cfg, err := of.sessionConfig()
			if err != nil {
				return err
			}
			stopMetrics, err := of.startMetrics(&cfg)
			if err != nil {
				return err
			}
			defer stopMetrics()
			ring, err := shm.Open(ringPath)
			if err != nil {
				return err
			}
			cfg.Ring = ring
			res, err := session.Run(ctx, cfg, nil)
			if err != nil {
				return err
			}
			if of.failOnLeak && res.UnsuppressedLeaks {
				fmt.Fprintln(cfg.Stderr, res.FailOnLeakLine(cfg.OutDir))
				return &exitError{code: LeakExitCode}
			}
			return nil
		},
	}
	of.register(c)
	c.Flags().StringVar(&ringPath, "ring", "", "ring file to consume (required)")
	return c
}
