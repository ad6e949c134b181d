package engine

import (
	"bytes"
	"errors"
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"memscope/analyzer/reach"
	"memscope/shm"
)

// TestStateRoundTrip: an engine restored from another's state at any
// point of a stream, then given the rest of the stream, ends every
// process exactly as the engine that saw the whole stream did: totals,
// peak, sites, timeline, modules, threads, stacks, exit. The cut points
// fall between records, with events waiting in the reorder window, frees
// waiting for the watermark (the late streams), forks, an exec, modules,
// threads, a leak check's verdicts and an exit check pending.
func TestStateRoundTrip(t *testing.T) {
	type streamCase struct {
		name     string
		s        *modelStream
		window   time.Duration
		interval time.Duration
		batch    int
		pids     []uint32
	}
	var cases []streamCase
	for _, late := range []bool{false, true} {
		for seed := int64(1); seed <= 40; seed++ {
			window := 50 * time.Microsecond
			if late {
				window = time.Duration(2000 + seed%5*1000)
			}
			cases = append(cases, streamCase{
				name: "model", s: randomStream(t, seed, late), window: window,
				interval: time.Duration(500 + seed%3*700), batch: []int{0, 1, 2, 7, 64}[seed%5],
				pids: []uint32{100, 200},
			})
		}
	}
	cases = append(cases, streamCase{name: "lifecycle", s: lifecycleStream(t), window: 5 * time.Millisecond,
		interval: time.Millisecond, pids: []uint32{700, 701, 702, 703}})

	for ci, c := range cases {
		n := len(c.s.recs)
		rng := rand.New(rand.NewSource(int64(ci)))
		cuts := []int{0, 1, n / 3, n / 2, n - 1, n, rng.Intn(n + 1), rng.Intn(n + 1)}
		if c.name == "lifecycle" {
			cuts = cuts[:0]
			for cut := 0; cut <= n; cut++ {
				cuts = append(cuts, cut)
			}
		}
		for _, cut := range cuts {
			opts := Options{ReorderWindow: c.window, TimelineInterval: c.interval}
			whole, restored := New(opts), New(opts)
			whole.batchLimit, restored.batchLimit = c.batch, c.batch
			feed := func(e *Engine, from, to int) {
				for i := from; i < to; i++ {
					switch {
					case c.s.advance[i] != 0:
						e.Advance(c.s.advance[i])
					case c.s.settle[i] != 0:
						e.Settle(c.s.settle[i])
					default:
						require.NoError(t, e.Apply(c.s.recs[i]))
					}
				}
			}
			feed(whole, 0, cut)
			if cut == n/2 && c.name == "lifecycle" {
				// A leak check ran on 700 and another waits.
				blocks := whole.LiveBlocks(700)
				kinds := make([]reach.Kind, len(blocks.Extents))
				for i := range kinds {
					kinds[i] = reach.Kind(i % int(reach.NumKinds))
				}
				whole.SetReachability(700, blocks, kinds)
			}
			state := whole.AppendState(nil)
			require.NoError(t, restored.RestoreState(state), "%s case %d cut %d", c.name, ci, cut)
			require.Equal(t, whole.TakeExitChecks(), restored.TakeExitChecks())
			require.Equal(t, whole.Pending(), restored.Pending())
			feed(whole, cut, n)
			feed(restored, cut, n)
			// The forks left waiting too (a fork whose child came
			// first must not leave a cut when its parent's side comes).
			require.Equal(t, forkKeys(whole), forkKeys(restored), "%s case %d cut %d: forks waiting", c.name, ci, cut)
			for _, pid := range c.pids {
				want := whole.EndProcess(pid, ExitStatus{Known: true, Code: 3})
				got := restored.EndProcess(pid, ExitStatus{Known: true, Code: 3})
				require.Equal(t, want, got, "%s case %d cut %d of %d pid %d", c.name, ci, cut, n, pid)
			}
			require.Empty(t, restored.Pids())
		}
	}
}

// forkKeys lists the forks e holds a cut of, then those taken by a child
// before their parent's side came.
func forkKeys(e *Engine) [2][]forkID {
	return [2][]forkID{sortedForks(e.forkCuts), sortedForks(e.forkTaken)}
}

