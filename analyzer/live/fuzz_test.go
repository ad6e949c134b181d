package live

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"memscope/analyzer/engine"
	"memscope/shm"
)

// FuzzSessionSocket sends arbitrary bytes as a request to a real session
// socket serving a real process's state: whatever a client sends, the
// server answers with HTTP or closes the connection, never dies, and
// still serves the state and a heap profile to the next client. A close
// with the request unread (net/http answers 400 to a bad request line
// and closes: 16 KB of garbage, testdata/fuzz) reaches the client as a
// reset, which may come before the answer.
func FuzzSessionSocket(f *testing.F) {
	for _, seed := range []string{
		"GET /v1/state HTTP/1.1\r\nHost: s\r\n\r\n",
		"GET /v1/snapshot?pid=42 HTTP/1.1\r\nHost: s\r\n\r\n",
		"GET /v1/snapshot?pid=-1 HTTP/1.1\r\nHost: s\r\n\r\n",
		"GET /v1/snapshot?pid=99999999999 HTTP/1.1\r\nHost: s\r\n\r\n",
		"POST /v1/state HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\n\r\nhello",
		"GET /v1/state HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"GET /../../etc/passwd HTTP/1.0\r\n\r\n",
		"\x00\x01\x02",
	} {
		f.Add([]byte(seed))
	}
	dir, err := os.MkdirTemp("", "msfz") // a socket path has at most 107 bytes
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(dir) })
	board := &Board{}
	board.Publish(&State{Time: time.Now(), Procs: []Proc{{Process: oneProcess(f), Running: true}}})
	srv, err := Listen(filepath.Join(dir, "s.sock"), board, "")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { srv.Close() })
	cl, err := Dial(srv.Path())
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, request []byte) {
		c, err := net.Dial("unix", srv.Path())
		if err != nil {
			t.Fatalf("the server stopped accepting: %v", err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(request)
		c.(*net.UnixConn).CloseWrite()
		answer, err := io.ReadAll(io.LimitReader(c, 1<<20))
		if err != nil && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("reading the answer: %v", err)
		}
		if len(answer) > 0 && !bytes.HasPrefix(answer, []byte("HTTP/1.")) {
			t.Fatalf("the answer is not HTTP: %q", answer[:min(len(answer), 64)])
		}
		v, err := cl.State(context.Background())
		if err != nil {
			t.Fatalf("the state after that request: %v", err)
		}
		if len(v.Processes) != 1 || v.Processes[0].Pid != 42 || v.Processes[0].HeapBytes != 100 {
			t.Fatalf("the state after that request: %+v", v.Processes)
		}
		if _, err := cl.Snapshot(context.Background(), 42); err != nil {
			t.Fatalf("a snapshot after that request: %v", err)
		}
	})
}

// oneProcess is the state of pid 42 after a real engine applied one
// allocation of 100 bytes.
func oneProcess(f *testing.F) *engine.Process {
	var recs []byte
	recs = shm.AppendProcess(recs, 1, shm.Process{Pid: 42, Event: shm.ProcessStart, Exe: "/bin/fuzzed"})
	recs = shm.AppendStack(recs, 2, 0, shm.Stack{ID: 1, PCs: []uint64{0x1000, 0x2000}})
	recs = shm.AppendAlloc(recs, 3, shm.Alloc{Ptr: 0x10, Size: 100, StackID: 1})
	e := engine.New(engine.Options{ReorderWindow: -1})
	if _, _, err := e.ApplyChunk(42, 42, recs); err != nil {
		f.Fatal(err)
	}
	e.Settle(10)
	p := e.Snapshot(42)
	if p == nil || p.Totals.LiveBytes != 100 {
		f.Fatalf("the engine holds %+v, not pid 42 with 100 live bytes", p)
	}
	return p
}
