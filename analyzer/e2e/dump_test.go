package e2e

import (
	"os"
	"testing"
)

// TestDump logs every record of MEMSCOPE_E2E_DUMP=program (debugging aid).
func TestDump(t *testing.T) {
	name := os.Getenv("MEMSCOPE_E2E_DUMP")
	if name == "" {
		t.Skip("set MEMSCOPE_E2E_DUMP=testdata program name")
	}
	res := traced(t, []string{program(t, name)}, runOpts{})
	for _, ev := range res.Events {
		switch ev.Type {
		case 1:
			t.Logf("%d/%d %d ALLOC %+v", ev.Pid, ev.Tid, ev.TS, ev.Alloc)
		case 2:
			t.Logf("%d/%d %d FREE %+v", ev.Pid, ev.Tid, ev.TS, ev.Free)
		case 3:
			t.Logf("%d/%d %d REALLOC %+v", ev.Pid, ev.Tid, ev.TS, ev.Realloc)
		case 4:
			t.Logf("%d/%d STACK %x %x", ev.Pid, ev.Tid, ev.Stack.ID, ev.Stack.PCs)
		case 5:
			t.Logf("%d/%d MODULE ev=%d bias=%x segs=%d bid=%x %s", ev.Pid, ev.Tid, ev.Module.Event, ev.Module.Bias, len(ev.Module.Segments), ev.Module.BuildID, ev.Module.Path)
		case 6:
			t.Logf("%d/%d THREAD %+v", ev.Pid, ev.Tid, ev.Thread)
		case 7:
			t.Logf("%d/%d PROCESS %+v", ev.Pid, ev.Tid, ev.Process)
		default:
			t.Logf("%d/%d %v", ev.Pid, ev.Tid, ev.Type)
		}
	}
	t.Logf("exit %d signal %v dropped %d stderr %q", res.ExitCode, res.Signal, res.Dropped, res.Stderr)
}
