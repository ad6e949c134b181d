package symbolize

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// The symbol cache keeps, across runs, the frames of the addresses that
// were resolved with DWARF, per build ID: a build ID names one build of
// one object, so its frames never change. Opening glibc's separate debug
// file (decompressing and indexing its DWARF) costs 0.1-0.2 s, and a
// program's stacks pass through glibc at every run (__libc_start_call_main
// at the bottom of every stack, stdio's buffers); libpython's 3100
// addresses of a python run cost 0.3 s more. With the cache, a run whose
// addresses were all seen before opens no DWARF at all.
//
// One file per build ID (DIR/<build id>.sym, mode 0600 in a 0700
// directory, in the format of cachefile.go), written whole to a
// temporary file and renamed; a file
// written by another build of memscope (its executable's size and time
// differ) or unreadable is ignored and replaced. Only results computed
// with DWARF and without error are kept, so a module without debug info
// is looked up again (and warned about) at every run, and installing its
// debug package takes effect at once.

// cacheFormat changes when what a file means does (its layout has its
// own version, in cacheMagic).
const cacheFormat = 1

// maxCachedAddrs bounds the addresses kept per build ID.
const maxCachedAddrs = 1 << 18

type diskCache struct {
	dir   string
	stamp string // who wrote a file: cacheFormat and this executable
	files map[string]*cacheFile
}

type cacheFile struct {
	frames map[uint64][]Frame // read from disk, then added
	added  int                // entries added this run
}

func newDiskCache(dir string) *diskCache {
	stamp := fmt.Sprint(cacheFormat)
	if exe, err := os.Executable(); err == nil {
		if fi, err := os.Stat(exe); err == nil {
			stamp = fmt.Sprintf("%d %s %d %d", cacheFormat, exe, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return &diskCache{dir: dir, stamp: stamp, files: map[string]*cacheFile{}}
}

func (c *diskCache) path(id string) string { return filepath.Join(c.dir, id+".sym") }

// file returns the cache of build ID id, read from disk on first use.
func (c *diskCache) file(buildID []byte) *cacheFile {
	id := hex.EncodeToString(buildID)
	f := c.files[id]
	if f == nil {
		f = &cacheFile{frames: c.read(id)}
		c.files[id] = f
	}
	return f
}

// read returns the frames stored for id, or an empty map.
func (c *diskCache) read(id string) map[uint64][]Frame {
	b, err := os.ReadFile(c.path(id))
	if err != nil {
		return map[uint64][]Frame{}
	}
	stamp, frames, err := decodeCacheFile(b)
	if err != nil || stamp != c.stamp {
		return map[uint64][]Frame{}
	}
	return frames
}

func (c *diskCache) lookup(buildID []byte, fileAddr uint64) ([]Frame, bool) {
	fr, ok := c.file(buildID).frames[fileAddr]
	return fr, ok
}

func (c *diskCache) add(buildID []byte, fileAddr uint64, frames []Frame) {
	f := c.file(buildID)
	if len(f.frames) >= maxCachedAddrs {
		return
	}
	f.frames[fileAddr] = frames
	f.added++
}

// save writes every file that gained entries, merged with what another
// analyzer may have written meanwhile.
func (c *diskCache) save() error {
	var errs []error
	for id, f := range c.files {
		if f.added == 0 {
			continue
		}
		merged := c.read(id)
		for a, fr := range f.frames {
			if len(merged) >= maxCachedAddrs {
				break
			}
			merged[a] = fr
		}
		if err := c.write(id, merged); err != nil {
			errs = append(errs, err)
		}
		f.added = 0
	}
	return errors.Join(errs...)
}

func (c *diskCache) write(id string, frames map[uint64][]Frame) error {
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return fmt.Errorf("symbol cache: %w", err)
	}
	tmp, err := os.CreateTemp(c.dir, "."+id+".tmp-*")
	if err != nil {
		return fmt.Errorf("symbol cache: %w", err)
	}
	_, err = tmp.Write(encodeCacheFile(c.stamp, frames))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), c.path(id))
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("symbol cache %s: %w", c.path(id), err)
	}
	// What a memscope before the .sym format kept for this build ID.
	os.Remove(filepath.Join(c.dir, id+".gob"))
	return nil
}
