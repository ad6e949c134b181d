package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"memscope/analyzer/gate"
	"memscope/analyzer/report"
)

// CheckFailCode is what check exits with when a limit is broken; bad
// input exits 2, as every command does.
const CheckFailCode = 1

func newCheckCommand() *cobra.Command {
	var (
		maxLeaked, maxPerSite, maxPeak, maxAllocs string
		writeBaseline, baseline, maxGrowth        string
		format, output, sourceRoot                string
	)
	c := &cobra.Command{
		Use:   "check [flags] REPORT...|DIR",
		Short: "Judge finished reports against limits or a baseline (exit 1 when one is broken)",
		Long: `check reads leaks.json reports (files, or every memscope.*.leaks.json of a
directory) and exits 1, naming each broken limit and the sites that broke it:

  --max-leaked SIZE          unsuppressed leaked bytes of one process (default 0:
                             any leak fails, unless --baseline is given)
  --max-leak-per-site SIZE   leaked bytes of one site (one stack)
  --max-peak SIZE            peak heap of one process
  --max-allocations N        allocating calls of one process

Sizes read 4096, 64K, 24MB, 1.5MiB. --write-baseline FILE records what this
run leaked per site, its peak and totals; --baseline FILE then fails on a leak
site the baseline does not have, or on a site's leak or a program's peak that
grew more than --max-growth (default 0%). Sites are matched by function and
file, not address or line. --format sarif|github|csv|text chooses the output:
SARIF for code scanning (one result per leak site, at its first frame in your
own code), GitHub workflow annotations, or the per-site table.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error {
			reports, err := gate.Load(args)
			if err != nil {
				return err
			}
			var l gate.Limits
			for _, lim := range []struct {
				flag, val string
				dst       **uint64
				count     bool
			}{
				{"--max-leaked", maxLeaked, &l.MaxLeaked, false},
				{"--max-leak-per-site", maxPerSite, &l.MaxLeakPerSite, false},
				{"--max-peak", maxPeak, &l.MaxPeak, false},
				{"--max-allocations", maxAllocs, &l.MaxAllocations, true},
			} {
				if lim.val == "" {
					continue
				}
				n, err := gate.ParseSize(lim.val)
				if err != nil || (lim.count && strings.ContainsAny(lim.val, "KkMmGgTtBb.")) {
					if err == nil {
						err = fmt.Errorf("invalid count %q", lim.val)
					}
					return fmt.Errorf("%s: %w", lim.flag, err)
				}
				*lim.dst = &n
			}
			if maxLeaked == "" && baseline == "" {
				zero := uint64(0)
				l.MaxLeaked = &zero
			}
			if writeBaseline != "" {
				b := gate.NewBaseline(reports)
				dir, name := filepath.Split(writeBaseline)
				if dir == "" {
					dir = "."
				}
				if err := report.WriteFileAtomic(dir, name, b.Write); err != nil {
					return fmt.Errorf("--write-baseline: %w", err)
				}
				fmt.Fprintf(os.Stderr, "memscope check: baseline of %d report(s) written to %s\n", len(reports), writeBaseline)
				return nil
			}
			v := &gate.Verdict{Reports: reports, Violations: gate.Check(reports, l), SourceRoot: sourceRoot}
			if baseline != "" {
				f, err := os.Open(baseline)
				if err != nil {
					return fmt.Errorf("--baseline: %w", err)
				}
				b, err := gate.ReadBaseline(f, baseline)
				f.Close()
				if err != nil {
					return err
				}
				growth, err := gate.ParsePercent(maxGrowth)
				if err != nil {
					return fmt.Errorf("--max-growth: %w", err)
				}
				v.Violations = append(v.Violations, b.Compare(reports, growth)...)
			}
			if v.SourceRoot == "" {
				v.SourceRoot, _ = os.Getwd()
			}
			if err := writeOutput(output, func(w io.Writer) error { return v.Write(w, format) }); err != nil {
				return err
			}
			if len(v.Violations) > 0 {
				return &exitError{code: CheckFailCode}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&maxLeaked, "max-leaked", "", "most unsuppressed leaked bytes one process may have (default 0 without --baseline)")
	f.StringVar(&maxPerSite, "max-leak-per-site", "", "most bytes one site (stack) may leak")
	f.StringVar(&maxPeak, "max-peak", "", "largest peak heap one process may reach")
	f.StringVar(&maxAllocs, "max-allocations", "", "most allocating calls one process may make")
	f.StringVar(&writeBaseline, "write-baseline", "", "write a baseline of these reports to FILE and exit")
	f.StringVar(&baseline, "baseline", "", "fail on new leak sites, or growth over the baseline in FILE")
	f.StringVar(&maxGrowth, "max-growth", "0%", "growth over the baseline allowed, e.g. 10%")
	f.StringVar(&format, "format", "text", "output: text, github, sarif or csv")
	f.StringVarP(&output, "output", "o", "", "write the output to FILE instead of stdout")
	f.StringVar(&sourceRoot, "source-root", "", "make file paths in SARIF and GitHub output relative to DIR (default: the current directory)")
	return c
}

func newDiffCommand() *cobra.Command {
	var asJSON bool
	var output string
	c := &cobra.Command{
		Use:   "diff OLD NEW",
		Short: "Per-site table of what grew or shrank between two runs",
		Long: `diff compares two runs (leaks.json files, or directories of reports) site by
site: bytes and objects leaked at exit, bytes and calls allocated, bytes live
at the peak (from the pprof profiles beside each report). Sites are matched
by function and file. The pb.gz profiles also work with
go tool pprof -diff_base OLD.pb.gz NEW.pb.gz.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 2 {
				return fmt.Errorf("diff takes two runs: memscope-analyze diff OLD NEW (got %d argument(s))", len(args))
			}
			return nil
		},
		RunE: func(c *cobra.Command, args []string) error {
			old, err := gate.Load(args[:1])
			if err != nil {
				return err
			}
			cur, err := gate.Load(args[1:])
			if err != nil {
				return err
			}
			rows, err := gate.Diff(old, cur)
			if err != nil {
				return err
			}
			return writeOutput(output, func(w io.Writer) error {
				if asJSON {
					return gate.WriteDiffJSON(w, rows)
				}
				return gate.WriteDiffText(w, rows)
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "write JSON instead of a table")
	c.Flags().StringVarP(&output, "output", "o", "", "write to FILE instead of stdout")
	return c
}

// writeOutput writes to stdout, or atomically to path.
func writeOutput(path string, write func(io.Writer) error) error {
	if path == "" {
		return write(os.Stdout)
	}
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	return report.WriteFileAtomic(dir, name, write)
}
