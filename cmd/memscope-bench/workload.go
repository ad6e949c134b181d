package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// workload is one program run under every tool.
type workload struct {
	id   string // short, for file names
	name string // as printed in the table
	prog string
	args []string
	env  []string
	// repeat is how many times one timed run executes prog under each
	// tool (the startup row times a batch of short runs); 0 means 1.
	repeat [numTools]int
	// preloadOnly runs the memscope column as a bare LD_PRELOAD (the
	// library starts its own detached analyzer) instead of through
	// memscope-analyze run; such a row has no heaptrack column.
	preloadOnly bool
	// joinRing runs the memscope column with LD_PRELOAD and MEMSCOPE_RING
	// naming a ring the benchmark drains itself: the library's own cost.
	joinRing bool
	// noHeaptrack: a row of memscope only (a test mode, nothing to compare).
	noHeaptrack bool

	samples [numTools][]sample
	err     [numTools]error // first failure; the tool is not run again
}

func (w *workload) repeats(t tool) int {
	if w.repeat[t] == 0 {
		return 1
	}
	return w.repeat[t]
}

// sizes of the workloads; the defaults keep `make bench` under 10 minutes
// on 2 cores with heaptrack installed.
type sizes struct {
	microPairs       int64
	threadPairs      int64
	sizeOps          int64
	shortThreads     int
	dicts            int
	startupRuns      int
	startupHeaptrack int
	buildFiles       int
	shellLoops       int
}

// workloads returns the rows to measure, in table order. python is nil
// when no python3 is found.
func workloads(benchDir, srcDir string, sz sizes, python, project string) []*workload {
	env := os.Environ()
	loop := filepath.Join(benchDir, "alloc_loop")
	var ws []*workload
	for _, depth := range []int{0, 10, 40} {
		ws = append(ws, &workload{
			id:   fmt.Sprintf("micro%d", depth),
			name: fmt.Sprintf("micro depth %d", depth),
			prog: loop,
			args: []string{strconv.FormatInt(sz.microPairs, 10), strconv.Itoa(depth), "1"},
			env:  env,
		})
	}
	// The unwinder's test mode (MEMSCOPE_UNWIND_CHECK=1: every stack also
	// walked by libunwind and compared) costs what libunwind costs, and
	// more: its own row, so nobody takes it for the user's cost.
	ws = append(ws, &workload{
		id:          "micro10-check",
		name:        "micro depth 10, unwind check",
		prog:        loop,
		args:        []string{strconv.FormatInt(sz.microPairs/10, 10), "10", "1"}, // libunwind's pace
		env:         append(withoutEnv(env, "MEMSCOPE_UNWIND_CHECK"), "MEMSCOPE_UNWIND_CHECK=1"),
		noHeaptrack: true,
	})
	// The journal that lets a restarted analyzer resume a ring
	// (analyzer/journal) copies every record the analyzer reads: micro
	// depth 10 without it is what it costs (issue 18: at most 10%).
	ws = append(ws, &workload{
		id:          "micro10-nojournal",
		name:        "micro depth 10, no journal",
		prog:        loop,
		args:        []string{strconv.FormatInt(sz.microPairs, 10), "10", "1"},
		env:         append(withoutEnv(env, "MEMSCOPE_JOURNAL"), "MEMSCOPE_JOURNAL=off"),
		noHeaptrack: true,
	})
	for _, n := range []int{1, 2, 4} {
		ws = append(ws, &workload{
			id:   fmt.Sprintf("threads%d", n),
			name: fmt.Sprintf("threads %d", n),
			prog: loop,
			args: []string{strconv.FormatInt(sz.threadPairs, 10), "0", strconv.Itoa(n)},
			env:  env,
		})
	}
	ws = append(ws, &workload{
		id:   "threads-short",
		name: "short threads",
		prog: filepath.Join(benchDir, "short_threads"),
		args: []string{strconv.Itoa(sz.shortThreads)},
		env:  env,
	})
	ws = append(ws, &workload{
		id:   "sizes",
		name: "sizes 8B..1MiB",
		prog: filepath.Join(benchDir, "size_mix"),
		args: []string{strconv.FormatInt(sz.sizeOps, 10)},
		env:  env,
	})
	if python != "" {
		ws = append(ws, &workload{
			id:   "python",
			name: "python dicts",
			prog: python,
			args: []string{filepath.Join(srcDir, "dicts.py"), strconv.Itoa(sz.dicts)},
			env:  append(withoutEnv(env, "PYTHONMALLOC"), "PYTHONMALLOC=malloc"),
		})
	}
	if project != "" {
		// Many short processes: make, sh, gcc, cc1, as, collect2, ld. The
		// objects go to a fresh directory each run (its removal is timed
		// under every tool alike). heaptrack follows only the first
		// process, as its users get it.
		obj := filepath.Join(filepath.Dir(project), "obj")
		ws = append(ws, &workload{
			id:   "build",
			name: fmt.Sprintf("build: make -j2, %d C files", sz.buildFiles),
			prog: "/bin/sh",
			args: []string{"-c", `rm -rf "$1" && exec make -s -j2 -f "$2/Makefile" SRCDIR="$2" O="$1"`, "sh", obj, project},
			env:  env,
		})
	}
	ws = append(ws, &workload{
		id:   "shell",
		name: fmt.Sprintf("shell: %d pipelines", sz.shellLoops),
		prog: "/bin/bash",
		args: []string{"-c", fmt.Sprintf(`for i in $(seq %d); do echo "line $i" | sed s/1/x/ | tr a-z A-Z | wc -c > /dev/null; done`, sz.shellLoops)},
		env:  env,
	})
	ws = append(ws, &workload{
		id:     "startup",
		name:   "startup /bin/true",
		prog:   "/bin/true",
		env:    env,
		repeat: [numTools]int{sz.startupRuns, sz.startupRuns, sz.startupHeaptrack},
	}, &workload{
		id:          "startup-preload",
		name:        "startup LD_PRELOAD",
		prog:        "/bin/true",
		env:         env,
		repeat:      [numTools]int{sz.startupRuns, sz.startupRuns, 0},
		preloadOnly: true,
	}, &workload{
		id:       "startup-join",
		name:     "startup join ring",
		prog:     "/bin/true",
		env:      env,
		repeat:   [numTools]int{sz.startupRuns, sz.startupRuns, 0},
		joinRing: true,
	})
	return ws
}

