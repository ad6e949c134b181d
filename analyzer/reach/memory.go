package reach

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// iovMax is the kernel's UIO_MAXIOV: iovecs per process_vm_readv.
const iovMax = 1024

// remoteRange is a range of the target's memory to read into buf.
type remoteRange struct {
	addr uint64
	buf  []byte
}

// readRanges reads every range with process_vm_readv, up to iovMax at a
// call. A range the kernel cannot read (unmapped since, or never) is cut
// to what was read and the rest of the batch is retried past it; it
// returns the bytes read in all.
func readRanges(pid int, rs []remoteRange) (total int, err error) {
	local := make([]unix.Iovec, 0, iovMax)
	remote := make([]unix.RemoteIovec, 0, iovMax)
	for len(rs) > 0 {
		n := min(len(rs), iovMax)
		local, remote = local[:0], remote[:0]
		for _, r := range rs[:n] {
			iov := unix.Iovec{Base: unsafe.SliceData(r.buf)}
			iov.SetLen(len(r.buf))
			local = append(local, iov)
			remote = append(remote, unix.RemoteIovec{Base: uintptr(r.addr), Len: len(r.buf)})
		}
		got, rerr := unix.ProcessVMReadv(pid, local, remote, 0)
		if rerr != nil {
			if rerr == unix.EFAULT || rerr == unix.ENOMEM {
				// The first range is unreadable: drop it, go on.
				rs[0].buf = rs[0].buf[:0]
				rs = rs[1:]
				continue
			}
			return total, rerr
		}
		total += got
		// A short read stops at the first range it could not finish.
		done := 0
		for done < n && got >= len(rs[done].buf) {
			got -= len(rs[done].buf)
			done++
		}
		if done < n {
			rs[done].buf = rs[done].buf[:got]
			done++
		}
		rs = rs[done:]
	}
	return total, nil
}
