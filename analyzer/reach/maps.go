package reach

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Perms      string // "rw-p"
	Path       string // "" for anonymous memory; "[heap]", "[stack]", ...
}

// Readable and Writable say what the mapping allows.
func (m Mapping) Readable() bool { return len(m.Perms) > 0 && m.Perms[0] == 'r' }
func (m Mapping) Writable() bool { return len(m.Perms) > 1 && m.Perms[1] == 'w' }

// Contains says whether addr is in the mapping.
func (m Mapping) Contains(addr uint64) bool { return addr >= m.Start && addr < m.End }

// ReadMaps parses /proc/PID/maps.
func ReadMaps(pid int) ([]Mapping, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return nil, err
	}
	return ParseMaps(b)
}

// ParseMaps parses the text of a /proc/PID/maps file.
func ParseMaps(b []byte) ([]Mapping, error) {
	var out []Mapping
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		// start-end perms offset dev inode [path]
		f := strings.Fields(line)
		if len(f) < 5 {
			return nil, fmt.Errorf("maps line %d: %q: want at least 5 fields", n, line)
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("maps line %d: %q: no address range", n, line)
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end < start {
			return nil, fmt.Errorf("maps line %d: %q: bad address range", n, line)
		}
		m := Mapping{Start: start, End: end, Perms: f[1]}
		if len(f) > 5 {
			// The path is the rest of the line after the five fields (it
			// may hold spaces).
			rest := line
			for range 5 {
				rest = strings.TrimLeft(rest, " ")
				rest = rest[strings.IndexByte(rest, ' ')+1:]
			}
			m.Path = strings.TrimSpace(rest)
		}
		out = append(out, m)
	}
	return out, sc.Err()
}
