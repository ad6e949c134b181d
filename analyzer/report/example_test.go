package report_test

import (
	"io"
	"os"

	"memscope/analyzer/engine"
	"memscope/analyzer/reach"
	"memscope/analyzer/report"
	"memscope/shm"
)

// The flow of memscope-analyze for one process: records in, reports out.
func Example() {
	e := engine.New(engine.Options{})
	var buf []byte
	buf = shm.AppendProcess(buf, 1000, shm.Process{Pid: 42, Ppid: 1, Event: shm.ProcessStart, Exe: "/bin/demo"})
	buf = shm.AppendStack(buf, 1001, 0, shm.Stack{ID: 7, PCs: []uint64{0x401234}})
	buf = shm.AppendAlloc(buf, 1002, shm.Alloc{Ptr: 0x1000, Size: 100, StackID: 7, Kind: shm.KindMalloc})
	buf = shm.AppendAlloc(buf, 1003, shm.Alloc{Ptr: 0x2000, Size: 20, StackID: 7, Kind: shm.KindMalloc})
	buf = shm.AppendFree(buf, 1004, shm.Free{Ptr: 0x2000})
	for len(buf) > 0 {
		rec, err := shm.ParseRecordHeader(buf) // what the shm Reader delivers
		if err != nil {
			panic(err)
		}
		rec.Pid, rec.Tid = 42, 42
		if err := e.Apply(rec); err != nil {
			panic(err)
		}
		buf = buf[len(rec.Data):]
	}
	// At its exit the session scans its memory (analyzer/reach) and keeps
	// the verdicts: here, no pointer to the block was found.
	e.FlushProcess(42) // apply what waits in the reorder window
	blocks := e.LiveBlocks(42)
	e.SetReachability(42, blocks, []reach.Kind{reach.Direct})
	// The process is gone (wait status) and the ring drained.
	p := e.EndProcess(42, engine.ExitStatus{Known: true, Code: 0})

	syms := report.NewSymbols(nil) // one per run: caches symbols across processes
	leaks := report.Leaks(p, syms, nil)
	dir, _ := os.MkdirTemp("", "memscope-example")
	defer os.RemoveAll(dir)
	_ = report.WriteFileAtomic(dir, report.FileBase(p)+".leaks.json", leaks.WriteJSON)
	_ = report.WriteFileAtomic(dir, report.FileBase(p)+".pb.gz", func(w io.Writer) error {
		return report.WriteProfile(w, p, syms, report.InuseAtExit, report.ProfileOptions{})
	})
	_ = leaks.WriteText(os.Stdout)
	// Output:
	// ==42==memscope: detected memory leaks
	//
	// Direct leak of 100 byte(s) in 1 object(s) allocated from:
	//     #0 0x401234 (<unknown module>)
	//
	// still reachable: 0 byte(s) in 0 object(s)
	// SUMMARY: memscope: 100 byte(s) leaked in 1 allocation(s).
}
