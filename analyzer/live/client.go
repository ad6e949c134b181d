package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Client talks to a session's socket.
type Client struct {
	Socket string
	http   *http.Client
}

// Dial returns a client of the session at socket, after checking the
// socket is ours (DESIGN.md §8: a socket, not a symlink, owned by us).
func Dial(socket string) (*Client, error) {
	var st unix.Stat_t
	if err := unix.Lstat(socket, &st); err != nil {
		return nil, fmt.Errorf("session socket %s: %w", socket, err)
	}
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return nil, fmt.Errorf("session socket %s: is a symlink; refusing it", socket)
	case st.Mode&unix.S_IFMT != unix.S_IFSOCK:
		return nil, fmt.Errorf("session socket %s: not a socket", socket)
	case int(st.Uid) != os.Geteuid():
		return nil, fmt.Errorf("session socket %s: owned by uid %d, not by us (uid %d); refusing it", socket, st.Uid, os.Geteuid())
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{Socket: socket, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}, nil
}

func (c *Client) get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://session"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("session socket %s: %w (its analyzer is gone)", c.Socket, ErrNoSession)
		}
		return nil, fmt.Errorf("session socket %s: %w", c.Socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("session socket %s: %w", c.Socket, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("session socket %s: %s", c.Socket, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// State returns the session's current View.
func (c *Client) State(ctx context.Context) (*View, error) {
	b, err := c.get(ctx, "/v1/state")
	if err != nil {
		return nil, err
	}
	var v View
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("session socket %s: bad state: %w", c.Socket, err)
	}
	return &v, nil
}

// Snapshot returns a gzipped pprof heap profile of pid as it is now.
func (c *Client) Snapshot(ctx context.Context, pid uint32) ([]byte, error) {
	return c.get(ctx, fmt.Sprintf("/v1/snapshot?pid=%d", pid))
}

// Sockets lists the session sockets in dir, newest first.
func Sockets(dir string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.sock"))
	if err != nil {
		return nil, err
	}
	type entry struct {
		path string
		mod  time.Time
	}
	var es []entry
	for _, p := range paths {
		if st, err := os.Lstat(p); err == nil {
			es = append(es, entry{p, st.ModTime()})
		}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].mod.After(es[j].mod) })
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.path
	}
	return out, nil
}
