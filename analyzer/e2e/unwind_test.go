package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"memscope/shm"
)

// TestUnwindTraps runs testdata/unwind.c, one case per way a stack cache
// or compiled unwind rules go wrong (longjmp, signal handlers on the
// thread's and an alternate stack, coroutine stacks freed and mapped again
// smaller, reused thread stacks, a library replaced at the same address,
// code without CFI, recursion past the depth kept, a vfork child), with
// MEMSCOPE_UNWIND_CHECK=1: the library compares every stack it records
// with libunwind's and aborts on the first difference. Built at -O0
// (rbp-based frames) and -O2 (rsp-based), with the default depth and one
// deeper than the cache holds.
func TestUnwindTraps(t *testing.T) {
	// Allocations of each size the program makes, counted from its source.
	wantBySize := map[uint64]int{
		101: 200,                     // site_a
		103: 200,                     // site_b
		137: 100,                     // dive_and_jump, before each longjmp
		107: 200 + 100 + 400,         // churn_at(i % 9), after each longjmp, 100 threads x 4
		109: 100,                     // the signal handler: 50 raises of each signal
		113: 100 + 50 + 42 + 10 + 20, // handler's churn, signals' loop, main between switches, nocfi_alloc, deep
		127: 40,                      // the coroutine, twice 20
		131: 20,                      // unwindlib_work, 10 per library
		139: 1,                       // the vfork child
	}
	for _, opt := range []string{"-O0", "-O2"} {
		dir := t.TempDir()
		prog := filepath.Join(dir, "unwind")
		libs := []string{filepath.Join(dir, "libunwind_a.so"), filepath.Join(dir, "libunwind_b.so")}
		builds := [][]string{
			{"-g", opt, "-Wall", "-Werror", "-pthread", "-o", prog, filepath.Join(root(t), "testdata", "unwind.c"), "-ldl"},
			{"-g", opt, "-shared", "-fPIC", "-o", libs[0], filepath.Join(root(t), "testdata", "unwindlib.c")},
			{"-g", opt, "-shared", "-fPIC", "-DEXTRA_FRAMES=2", "-o", libs[1], filepath.Join(root(t), "testdata", "unwindlib.c")},
		}
		for _, args := range builds {
			out, err := exec.Command("gcc", args...).CombinedOutput()
			require.NoError(t, err, "gcc %v: %s", args, out)
		}
		for _, depth := range []int{64, 200} {
			t.Run(fmt.Sprintf("%s depth %d", opt, depth), func(t *testing.T) {
				res := traced(t, []string{prog, libs[0], libs[1]}, runOpts{Env: []string{
					"MEMSCOPE_UNWIND_CHECK=1", fmt.Sprintf("MEMSCOPE_DEPTH=%d", depth)}})
				require.Equal(t, 0, res.ExitCode, "stderr: %s", res.Stderr)
				assert.Equal(t, "ok\n", string(res.Stdout))
				assert.Empty(t, string(res.Stderr))
				assert.Zero(t, res.Dropped)
				got := map[uint64]int{}
				truncated := 0
				for _, ev := range res.Events {
					if ev.Type == shm.RecAlloc {
						if _, ok := wantBySize[ev.Alloc.Size]; ok {
							got[ev.Alloc.Size]++
						}
					}
					if ev.Type == shm.RecStack && ev.Flags&shm.FlagTruncated != 0 {
						truncated++
						assert.Len(t, ev.Stack.PCs, depth)
					}
				}
				assert.Equal(t, wantBySize, got, "allocations by size")
				if depth == 64 {
					assert.Positive(t, truncated, "deep() recurses past 64 frames")
				}
			})
		}
	}
}

// TestSignalHandlerInsideHook runs testdata/sighook.c, whose SIGALRM
// handler allocates when it interrupts libmemscope.so's own code. A call
// made while the thread is inside a hook cannot be recorded (the record
// in progress is the thread's); it passes through to glibc and is
// counted: recorded handler allocations plus unrecorded calls account
// for every call the handler made, and the report says it is incomplete
// and why.
func TestSignalHandlerInsideHook(t *testing.T) {
	const pairs = 2000000
	a := analyze(t, nil, program(t, "sighook"), fmt.Sprint(pairs))
	require.Equal(t, 0, a.exitCode, "stderr:\n%s", a.stderr)
	var made uint64
	_, err := fmt.Sscanf(a.stdout, "handler %d", &made)
	require.NoError(t, err, "stdout %q", a.stdout)
	m := a.main(t)

	allocs := map[string]int64{} // by the allocating function
	exit := parseProfile(t, filepath.Join(a.dir, fmt.Sprintf("memscope.sighook.%d.pb.gz", m.Pid)))
	for _, s := range exit.Sample {
		allocs[s.Location[0].Line[0].Function.Name] += s.Value[0]
	}
	unrecorded := m.Totals.UnrecordedCalls
	t.Logf("handler made %d malloc/free pairs: %d allocations recorded, %d calls unrecorded", made, allocs["on_alarm"], unrecorded)
	assert.Equal(t, int64(pairs), allocs["main"], "the main loop's allocations")
	assert.Equal(t, 2*made, 2*uint64(allocs["on_alarm"])+unrecorded, "recorded + unrecorded handler calls")
	require.Positive(t, unrecorded, "no signal landed inside a hook: the test did not exercise the case")
	assert.False(t, m.Complete)
	assert.Equal(t, []string{fmt.Sprintf("%d allocator call(s) made by signal handlers while memscope was recording another call of the same thread were not recorded", unrecorded)}, m.Incomplete)
	assert.Zero(t, m.Totals.DroppedEvents)
}
