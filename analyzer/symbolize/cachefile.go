package symbolize

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
)

// A symbol cache file (diskcache.go) holds the frames of one build ID:
//
//	magic    "memscope symbol cache 2\n"
//	stamp    string: which memscope wrote it (diskCache.stamp)
//	count    uvarint: addresses that follow, in increasing order
//	per address:
//	  delta  uvarint: address minus the previous one (the first: itself)
//	  frames uvarint, then per frame:
//	    function string, file string, line uvarint, inlined byte (0 or 1)
//
// A string is a uvarint n: n > 0 names the n-th string written before in
// this file (function and file names repeat, a few per address); 0 is
// followed by a new one, uvarint length then bytes. Varints are
// encoding/binary's.
//
// Its own encoding rather than encoding/gob, which the cache used before:
// gob's package initialisation took 0.25 ms of every analyzer start (the
// cache is its only user), and it decoded by reflection.
const cacheMagic = "memscope symbol cache 2\n"

// errCacheFile is what decodeCacheFile wraps for a damaged or foreign file.
var errCacheFile = errors.New("not a memscope symbol cache file")

// encodeCacheFile returns the file holding frames, written by stamp.
func encodeCacheFile(stamp string, frames map[uint64][]Frame) []byte {
	addrs := make([]uint64, 0, len(frames))
	for a := range frames {
		addrs = append(addrs, a)
	}
	slices.Sort(addrs)
	seen := map[string]uint64{}
	b := append([]byte(nil), cacheMagic...)
	putString := func(s string) {
		if n, ok := seen[s]; ok {
			b = binary.AppendUvarint(b, n)
			return
		}
		seen[s] = uint64(len(seen) + 1)
		b = binary.AppendUvarint(b, 0)
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(stamp)))
	b = append(b, stamp...)
	b = binary.AppendUvarint(b, uint64(len(addrs)))
	prev := uint64(0)
	for _, a := range addrs {
		b = binary.AppendUvarint(b, a-prev)
		prev = a
		fr := frames[a]
		b = binary.AppendUvarint(b, uint64(len(fr)))
		for _, f := range fr {
			putString(f.Function)
			putString(f.File)
			b = binary.AppendUvarint(b, uint64(max(f.Line, 0)))
			inl := byte(0)
			if f.Inlined {
				inl = 1
			}
			b = append(b, inl)
		}
	}
	return b
}

// cacheDecoder reads a cache file front to back; the first error sticks.
type cacheDecoder struct {
	b       []byte
	at      int
	strings []string
	err     error
}

func (d *cacheDecoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at byte %d", errCacheFile, what, d.at)
	}
}

func (d *cacheDecoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.at:])
	if n <= 0 {
		d.fail(what)
		return 0
	}
	d.at += n
	return v
}

// bytes returns the next n bytes, if there are that many.
func (d *cacheDecoder) bytes(n uint64, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.at) {
		d.fail(what)
		return nil
	}
	s := d.b[d.at : d.at+int(n)]
	d.at += int(n)
	return s
}

func (d *cacheDecoder) string(what string) string {
	n := d.uvarint(what)
	if d.err != nil {
		return ""
	}
	if n > 0 {
		if n > uint64(len(d.strings)) {
			d.fail(what + " (string index)")
			return ""
		}
		return d.strings[n-1]
	}
	s := string(d.bytes(d.uvarint(what), what))
	if d.err == nil {
		d.strings = append(d.strings, s)
	}
	return s
}

// decodeCacheFile returns the stamp and frames of a cache file, or an
// error wrapping errCacheFile if b is not one (damaged, truncated, or
// of another format).
func decodeCacheFile(b []byte) (string, map[uint64][]Frame, error) {
	if len(b) < len(cacheMagic) || string(b[:len(cacheMagic)]) != cacheMagic {
		return "", nil, fmt.Errorf("%w: bad magic", errCacheFile)
	}
	d := &cacheDecoder{b: b, at: len(cacheMagic)}
	stamp := string(d.bytes(d.uvarint("stamp length"), "stamp"))
	count := d.uvarint("address count")
	// Every address takes two bytes at least: a count beyond that is a
	// damaged file, not a reason to allocate.
	if d.err == nil && count > uint64(len(b)-d.at)/2 {
		d.fail("address count")
	}
	if d.err != nil {
		return "", nil, d.err
	}
	frames := make(map[uint64][]Frame, count)
	addr := uint64(0)
	for i := uint64(0); i < count && d.err == nil; i++ {
		addr += d.uvarint("address")
		n := d.uvarint("frame count")
		// A frame takes four bytes at least.
		if d.err == nil && n > uint64(len(b)-d.at)/4 {
			d.fail("frame count")
		}
		if d.err != nil {
			break
		}
		fr := make([]Frame, n)
		for k := range fr {
			fr[k].Function = d.string("function")
			fr[k].File = d.string("file")
			line := d.uvarint("line")
			if line > 1<<31-1 {
				d.fail("line")
			}
			fr[k].Line = int(line)
			switch inl := d.bytes(1, "inlined"); {
			case d.err != nil:
			case inl[0] > 1:
				d.fail("inlined")
			default:
				fr[k].Inlined = inl[0] == 1
			}
		}
		frames[addr] = fr
	}
	if d.err == nil && d.at != len(b) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return "", nil, d.err
	}
	return stamp, frames, nil
}
