package main

// Placeholder keeping the project's chosen dependencies in go.mod until the
// packages that use them land. Removed when main.go exists.
import (
	_ "github.com/edsrzf/mmap-go"
	_ "github.com/google/pprof/profile"
	_ "github.com/ianlancetaylor/demangle"
	_ "github.com/spf13/cobra"
	_ "github.com/stretchr/testify/require"
	_ "golang.org/x/sys/unix"
)

func main() {}
