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
