package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/shm"
)

// TestAnalyzeLossy: events the ring has no room for are dropped, never
// lost silently. testdata/lossy.c makes 1 + 100000 allocations at one
// site, the 100000 while the test holds the analyzer stopped (SIGSTOP)
// over a 256 KiB ring: a lossy ring drops what does not fit at once; a
// lossless one makes the program wait, then drop once the consumer has
// been silent for the ring's consumer timeout (so that a stuck analyzer
// never hangs the program). Either way every allocation must be in the
// report or counted as dropped, and every report must say it is
// incomplete: leaks.json "complete": false, the warning line of the text
// report, and the summary on stderr.
func TestAnalyzeLossy(t *testing.T) {
	const made = 1 + 100000 // allocations of testdata/lossy.c (none freed)
	tests := []struct {
		name string
		// start launches the program and its consumer (whose stderr is
		// stderr). stdin and stdout are the program's; self is its
		// parent's pid.
		start func(t *testing.T, out string, stderr io.Writer) (consumer *exec.Cmd, stdin io.WriteCloser, stdout io.Reader, self int)
		// minBurst is how long the burst must take: a lossless ring
		// holds the program until the consumer timeout.
		minBurst time.Duration
	}{
		{"run --lossy", func(t *testing.T, out string, stderr io.Writer) (*exec.Cmd, io.WriteCloser, io.Reader, int) {
			cmd := exec.Command(analyzer(t), "run", "--lossy", "--ring-size", "256K", "--out", out, "--", program(t, "lossy"))
			cmd.Env = cleanEnv()
			cmd.Stderr = stderr
			stdin, stdout := pipes(t, cmd)
			require.NoError(t, cmd.Start())
			return cmd, stdin, stdout, cmd.Process.Pid
		}, 0},
		{"lossless ring, consumer timeout", func(t *testing.T, out string, stderr io.Writer) (*exec.Cmd, io.WriteCloser, io.Reader, int) {
			dir := t.TempDir()
			require.NoError(t, os.Chmod(dir, 0o700))
			ring, err := shm.Create(filepath.Join(dir, "ring"), shm.Options{Size: 256 << 10, ConsumerTimeout: 300 * time.Millisecond})
			require.NoError(t, err)
			t.Cleanup(func() { ring.Close() })
			prog := exec.Command(program(t, "lossy"))
			prog.Env = append(cleanEnv(), "LD_PRELOAD="+library(t), "MEMSCOPE_RING="+ring.Path())
			stdin, stdout := pipes(t, prog)
			require.NoError(t, prog.Start())
			t.Cleanup(func() { _ = prog.Wait() })
			cmd := exec.Command(analyzer(t), "record", "--ring", ring.Path(), "--out", out)
			cmd.Env = cleanEnv()
			cmd.Stderr = stderr
			require.NoError(t, cmd.Start())
			// Its heartbeat must be fresh when it is stopped, or the
			// program would not wait for it.
			deadline := time.Now().Add(10 * time.Second)
			for ring.Info().ConsumerPid != uint32(cmd.Process.Pid) {
				require.True(t, time.Now().Before(deadline), "record never polled the ring")
				time.Sleep(time.Millisecond)
			}
			return cmd, stdin, stdout, os.Getpid()
		}, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := t.TempDir()
			var stderr syncBuffer
			consumer, stdin, stdout, self := tt.start(t, out, &stderr)
			timer := time.AfterFunc(60*time.Second, func() { _ = consumer.Process.Kill() })
			defer timer.Stop()
			stopped := false
			defer func() {
				if stopped {
					_ = consumer.Process.Signal(syscall.SIGCONT)
				}
			}()
			lines := bufio.NewReader(stdout)
			expectLine := func(want string) {
				t.Helper()
				got, err := lines.ReadString('\n')
				require.NoError(t, err, "waiting for %q; stderr:\n%s", want, stderr.String())
				require.Equal(t, want, got)
			}

			expectLine("ready\n")
			require.NoError(t, consumer.Process.Signal(syscall.SIGSTOP))
			stopped = true
			burst := time.Now()
			_, err := io.WriteString(stdin, "burst\n")
			require.NoError(t, err)
			expectLine("done\n")
			assert.GreaterOrEqual(t, time.Since(burst), tt.minBurst, "the burst did not wait for the consumer")
			require.NoError(t, consumer.Process.Signal(syscall.SIGCONT))
			stopped = false
			// Let the consumer drain the ring, so that the program's exit
			// record (which carries its count of dropped events) finds room.
			time.Sleep(time.Second)
			_, err = io.WriteString(stdin, "exit\n")
			require.NoError(t, err)
			require.NoError(t, stdin.Close())
			_, err = io.Copy(io.Discard, stdout)
			require.NoError(t, err)
			require.NoError(t, consumer.Wait(), "stderr:\n%s", stderr.String())

			a := &analyzed{dir: out, self: uint32(self), reports: readReports(t, out), stderr: stderr.String()}
			m := a.main(t)
			dropped := m.Totals.DroppedEvents
			require.NotZero(t, dropped, "the stopped consumer let a 256 KiB ring take 100000 allocations")
			require.Less(t, dropped, uint64(made), "the ring took none of the burst")
			t.Logf("%d of %d allocations dropped", dropped, made)
			assert.False(t, m.Complete, "complete")
			assert.Equal(t, uint64(made), m.Totals.Allocations+dropped, "allocations recorded + dropped")
			recorded := made - dropped
			allocBytes, allocObjects := m.allocated()
			assert.Equal(t, recorded, allocObjects)
			assert.Equal(t, 24*recorded, allocBytes)
			assert.Equal(t, []string{groupString(24*recorded, recorded, []srcLoc{
				{Function: "one", File: "lossy.c", Line: sourceLine(t, "lossy.c", "burst")},
				{Function: "main", File: "lossy.c", Line: sourceLine(t, "lossy.c", "call")},
			})}, programGroups(m, []string{program(t, "lossy")}))

			text, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("memscope.lossy.%d.leaks.txt", m.Pid)))
			require.NoError(t, err)
			assert.Contains(t, string(text), fmt.Sprintf("==%d==WARNING: memscope: %d event(s) were dropped; this report is incomplete.\n", m.Pid, dropped))
			assert.Contains(t, stderr.String(), fmt.Sprintf("WARNING: %d events dropped: the results are incomplete", dropped))
		})
	}
}

// pipes connects cmd's stdin and stdout to the test.
func pipes(t *testing.T, cmd *exec.Cmd) (io.WriteCloser, io.Reader) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	return stdin, stdout
}

// syncBuffer is a bytes.Buffer that a command can write while the test
// reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
