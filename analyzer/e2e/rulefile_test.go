package e2e

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ruleFile is a file of unwind rules as preload/rulecache.c describes it:
// a 64-byte header (magic, count, build ID length, build ID, checksum,
// hash of the library's build ID) and sorted {file address, rule}
// entries.
type ruleFile struct {
	ID      []byte
	Addrs   []uint64
	Rules   []uint64
	Sum     uint64
	Lib     uint64
	rawSize int
}

const (
	ruleFileMagic  = "MSRULES1"
	ruleFileHeader = 64
	ruleEnd        = 1 << 49 // MS_RULE_END: the outermost frame
)

// ruleChecksum is rulecache.c's checksum of the entries.
func ruleChecksum(addrs, rules []uint64) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for i := range addrs {
		h = (h ^ addrs[i]) * 0xff51afd7ed558ccd
		h = (h ^ rules[i]) * 0xc4ceb9fe1a85ec53
		h ^= h >> 29
	}
	return h
}

func encodeRuleFile(f ruleFile) []byte {
	le := binary.LittleEndian
	b := []byte(ruleFileMagic)
	b = le.AppendUint32(b, uint32(len(f.Addrs)))
	b = le.AppendUint32(b, uint32(len(f.ID)))
	id := make([]byte, 32)
	copy(id, f.ID)
	b = append(b, id...)
	b = le.AppendUint64(b, f.Sum)
	b = le.AppendUint64(b, f.Lib)
	for i := range f.Addrs {
		b = le.AppendUint64(b, f.Addrs[i])
		b = le.AppendUint64(b, f.Rules[i])
	}
	return b
}

// readRuleFile reads path and checks it is sound: the header, a whole
// number of entries, addresses strictly increasing, rules non-zero
// without generation bits, the checksum.
func readRuleFile(t *testing.T, path string) ruleFile {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(b), ruleFileHeader)
	le := binary.LittleEndian
	require.Equal(t, ruleFileMagic, string(b[:8]))
	n, idLen := int(le.Uint32(b[8:])), int(le.Uint32(b[12:]))
	require.Equal(t, ruleFileHeader+16*n, len(b), "size of %d entries", n)
	require.LessOrEqual(t, idLen, 32)
	f := ruleFile{ID: append([]byte(nil), b[16:16+idLen]...), Sum: le.Uint64(b[48:]), Lib: le.Uint64(b[56:]), rawSize: len(b)}
	for i := 0; i < n; i++ {
		e := b[ruleFileHeader+16*i:]
		f.Addrs = append(f.Addrs, le.Uint64(e))
		f.Rules = append(f.Rules, le.Uint64(e[8:]))
		require.NotZero(t, f.Rules[i])
		require.Zero(t, f.Rules[i]>>52, "generation bits of entry %d", i)
		if i > 0 {
			require.Less(t, f.Addrs[i-1], f.Addrs[i], "entry %d", i)
		}
	}
	require.Equal(t, ruleChecksum(f.Addrs, f.Rules), f.Sum)
	return f
}

// libHash is rulecache.c's hash of the library's build ID (FNV-1a, low
// bit set).
func libHash(t *testing.T) uint64 {
	h := uint64(0xcbf29ce484222325)
	for _, c := range fileBuildID(t, library(t)) {
		h = (h ^ uint64(c)) * 0x100000001b3
	}
	return h | 1
}

// fileBuildID is the GNU build ID of the ELF file at path.
func fileBuildID(t *testing.T, path string) []byte {
	t.Helper()
	ef, err := elf.Open(path)
	require.NoError(t, err)
	defer ef.Close()
	return buildID(t, ef)
}

// TestRuleFiles: a process leaves the unwind rules it computed for an
// executable in a file beside the ring (preload/rulecache.c), and the
// next processes of it take their rules from there; with
// MEMSCOPE_UNWIND_CHECK=1 every stack they record is compared with
// libunwind's. A file whose rules are wrong is used, and the check says
// so; a file that is not sound is ignored, and replaced.
func TestRuleFiles(t *testing.T) {
	prog := program(t, "rulefile", "-O2")
	id := fileBuildID(t, prog)
	dir := t.TempDir()
	path := filepath.Join(dir, ".rules-"+hex.EncodeToString(id))
	check := runOpts{Env: []string{"MEMSCOPE_UNWIND_CHECK=1"}, RingDir: dir}
	runOK := func(t *testing.T) {
		t.Helper()
		res := traced(t, []string{prog}, check)
		require.Equal(t, 0, res.ExitCode, "stderr: %s", res.Stderr)
		assert.Equal(t, "ok\n", string(res.Stdout))
		assert.Empty(t, string(res.Stderr))
	}

	runOK(t)
	first := readRuleFile(t, path)
	assert.Equal(t, id, first.ID)
	assert.Equal(t, libHash(t), first.Lib)
	// testdata/rulefile.c: 48 functions, their 48 calls in main, _start.
	assert.Len(t, first.Addrs, 97)
	ends := 0
	for _, r := range first.Rules {
		if r&ruleEnd != 0 {
			ends++
		}
	}
	assert.Equal(t, 1, ends, "_start's rule ends the stack")
	// The next runs find every rule there: nothing new to write (a
	// write renames a new file, of the time it was written, over it).
	past := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	require.NoError(t, os.Chtimes(path, past, past))
	runOK(t)
	runOK(t)
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.True(t, st.ModTime().Equal(past), "the file is not written again (modified %v)", st.ModTime())

	// Rules that end every stack at its first frame: the process uses
	// them, and the check catches the stacks they make.
	wrong := first
	wrong.Rules = make([]uint64, len(first.Rules))
	for i := range wrong.Rules {
		wrong.Rules[i] = ruleEnd
	}
	wrong.Sum = ruleChecksum(wrong.Addrs, wrong.Rules)
	require.NoError(t, os.WriteFile(path, encodeRuleFile(wrong), 0o600))
	res := traced(t, []string{prog}, check)
	assert.Equal(t, syscall.SIGABRT, res.Signal, "exit %d, stderr: %s", res.ExitCode, res.Stderr)
	assert.Contains(t, string(res.Stderr), "MEMSCOPE_UNWIND_CHECK: stacks differ")

	// Files that are not sound: ignored, the rules computed, the file
	// replaced by a sound one.
	otherID := bytes.Repeat([]byte{0xab}, len(id))
	badSum := first
	badSum.Sum++
	unsorted := first
	unsorted.Addrs = append([]uint64(nil), first.Addrs...)
	unsorted.Addrs[0], unsorted.Addrs[1] = unsorted.Addrs[1], unsorted.Addrs[0]
	unsorted.Sum = ruleChecksum(unsorted.Addrs, unsorted.Rules)
	foreign := first
	foreign.ID = otherID
	otherLib := first
	otherLib.Lib ^= 2
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"bad magic", append([]byte("MSRULES2"), encodeRuleFile(first)[8:]...)},
		{"part of an entry", encodeRuleFile(first)[:first.rawSize-8]},
		{"checksum", encodeRuleFile(badSum)},
		{"unsorted", encodeRuleFile(unsorted)},
		{"another build ID", encodeRuleFile(foreign)},
		{"another build of the library", encodeRuleFile(otherLib)},
		{"empty", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(path, tc.data, 0o600))
			runOK(t)
			f := readRuleFile(t, path)
			assert.Equal(t, first.Addrs, f.Addrs)
			assert.Equal(t, first.Rules, f.Rules)
		})
	}
}
