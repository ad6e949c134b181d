// Package reach classifies the blocks a process still holds at exit as
// LeakSanitizer does (DESIGN.md §6.1): reachable from the process's roots,
// indirectly leaked (pointed to by another leaked block), or directly
// leaked. It stops the process with ptrace, reads its registers and
// memory with process_vm_readv, and scans them.
//
// The files follow the check: stop.go stops and resumes the threads,
// maps.go reads /proc/PID/maps, memory.go reads remote memory in batches,
// roots.go decides which memory is a root, classify.go walks the pointer
// graph, and check.go puts them together.
package reach

// Kind is a block's verdict.
type Kind uint8

// Kinds, in the order reports list them.
const (
	// Unknown: the check did not run (killed by a signal, _exit, exec,
	// memory not readable); every block still allocated is a leak
	// candidate.
	Unknown Kind = iota
	// Direct: no pointer to it from a root, a reachable block or another
	// leaked block (a pointer to itself does not count).
	Direct
	// Indirect: not reachable, but pointed to by another leaked block.
	Indirect
	// Reachable: a pointer to it, or into it, from a root or a reachable
	// block.
	Reachable

	NumKinds = 4
)

func (k Kind) String() string {
	switch k {
	case Direct:
		return "direct"
	case Indirect:
		return "indirect"
	case Reachable:
		return "reachable"
	}
	return "unknown"
}

// Leaked reports whether blocks of kind k count as leaks (direct,
// indirect, or unknown because the check could not run).
func (k Kind) Leaked() bool { return k != Reachable }
