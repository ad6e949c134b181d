package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"memscope/analyzer/live"
	"memscope/analyzer/report"
	"memscope/analyzer/session"
	"memscope/shm"
)

// startMetrics serves Prometheus metrics of the session at --metrics ADDR
// (listening before PROG starts, so a busy port is an error, not a
// surprise later). It gives the session a Board to publish on.
func (o *outputFlags) startMetrics(cfg *session.Config) (stop func(), err error) {
	if o.metricsAddr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", o.metricsAddr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w", o.metricsAddr, err)
	}
	if cfg.Board == nil {
		cfg.Board = &live.Board{}
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(live.NewCollector(cfg.Board))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

func newPsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ps",
		Short: "List the running memscope sessions",
		Long: `ps lists the sessions serving in the private ring directory: their socket,
analyzer, processes, program, heap now and uptime. A socket whose analyzer is
gone is listed as gone; rings no analyzer consumes are listed after, with
what to do about them.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			dir, err := shm.DefaultDir()
			if err != nil {
				return err
			}
			socks, err := live.Sockets(dir)
			if err != nil {
				return err
			}
			if len(socks) == 0 {
				fmt.Println("no memscope session is running")
				listOrphans(os.Stdout, dir)
				return nil
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SOCKET\tANALYZER\tPIDS\tPROGRAM\tHEAP\tUPTIME")
			for _, s := range socks {
				v, err := stateOf(c.Context(), s)
				if err != nil {
					fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t(%v)\n", s, errors.Unwrap(err))
					continue
				}
				var pids []string
				var heap uint64
				prog := "-"
				for _, p := range v.Processes {
					if !p.Running {
						continue
					}
					if prog == "-" {
						prog = filepath.Base(p.Program)
					}
					pids = append(pids, strconv.FormatUint(uint64(p.Pid), 10))
					heap += p.HeapBytes
				}
				if len(v.Command) > 0 {
					prog = filepath.Base(v.Command[0])
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d B\t%v\n", s, v.AnalyzerPid, joinOrDash(pids), prog, heap,
					time.Duration(v.UptimeNS).Round(time.Second))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			listOrphans(os.Stdout, dir)
			return nil
		},
	}
}

func joinOrDash(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	out := s[0]
	for _, x := range s[1:] {
		out += "," + x
	}
	return out
}

func stateOf(ctx context.Context, socket string) (*live.View, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	cl, err := live.Dial(socket)
	if err != nil {
		return nil, err
	}
	return cl.State(ctx)
}

// findSession picks the session of a PID|SOCKET argument: a path is a
// socket; a number, the session tracing that pid; nothing, the only
// session there is. It returns the socket and the pid to look at (0: the
// session's first running process).
func findSession(ctx context.Context, arg string) (string, uint32, error) {
	if arg != "" {
		if _, err := strconv.ParseUint(arg, 10, 32); err != nil {
			return arg, 0, nil // a socket path
		}
	}
	dir, err := shm.DefaultDir()
	if err != nil {
		return "", 0, err
	}
	socks, err := live.Sockets(dir)
	if err != nil {
		return "", 0, err
	}
	if arg == "" {
		var live []string
		for _, s := range socks {
			if _, err := stateOf(ctx, s); err == nil {
				live = append(live, s)
			}
		}
		switch len(live) {
		case 0:
			return "", 0, errors.New("no memscope session is running (start one with memscope-analyze run or live)")
		case 1:
			return live[0], 0, nil
		}
		return "", 0, fmt.Errorf("%d sessions are running: name a PID or a socket (memscope-analyze ps lists them)", len(live))
	}
	pid, _ := strconv.ParseUint(arg, 10, 32)
	for _, s := range socks {
		v, err := stateOf(ctx, s)
		if err != nil {
			continue
		}
		for _, p := range v.Processes {
			if p.Pid == uint32(pid) && p.Running {
				return s, uint32(pid), nil
			}
		}
	}
	return "", 0, fmt.Errorf("no running memscope session traces pid %d (memscope-analyze ps lists them)", pid)
}

// dialSession connects to the session of a PID|SOCKET argument
// (findSession).
func dialSession(ctx context.Context, arg string) (*live.Client, uint32, error) {
	socket, pid, err := findSession(ctx, arg)
	if err != nil {
		return nil, 0, err
	}
	cl, err := live.Dial(socket)
	return cl, pid, err
}

func newSnapshotCommand() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "snapshot [PID|SOCKET] [-o FILE]",
		Short: "Write a pprof heap profile of a running process (inuse = live now)",
		Long: `snapshot asks a running session for a heap profile of one of its processes as
it is now: the same sample types and symbols as the exit profile, inuse_space
being what is live at this moment. With no argument and one session, its first
process. The profile goes to -o FILE, or memscope.PROG.PID.snapshot-TIME.pb.gz.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			ctx := c.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			arg := ""
			if len(args) == 1 {
				arg = args[0]
			}
			cl, pid, err := dialSession(ctx, arg)
			if err != nil {
				return err
			}
			socket := cl.Socket
			v, err := cl.State(ctx)
			if err != nil {
				return err
			}
			var prog string
			for _, p := range v.Processes {
				if p.Running && (pid == 0 || p.Pid == pid) {
					pid, prog = p.Pid, p.Program
					break
				}
			}
			if prog == "" {
				return fmt.Errorf("session %s has no running process to snapshot", socket)
			}
			data, err := cl.Snapshot(ctx, pid)
			if err != nil {
				return err
			}
			if output == "" {
				output = fmt.Sprintf("memscope.%s.%d.snapshot-%s.pb.gz", filepath.Base(prog), pid, time.Now().Format("20060102-150405"))
			}
			dir, name := filepath.Split(output)
			if dir == "" {
				dir = "."
			}
			if err := report.WriteFileAtomic(dir, name, func(w io.Writer) error { _, err := w.Write(data); return err }); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "memscope: heap profile of pid %d (%s) written to %s\n", pid, filepath.Base(prog), output)
			return nil
		},
	}
	c.Flags().StringVarP(&output, "output", "o", "", "file to write the profile to")
	return c
}
