package reach

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The scan needs only the target's readable and writable mappings (every
// root is among them). /proc/PID/maps prints all of them as text, and the
// kernel takes about 1.5 us a line to print it (a 65-mapping cc1: 100 us,
// a third of a small process's check). Linux 6.11 answers the same
// question in binary, one ioctl a mapping, asking for the readable and
// writable ones only: 20 us for cc1's 19. Older kernels get the text.

// procmapQuery is struct procmap_query of <linux/fs.h> (Linux 6.11).
type procmapQuery struct {
	Size        uint64 // in: sizeof(struct procmap_query)
	QueryFlags  uint64 // in: procmapQuery* flags
	QueryAddr   uint64 // in
	VmaStart    uint64 // out
	VmaEnd      uint64 // out
	VmaFlags    uint64 // out: procmapVMA* flags
	VmaPageSize uint64 // out
	VmaOffset   uint64 // out
	Inode       uint64 // out
	DevMajor    uint32 // out
	DevMinor    uint32 // out
	VmaNameSize uint32 // in: buffer size; out: name length + 1, 0 without name
	BuildIDSize uint32 // in/out
	VmaNameAddr uint64 // in
	BuildIDAddr uint64 // in
}

const (
	// PROCMAP_QUERY = _IOWR('f', 17, struct procmap_query).
	procmapQueryIoctl = 3<<30 | uint(unsafe.Sizeof(procmapQuery{}))<<16 | 'f'<<8 | 17

	procmapVMAReadable  = 0x01
	procmapVMAWritable  = 0x02
	procmapVMAExec      = 0x04
	procmapVMAShared    = 0x08
	procmapCoveringNext = 0x10 // the mapping at query_addr, else the next one
)

// ReadWritableMaps lists the mappings of pid that are readable and
// writable, as ReadMaps would show them (Perms and Path included), in
// address order.
func ReadWritableMaps(pid int) ([]Mapping, error) {
	maps, err := queryWritableMaps(pid)
	if errors.Is(err, errNoProcmapQuery) {
		return readWritableMapsText(pid)
	}
	return maps, err
}

// readWritableMapsText is ReadWritableMaps from /proc/PID/maps' text.
func readWritableMapsText(pid int) ([]Mapping, error) {
	all, err := ReadMaps(pid)
	if err != nil {
		return nil, err
	}
	maps := all[:0]
	for _, m := range all {
		if m.Readable() && m.Writable() {
			maps = append(maps, m)
		}
	}
	return maps, nil
}

// errNoProcmapQuery: the kernel has no PROCMAP_QUERY (before 6.11), or
// refused or answered it in a way this code does not expect; the text is
// read instead.
var errNoProcmapQuery = errors.New("no PROCMAP_QUERY")

func queryWritableMaps(pid int) ([]Mapping, error) {
	path := fmt.Sprintf("/proc/%d/maps", pid)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	defer unix.Close(fd)
	var name [unix.PathMax + 64]byte
	var out []Mapping
	for addr := uint64(0); ; {
		q := procmapQuery{
			Size:        uint64(unsafe.Sizeof(procmapQuery{})),
			QueryFlags:  procmapCoveringNext | procmapVMAReadable | procmapVMAWritable,
			QueryAddr:   addr,
			VmaNameSize: uint32(len(name)),
			VmaNameAddr: uint64(uintptr(unsafe.Pointer(&name[0]))),
		}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(procmapQueryIoctl), uintptr(unsafe.Pointer(&q)))
		switch errno {
		case 0:
		case unix.ENOENT: // no mapping at or after addr
			return out, nil
		default:
			// ENOTTY before 6.11, or a refusal this code does not know
			// (a seccomp filter's EPERM): the text says the same, and
			// fails in its own words if the process is gone.
			return nil, errNoProcmapQuery
		}
		if q.VmaEnd <= q.VmaStart || q.VmaStart < addr || q.VmaNameSize > uint32(len(name)) {
			return nil, errNoProcmapQuery
		}
		m := Mapping{Start: q.VmaStart, End: q.VmaEnd, Perms: perms(q.VmaFlags)}
		if q.VmaNameSize > 1 {
			m.Path = string(name[:q.VmaNameSize-1]) // VmaNameSize counts the NUL
		}
		out = append(out, m)
		addr = q.VmaEnd
	}
}

// perms spells PROCMAP_QUERY's flags as /proc/PID/maps does ("rw-p").
func perms(flags uint64) string {
	b := []byte("---p")
	if flags&procmapVMAReadable != 0 {
		b[0] = 'r'
	}
	if flags&procmapVMAWritable != 0 {
		b[1] = 'w'
	}
	if flags&procmapVMAExec != 0 {
		b[2] = 'x'
	}
	if flags&procmapVMAShared != 0 {
		b[3] = 's'
	}
	return string(b)
}
