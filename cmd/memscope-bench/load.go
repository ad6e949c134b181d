package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of /proc/stat: USER_HZ, 100 on every Linux ABI Go
// supports.
const userHZ = 100

// cpuAccount tells how much CPU the whole machine and this benchmark (the
// driver and every process it reaped) have used, so the report can say
// whether something else was competing for the cores during the run.
type cpuAccount struct {
	machineBusy float64 // CPU-seconds of all processes, from /proc/stat
	own         float64 // CPU-seconds of this process and its reaped children
}

func readCPUAccount() (cpuAccount, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuAccount{}, err
	}
	busy, err := parseProcStatBusy(string(data))
	if err != nil {
		return cpuAccount{}, err
	}
	var self, children unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &self); err != nil {
		return cpuAccount{}, err
	}
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &children); err != nil {
		return cpuAccount{}, err
	}
	own := 0.0
	for _, tv := range []unix.Timeval{self.Utime, self.Stime, children.Utime, children.Stime} {
		own += float64(tv.Sec) + float64(tv.Usec)/1e6
	}
	return cpuAccount{machineBusy: busy, own: own}, nil
}

// parseProcStatBusy returns the busy CPU-seconds of the "cpu" line of
// /proc/stat: user, nice, system, irq, softirq and steal (guest time is
// already inside user).
func parseProcStatBusy(stat string) (float64, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy uint64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, err := strconv.ParseUint(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: field %d of %q: %w", i, line, err)
		}
		busy += v
	}
	return float64(busy) / userHZ, nil
}

// otherLoad is the CPU used by processes other than the benchmark's
// between two accounts, in CPU-seconds.
func otherLoad(before, after cpuAccount) float64 {
	return (after.machineBusy - before.machineBusy) - (after.own - before.own)
}
