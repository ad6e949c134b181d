package live

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"memscope/analyzer/report"
)

// BoardSource serves a Board in this process as the socket serves it to
// others: Views and snapshots, symbolized with a cache of its own (the
// session's is its goroutine's alone).
type BoardSource struct {
	board *Board
	mu    sync.Mutex // syms is not safe for concurrent use
	syms  *report.Symbols
}

// NewBoardSource returns a source of board.
func NewBoardSource(board *Board) *BoardSource {
	return &BoardSource{board: board, syms: report.NewSymbols(nil)}
}

var errNotYet = errors.New("the session has not published its state yet")

// State returns the current View.
func (b *BoardSource) State(context.Context) (*View, error) {
	st := b.board.Load()
	if st == nil {
		return nil, errNotYet
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v := BuildView(st, b.syms, os.Getpid())
	return &v, nil
}

// Snapshot returns a gzipped pprof heap profile of pid as it is now.
func (b *BoardSource) Snapshot(_ context.Context, pid uint32) ([]byte, error) {
	st := b.board.Load()
	if st == nil {
		return nil, errNotYet
	}
	p := st.Proc(pid)
	if p == nil {
		return nil, fmt.Errorf("pid %d is not traced in this session", pid)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var buf bytes.Buffer
	opts := report.ProfileOptions{TimeNanos: st.Time.UnixNano()}
	if err := report.WriteProfile(&buf, p.Process, b.syms, report.InuseAtExit, opts); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
