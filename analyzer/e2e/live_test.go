package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/analyzer/live"
)

// liveRun is a `memscope-analyze run` of testdata/phases.c that the test
// drives step by step through its stdin.
type liveRun struct {
	t       *testing.T
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  *bufio.Reader
	out     string // --out
	xdg     string // XDG_RUNTIME_DIR: the private ring directory is xdg/memscope
	metrics string // host:port of --metrics, if asked
	stderr  strings.Builder
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func startLive(t *testing.T, flags ...string) *liveRun {
	return startDriven(t, "phases", t.TempDir(), t.TempDir(), nil, flags...)
}

// startDriven runs a testdata program that steps one line of stdin at a
// time (phases, resume) under `run --out out`, with its ring directory
// in xdg and env added to the analyzer's environment.
func startDriven(t *testing.T, prog, out, xdg string, env []string, flags ...string) *liveRun {
	r := &liveRun{t: t, out: out, xdg: xdg}
	args := append([]string{"run", "--out", r.out}, flags...)
	for i, f := range flags {
		if f == "--metrics" {
			r.metrics = flags[i+1]
		}
	}
	r.cmd = exec.Command(analyzer(t), append(append(args, "--"), program(t, prog))...)
	r.cmd.Env = append(append(cleanEnv(), "XDG_RUNTIME_DIR="+r.xdg), env...)
	var err error
	r.stdin, err = r.cmd.StdinPipe()
	require.NoError(t, err)
	so, err := r.cmd.StdoutPipe()
	require.NoError(t, err)
	r.stdout = bufio.NewReader(so)
	r.cmd.Stderr = &r.stderr
	require.NoError(t, r.cmd.Start())
	t.Cleanup(func() {
		r.stdin.Close()
		r.cmd.Process.Kill()
		r.cmd.Wait()
	})
	return r
}

// step runs the next step of the program (phases.c, resume.c) and waits
// until it says it is done.
func (r *liveRun) step(n int) {
	_, err := io.WriteString(r.stdin, "\n")
	require.NoError(r.t, err)
	line, err := r.stdout.ReadString('\n')
	require.NoError(r.t, err)
	require.Equal(r.t, fmt.Sprintf("step %d\n", n), line)
}

func (r *liveRun) socket() string {
	var socks []string
	deadline := time.Now().Add(10 * time.Second)
	for len(socks) == 0 && time.Now().Before(deadline) {
		socks, _ = live.Sockets(filepath.Join(r.xdg, "memscope"))
		time.Sleep(10 * time.Millisecond)
	}
	require.Len(r.t, socks, 1, "one session socket")
	return socks[0]
}

// await polls the session's state until the program's process has
// heapBytes live (the analyzer publishes what it applied, a reorder
// window and a publication after the program's step).
func (r *liveRun) await(heapBytes uint64) *live.ProcView {
	cl, err := live.Dial(r.socket())
	require.NoError(r.t, err)
	deadline := time.Now().Add(20 * time.Second)
	var last *live.View
	for time.Now().Before(deadline) {
		v, err := cl.State(context.Background())
		if err == nil {
			last = v
			for i := range v.Processes {
				if p := &v.Processes[i]; p.Running && filepath.Base(p.Program) == "phases" && p.HeapBytes == heapBytes {
					return p
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("the session never showed %d heap bytes; last state: %+v", heapBytes, last)
	return nil
}

func (r *liveRun) cli(args ...string) (string, string, int) {
	return runCLIWith(r.t, []string{"XDG_RUNTIME_DIR=" + r.xdg}, r.out, args...)
}

// TestLiveSession drives testdata/phases.c and checks, at each step, what
// the session serves: the state on its socket, ps, snapshot, the
// periodic snapshots and the Prometheus metrics.
func TestLiveSession(t *testing.T) {
	r := startLive(t, "--snapshot-every", "150ms", "--metrics", freePort(t))

	r.step(1)
	p := r.await(10000)
	assert.Equal(t, uint64(10), p.HeapObjects)
	require.NotEmpty(t, p.Sites)
	assert.Equal(t, "grow_a", p.Sites[0].Function)
	assert.Equal(t, uint64(10000), p.Sites[0].LiveBytes)
	assert.Equal(t, uint64(10), p.Sites[0].LiveObjects)

	out, errText, code := r.cli("ps")
	require.Equal(t, 0, code, errText)
	assert.Regexp(t, regexp.MustCompile(fmt.Sprintf(`(?m)^%s\s+\d+\s+%d\s+phases\s+10000 B\s`, regexp.QuoteMeta(r.socket()), p.Pid)), out)

	snap := filepath.Join(t.TempDir(), "snap.pb.gz")
	_, errText, code = r.cli("snapshot", fmt.Sprint(p.Pid), "-o", snap)
	require.Equal(t, 0, code, errText)
	prof := parseProfile(t, snap)
	inuse := map[string]int64{}
	for _, s := range prof.Sample {
		if len(s.Location) > 0 && len(s.Location[0].Line) > 0 {
			inuse[s.Location[0].Line[0].Function.Name] += s.Value[3]
		}
	}
	assert.Equal(t, int64(10000), inuse["grow_a"])

	r.step(2)
	p = r.await(30000)
	assert.Equal(t, uint64(15), p.HeapObjects)
	assert.Equal(t, "grow_b", p.Sites[0].Function)
	assert.Equal(t, uint64(20000), p.Sites[0].LiveBytes)

	body := scrape(t, r.metrics)
	assert.Contains(t, body, fmt.Sprintf(`memscope_heap_bytes{pid="%d",program="phases"} 30000`, p.Pid))
	assert.Contains(t, body, fmt.Sprintf(`memscope_heap_objects{pid="%d",program="phases"} 15`, p.Pid))
	assert.Contains(t, body, fmt.Sprintf(`memscope_allocations_total{pid="%d",program="phases"} 15`, p.Pid))
	assert.Contains(t, body, fmt.Sprintf(`memscope_unrecorded_calls_total{pid="%d",program="phases"} 0`, p.Pid))
	assert.Contains(t, body, "memscope_ring_capacity_bytes 6.7108864e+07")

	r.step(3)
	p = r.await(20000)
	assert.Equal(t, uint64(5), p.HeapObjects)
	assert.Equal(t, uint64(10), p.Frees)

	require.NoError(t, r.stdin.Close())
	require.NoError(t, r.cmd.Wait(), "stderr:\n%s", r.stderr.String())

	// Periodic snapshots: numbered from 0001, valid profiles.
	snaps, err := filepath.Glob(filepath.Join(r.out, fmt.Sprintf("memscope.phases.%d.0*.pb.gz", p.Pid)))
	require.NoError(t, err)
	require.NotEmpty(t, snaps, "no periodic snapshot")
	assert.Equal(t, filepath.Join(r.out, fmt.Sprintf("memscope.phases.%d.0001.pb.gz", p.Pid)), snaps[0])
	for _, s := range snaps {
		parseProfile(t, s)
	}
	// The session's socket is gone with it.
	left, _ := live.Sockets(filepath.Join(r.xdg, "memscope"))
	assert.Empty(t, left)
}

func scrape(t *testing.T, addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// TestSessionSocketSecurity: what the socket refuses.
func TestSessionSocketSecurity(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real.sock")
	link := filepath.Join(dir, "link.sock")
	require.NoError(t, os.Symlink(target, link))
	_, err := live.Dial(link)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is a symlink; refusing it")

	// Another user's socket.
	theirs := filepath.Join(dir, "theirs.sock")
	ln, err := net.Listen("unix", theirs)
	require.NoError(t, err)
	defer ln.Close()
	if os.Geteuid() == 0 {
		require.NoError(t, os.Chown(theirs, 65534, 65534))
		_, err = live.Dial(theirs)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "owned by uid 65534, not by us")
	}

	plain := filepath.Join(dir, "plain.sock")
	require.NoError(t, os.WriteFile(plain, nil, 0o600))
	_, err = live.Dial(plain)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a socket")

	// A garbage client changes nothing for the session.
	r := startLive(t)
	r.step(1)
	r.await(10000)
	c, err := net.Dial("unix", r.socket())
	require.NoError(t, err)
	c.Write([]byte("\x00\x01garbage\r\n\r\nGET nonsense\r\n\r\n"))
	io.Copy(io.Discard, c)
	c.Close()
	r.step(2)
	r.await(30000)
}

// TestPrometheusScrape: a real Prometheus (Debian's package, which make
// deps installs) scrapes --metrics every second; its query API must give
// the program's heap at a known step.
func TestPrometheusScrape(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (make deps installs it)")
	}
	metrics := freePort(t)
	r := startLive(t, "--metrics", metrics)
	r.step(1)
	r.step(2)
	p := r.await(30000)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: memscope
    static_configs:
      - targets: ["%s"]
`, metrics)), 0o644))
	web := freePort(t)
	cmd := exec.Command(prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+web, "--log.level=warn")
	var promErr strings.Builder
	cmd.Stderr = &promErr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	query := fmt.Sprintf(`memscope_heap_bytes{pid="%d",program="phases"}`, p.Pid)
	want := `"value":[` // then the timestamp, then "30000"
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + web + "/api/v1/query?query=" + urlQueryEscape(query))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			if strings.Contains(last, want) && strings.Contains(last, `,"30000"]`) {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.Contains(t, last, `,"30000"]`, "Prometheus never had the heap of step 2; prometheus stderr:\n%s", promErr.String())
	assert.Contains(t, last, `"job":"memscope"`)
}

func urlQueryEscape(s string) string {
	return strings.NewReplacer("{", "%7B", "}", "%7D", `"`, "%22", "=", "%3D", ",", "%2C").Replace(s)
}
