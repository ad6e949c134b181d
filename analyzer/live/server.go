package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// The session's socket (DESIGN.md §8): beside its ring in the private
// directory, mode 0600, and every connection's peer must be our user.
// It speaks HTTP:
//
//	GET /v1/state            the View, JSON
//	GET /v1/snapshot?pid=N   a pprof heap profile of pid now (inuse = live now)
//
// Handlers read the Board only: a viewer that stalls, or dies, holds
// nothing the recording needs.

// SocketPath is where the session of ringPath serves.
func SocketPath(ringPath string) string { return ringPath + ".sock" }

// Server serves a Board on a unix socket.
type Server struct {
	src  *BoardSource
	path string
	ln   net.Listener
	srv  *http.Server
}

// Listen creates the socket at path (refusing to replace anything there)
// and serves board on it until Close; symbolCache is NewBoardSource's.
func Listen(path string, board *Board, symbolCache string) (*Server, error) {
	// Created 0600 from the start: no window where another user could connect.
	old := unix.Umask(0o177)
	ln, err := net.Listen("unix", path)
	if errors.Is(err, unix.EADDRINUSE) && staleSocket(path) {
		// Left by an analyzer that was killed (a session resuming its
		// ring takes its place).
		os.Remove(path)
		ln, err = net.Listen("unix", path)
	}
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("session socket %s: %w", path, err)
	}
	s := &Server{src: NewBoardSource(board, symbolCache), path: path}
	s.ln = &peerCheckListener{ln.(*net.UnixListener)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/state", s.state)
	mux.HandleFunc("GET /v1/snapshot", s.snapshot)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 30 * time.Second,
		ErrorLog: nil}
	go s.srv.Serve(s.ln)
	return s, nil
}

// staleSocket reports whether nothing listens on the socket at path
// (a connection is refused).
func staleSocket(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, unix.ECONNREFUSED)
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	os.Remove(s.path)
	return err
}

func (s *Server) state(w http.ResponseWriter, r *http.Request) {
	v, err := s.src.State(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func (s *Server) snapshot(w http.ResponseWriter, r *http.Request) {
	pid, err := strconv.ParseUint(r.URL.Query().Get("pid"), 10, 32)
	if err != nil {
		http.Error(w, "want ?pid=N", http.StatusBadRequest)
		return
	}
	data, err := s.src.Snapshot(r.Context(), uint32(pid))
	switch {
	case errors.Is(err, errNotYet):
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(data)
}

// peerCheckListener accepts only connections from our own user (and
// root): the socket's mode already says so, this holds even if it was
// changed.
type peerCheckListener struct{ *net.UnixListener }

func (l *peerCheckListener) Accept() (net.Conn, error) {
	for {
		c, err := l.UnixListener.AcceptUnix()
		if err != nil {
			return nil, err
		}
		if peerAllowed(c) {
			return c, nil
		}
		c.Close()
	}
}

func peerAllowed(c *net.UnixConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false
	}
	return int(cred.Uid) == os.Geteuid() || cred.Uid == 0
}

// ErrNoSession says that no session serves at a socket.
var ErrNoSession = errors.New("no session serves there")
