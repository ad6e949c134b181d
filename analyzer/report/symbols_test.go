package report

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestIsGlibcLibrary(t *testing.T) {
	for name, want := range map[string]bool{
		"libc.so.6": true, "ld-linux-x86-64.so.2": true, "libm.so.6": true, "libnss_files.so.2": true,
		"libpython3.11.so.1.0": false, "libstdc++.so.6": false, "bash": false, "libcrypt.so.1": false,
	} {
		assert.Equal(t, want, isGlibcLibrary(name), name)
	}
}
