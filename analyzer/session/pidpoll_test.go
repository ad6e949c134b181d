package session

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPidPoll: a process that has exited is seen at the next idle poll,
// or at a busy one pidPollEvery after the last poll, not before.
func TestPidPoll(t *testing.T) {
	cmd := exec.Command("true")
	require.NoError(t, cmd.Start())
	w := watchPid(uint32(cmd.Process.Pid))
	t.Cleanup(func() { w.close(); _ = cmd.Wait() })
	watches := map[uint32]*pidWatch{uint32(cmd.Process.Pid): w}
	var p pidPoll
	t0 := time.Now()
	p.poll(watches, t0, true) // the first poll is never put off
	// Wait until the process has exited (a zombie: we have not reaped it).
	for deadline := time.Now().Add(10 * time.Second); !isZombie(t, cmd.Process.Pid) && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	require.True(t, isZombie(t, cmd.Process.Pid))

	for _, tc := range []struct {
		at   time.Duration // after t0
		busy bool
		seen bool
	}{
		{pidPollEvery / 2, true, false}, // busy, too soon after the last poll
		{pidPollEvery / 2, false, true}, // idle: polls
	} {
		w.exitSeen = time.Time{}
		p.last = t0
		p.poll(watches, t0.Add(tc.at), tc.busy)
		assert.Equal(t, tc.seen, !w.exitSeen.IsZero(), "at +%v busy %v", tc.at, tc.busy)
	}
	w.exitSeen = time.Time{}
	p.last = t0
	p.poll(watches, t0.Add(pidPollEvery), true) // busy, but due
	assert.Equal(t, t0.Add(pidPollEvery), w.exitSeen)
}

func isZombie(t *testing.T, pid int) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	s := string(b)
	return strings.Contains(s[strings.LastIndexByte(s, ')'):], ") Z ")
}
