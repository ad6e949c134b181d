package report

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestDbgsymPackage(t *testing.T) {
	tests := []struct {
		out, want string
	}{
		{"", ""},
		{"bash: /bin/bash\n", "bash-dbgsym"},
		{"libc6:amd64: /lib/x86_64-linux-gnu/libc.so.6\n", "libc6-dbg"},
		// Asked for /usr/bin/x and /bin/x: only the second is known.
		{"coreutils: /bin/basename\n", "coreutils-dbgsym"},
		// Diversions and several owners: not a package name.
		{"diversion by dash from: /bin/sh\n", ""},
		{"pkg-a, pkg-b: /usr/share/x\nbash: /bin/bash\n", "bash-dbgsym"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, dbgsymPackage(tt.out), "%q", tt.out)
	}
}

func TestIsGlibcLibrary(t *testing.T) {
	for name, want := range map[string]bool{
		"libc.so.6": true, "ld-linux-x86-64.so.2": true, "libm.so.6": true, "libnss_files.so.2": true,
		"libpython3.11.so.1.0": false, "libstdc++.so.6": false, "bash": false, "libcrypt.so.1": false,
	} {
		assert.Equal(t, want, isGlibcLibrary(name), name)
	}
}
