package shm

// rdtscOrdered reads the time-stamp counter after every earlier
// instruction has completed and before any later one starts ("lfence;
// rdtsc; lfence").
func rdtscOrdered() uint64

func cpuid(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)

func invariantTSC() bool {
	if max, _, _, _ := cpuid(0x80000000, 0); max < 0x80000007 {
		return false
	}
	_, _, _, edx := cpuid(0x80000007, 0)
	return edx>>8&1 != 0
}
