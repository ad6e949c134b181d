package report

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"memscope/analyzer/symbolize"
)

// DebugPackages guesses the Debian packages with the debug symbols of the
// modules the warnings name: libc6-dbg for glibc's own libraries (known
// by name), else PACKAGE-dbgsym of the package dpkg says owns the module.
// dpkg-query reads every package's file list, about 0.15 s a call, so all
// modules go in one call, with for a merged /usr the names dpkg may know a
// module by (mergedUsrNames). Modules dpkg does not know have no entry.
//
// The call is made at the session's end, after the program has exited,
// so its 0.15 s is on the user's clock: cacheDir (the symbol cache's
// directory; "" for none) keeps each module's owner across runs, keyed by
// the module file's identity (device, inode, size, modification time),
// which changes whenever a package update replaces it. Whether the debug
// package is installed is not cached: the symbolizer finds out each run.
func DebugPackages(ws []SymbolWarning, cacheDir string) map[string]string {
	pkgs := map[string]string{}
	cache := readOwnerCache(cacheDir)
	var ask []string // module paths dpkg is asked about
	for _, w := range ws {
		if !errors.Is(w.Err, symbolize.ErrNoDebugInfo) && !errors.Is(w.Err, symbolize.ErrNoSymbols) {
			continue
		}
		if isGlibcLibrary(filepath.Base(w.Path)) {
			pkgs[w.Path] = "libc6-dbg"
			continue
		}
		if e, ok := cache.Owners[w.Path]; ok && e.File == fileKeyOf(w.Path) && e.File != "" {
			if e.Package != "" {
				pkgs[w.Path] = debugPackageOf(e.Package)
			}
			continue
		}
		ask = append(ask, w.Path)
	}
	if len(ask) == 0 {
		return pkgs
	}
	owners, ok := dpkgOwners(ask)
	if !ok {
		return pkgs // not answered: nothing to keep either
	}
	for _, path := range ask {
		if owners[path] != "" {
			pkgs[path] = debugPackageOf(owners[path])
		}
		if key := fileKeyOf(path); key != "" {
			cache.Owners[path] = ownerEntry{File: key, Package: owners[path]}
		}
	}
	writeOwnerCache(cacheDir, cache)
	return pkgs
}

// debugPackageOf names the debug package of the package owning a module.
func debugPackageOf(owner string) string {
	if owner == "libc6" {
		return "libc6-dbg"
	}
	return owner + "-dbgsym"
}

// dpkgOwners asks dpkg-query which package owns each path; ok is false
// when it gave no answer (not installed, timed out, killed).
func dpkgOwners(paths []string) (owners map[string]string, ok bool) {
	args := []string{"-S"}
	asked := map[string]string{} // name given to dpkg -> module path
	for _, path := range paths {
		for _, name := range mergedUsrNames(path) {
			if _, dup := asked[name]; !dup && strings.HasPrefix(name, "/") {
				asked[name] = path
				args = append(args, name)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// It exits 1 when a name is unknown, still printing the others.
	out, err := exec.CommandContext(ctx, "dpkg-query", args...).Output()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		return nil, false
	}
	owners = map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		pkg, name, found := strings.Cut(strings.TrimSpace(line), ": ")
		path, known := asked[name]
		if !found || !known || pkg == "" || strings.ContainsAny(pkg, " ,") || owners[path] != "" {
			continue
		}
		owners[path], _, _ = strings.Cut(pkg, ":") // libc6:amd64
	}
	return owners, true
}

// mergedUsrNames are the names of path on a merged /usr, where /bin, /lib
// and /sbin are links into /usr and dpkg knows each file by the name its
// package gave it: /bin/bash for /usr/bin/bash, and the loader finds
// /usr/lib/x86_64-linux-gnu/libbfd-2.40-system.so as /lib/x86_64-linux-gnu/...
func mergedUsrNames(path string) []string {
	names := []string{path}
	if short := strings.TrimPrefix(path, "/usr"); short != path {
		names = append(names, short)
	}
	for _, dir := range []string{"/bin/", "/lib/", "/lib64/", "/sbin/"} {
		if strings.HasPrefix(path, dir) {
			names = append(names, "/usr"+path)
		}
	}
	return names
}

// ownerCacheName is the owners' file in the symbol cache's directory.
const ownerCacheName = "debug-packages.json"

type ownerCache struct {
	Format int                   `json:"format"`
	Owners map[string]ownerEntry `json:"owners"` // by module path
}

type ownerEntry struct {
	File    string `json:"file"`    // fileKeyOf the module when dpkg was asked
	Package string `json:"package"` // its owner; "": dpkg knows none
}

const ownerCacheFormat = 1

// fileKeyOf identifies the file at path as it is now; "" if it cannot be stat'ed.
func fileKeyOf(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return strings.Join([]string{
		itoa(uint64(st.Dev)), itoa(st.Ino), itoa(uint64(fi.Size())), itoa(uint64(fi.ModTime().UnixNano())),
	}, ":")
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

// readOwnerCache reads the owners kept in dir; an absent, unreadable or
// foreign file is an empty cache (it is replaced on the next write).
func readOwnerCache(dir string) ownerCache {
	empty := ownerCache{Format: ownerCacheFormat, Owners: map[string]ownerEntry{}}
	if dir == "" {
		return empty
	}
	b, err := os.ReadFile(filepath.Join(dir, ownerCacheName))
	if err != nil {
		return empty
	}
	var c ownerCache
	if json.Unmarshal(b, &c) != nil || c.Format != ownerCacheFormat || c.Owners == nil {
		return empty
	}
	return c
}

// writeOwnerCache keeps c in dir; a cache that cannot be written is only
// a slower next run, so errors are dropped.
func writeOwnerCache(dir string, c ownerCache) {
	if dir == "" || os.MkdirAll(dir, 0o700) != nil {
		return
	}
	_ = WriteFileAtomic(dir, ownerCacheName, func(w io.Writer) error {
		return json.NewEncoder(w).Encode(c)
	})
}

// isGlibcLibrary reports whether name is one of glibc's shared objects,
// whose debug symbols Debian ships in libc6-dbg.
func isGlibcLibrary(name string) bool {
	for _, lib := range []string{"libc.so.", "libm.so.", "libpthread.so.", "libdl.so.", "librt.so.", "libresolv.so.", "libutil.so.", "libanl.so.", "libnss_", "ld-linux"} {
		if strings.HasPrefix(name, lib) {
			return true
		}
	}
	return false
}