func withoutEnv(env []string, key string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// findPython returns the real interpreter behind python3 on PATH (not a
// version manager's shell shim, whose startup would be timed too), or ""
// with the reason.
func findPython() (string, string) {
	p, err := exec.LookPath("python3")
	if err != nil {
		return "", "python3 not found on PATH: python row skipped"
	}
	out, err := exec.Command(p, "-c", "import sys; print(sys.executable)").Output()
	if err != nil {
		return "", fmt.Sprintf("%s does not run (%v): python row skipped", p, err)
	}
	exe := strings.TrimSpace(string(out))
	if exe == "" {
		return p, ""
	}
	return exe, ""
}

// writeProject writes a C project of n files and its Makefile in dir, for
// the build row: each file includes the usual headers and allocates, as
// real sources do; make builds them with -j2 into $(O).
func writeProject(dir string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	const makefile = `SRC := $(wildcard $(SRCDIR)/*.c)
OBJ := $(patsubst $(SRCDIR)/%.c,$(O)/%.o,$(SRC))
$(O)/prog: $(OBJ)
	cc -o $@ $^
$(O)/%.o: $(SRCDIR)/%.c | $(O)
	cc -O1 -c $< -o $@
$(O):
	mkdir -p $@
`
	if err := os.WriteFile(filepath.Join(dir, "Makefile"), []byte(makefile), 0o644); err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		var src string
		if i == 0 {
			src = "int main(void) { return 0; }\n"
		} else {
			src = fmt.Sprintf("#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"+
				"int f%d(int x)\n{\n\tchar *p = malloc(x + 1);\n\tif (!p)\n\t\treturn -1;\n"+
				"\tmemset(p, 0, x + 1);\n\tint r = snprintf(p, x + 1, \"%%d\", x);\n\tfree(p);\n\treturn r;\n}\n", i)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d.c", i)), []byte(src), 0o644); err != nil {
			return err
		}
	}
	return nil
}