// lifecycleStream is a process with a module, a named thread, stacks
// and an exit check that forks a child, which execs and forks in turn.
func lifecycleStream(t *testing.T) *modelStream {
	const ms = uint64(time.Millisecond)
	s := newStream(t)
	seg := []shm.Segment{{Vaddr: 0x1000, Memsz: 0x2000, Offset: 0x1000, Flags: 5}}
	s.process(700, 700, 1*ms, shm.ProcessStart, 1, "/bin/parent").
		add(700, 700, shm.AppendModule(nil, 1*ms, shm.Module{Bias: 0x7000_0000, Event: shm.ModuleLoad, BuildID: []byte{0xab, 0xcd}, Segments: seg, Path: "/lib/a.so"})).
		add(700, 700, shm.AppendStack(nil, 1*ms, 0, shm.Stack{ID: 0x51, PCs: []uint64{0x7000_1010, 0x7000_1020}})).
		add(700, 701, shm.AppendThread(nil, 2*ms, shm.Thread{Tid: 701, Name: "worker", StackSP: 0x7ff0_0000})).
		malloc(700, 700, 3*ms, 0x1000, 100, 0x51).
		malloc(700, 701, 4*ms, 0x2000, 200, 0x52).
		malloc(700, 700, 5*ms, 0x3000, 1<<40, 0x51). // wide: does not pack
		free(700, 701, 6*ms, 0x1000).
		forked(700, 6*ms+ms/2, 1).                       // fork 1: the parent's side first
		malloc(700, 700, 6*ms+3*ms/4, 0x7000, 70, 0x51). // after fork 1: not 702's
		forkChild(702, 700, 7*ms, 1).
		malloc(702, 702, 8*ms, 0x4000, 40, 0x53).
		free(702, 702, 9*ms, 0x2000).
		process(702, 702, 10*ms, shm.ProcessExec, 700, "/bin/child").
		malloc(702, 702, 11*ms, 0x5000, 50, 0x54).
		add(700, 700, shm.AppendModule(nil, 12*ms, shm.Module{Bias: 0x7000_0000, Event: shm.ModuleUnload, Segments: seg, Path: "/lib/a.so"})).
		add(700, 701, shm.AppendThread(nil, 13*ms, shm.Thread{Tid: 701, Exiting: true, StackSP: 0x7ff0_0000})).
		realloc(700, 700, 14*ms, 15*ms, 0x3000, 0x6000, 60, 0x51).
		forkChild(701, 700, 16*ms, 2). // fork 2: the child's side first
		free(701, 701, 17*ms, 0x6000).
		forked(700, 17*ms+ms/2, 2).
		forked(700, 17*ms+3*ms/4, 3). // fork 3: its child comes late
		lost(701, 701, 18*ms, 2).
		add(700, 700, shm.AppendProcess(nil, 19*ms, shm.Process{Pid: 700, Event: shm.ProcessExit, Status: 3})).
		free(702, 702, 20*ms, 0x5000).
		malloc(702, 702, 21*ms+ms/2, 0x5100, 51, 0x54). // fork 2's two sides apart
		forkChild(703, 700, 26*ms, 3).                  // fork 3's child comes late
		malloc(703, 703, 27*ms, 0x8000, 80, 0x55)
	// The exit record asks for an exit check.
	exit := &s.recs[len(s.recs)-5]
	exit.Data = append([]byte(nil), exit.Data...)
	exit.Data[4] |= shm.FlagExitCheck // the header's flags: bits 32-63
	return &modelStream{recs: s.recs, advance: make([]uint64, len(s.recs)), settle: make([]uint64, len(s.recs))}
}

// TestRestoreStateRefusesBadStates: a truncated state is refused with an
// error, and no corruption of a state's bytes makes RestoreState panic.
func TestRestoreStateRefusesBadStates(t *testing.T) {
	e := New(Options{ReorderWindow: 5 * time.Millisecond})
	s := lifecycleStream(t)
	for _, r := range s.recs[:len(s.recs)-3] {
		require.NoError(t, e.Apply(r))
	}
	state := e.AppendState(nil)
	for cut := 0; cut < len(state); cut++ {
		require.Error(t, New(Options{}).RestoreState(state[:cut]), "cut at %d of %d", cut, len(state))
	}
	require.ErrorContains(t, New(Options{}).RestoreState(append(append([]byte(nil), state...), 0)), "1 bytes after the end")
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 20000; i++ {
		bad := append([]byte(nil), state...)
		for k := 0; k <= i%4; k++ {
			bad[rng.Intn(len(bad))] = byte(rng.Intn(256))
		}
		_ = New(Options{}).RestoreState(bad)
	}
	// A state goes only into an engine that has applied nothing.
	require.ErrorContains(t, e.RestoreState(state), "applied records already")
}

// TestWriteState: the state streamed by WriteState, a stateSpill at a
// time, is AppendState's, byte for byte, the second time too (its buffer
// is kept); a write error is returned.
func TestWriteState(t *testing.T) {
	for _, live := range []int{0, 3, 200_000} { // 200 K blocks: 5.6 MB, several spills
		e := New(Options{ReorderWindow: time.Millisecond})
		allocLive(t, e, live)
		want := e.AppendState(nil)
		for round := 0; round < 2; round++ { // the second reuses the spill buffer
			var out bytes.Buffer
			require.NoError(t, e.WriteState(&out))
			require.Equal(t, len(want), out.Len(), "%d live blocks, round %d", live, round)
			require.True(t, bytes.Equal(want, out.Bytes()), "%d live blocks, round %d", live, round)
		}
		if live > 0 {
			require.Greater(t, len(want), 28*live)
		}
	}
	e := New(Options{})
	allocLive(t, e, 100_000)
	require.ErrorIs(t, e.WriteState(failingWriter{}), errFull)
}

var errFull = errors.New("disk full")

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errFull }
