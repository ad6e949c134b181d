package live

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"memscope/analyzer/report"
	"memscope/analyzer/symbolize"
)

// BoardSource serves a Board in this process as the socket serves it to
// others: Views and snapshots, symbolized with a cache of its own (the
// session's is its goroutine's alone).
type BoardSource struct {
	board *Board
	mu    sync.Mutex // syms is not safe for concurrent use; guards the view too
	syms  *report.Symbols
	// view is the View of state, built once for every reader of that
	// state: four viewers at 10 Hz asked for 40 a second of states that
	// change 5 times a second.
	state *State
	view  *View
}

// NewBoardSource returns a source of board. symbolCache is the directory
// of the session's symbol cache ("": none), read, never written: without
// it a viewer's first look read glibc's debug info again (0.1-0.2 s of
// CPU beside the program).
func NewBoardSource(board *Board, symbolCache string) *BoardSource {
	return &BoardSource{board: board, syms: report.NewSymbols(symbolize.New(symbolize.Options{CacheDir: symbolCache}))}
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
	if st != b.state {
		v := BuildView(st, b.syms, os.Getpid())
		b.state, b.view = st, &v
	}
	return b.view, nil
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
