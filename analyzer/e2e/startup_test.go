package e2e

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestShortRunCollectsNothing: a run that allocates little never starts
// Go's collector (cmd/memscope-analyze/heapfloor.go): the ballast that
// sets the analyzer's heap floor, allocated at start, set one off in
// every run, a tenth of a short run's CPU. GODEBUG=gctrace=1 makes the
// runtime print a line for every collection.
func TestShortRunCollectsNothing(t *testing.T) {
	dir := t.TempDir()
	_, stderr, code := runCLIWith(t, []string{"GOGC=", "GODEBUG=gctrace=1"}, dir,
		"run", "--out", dir, "--", program(t, "reach"), "list")
	assert.Equal(t, 0, code)
	assert.Contains(t, stderr, "exited with status 0")
	assert.Empty(t, regexp.MustCompile(`(?m)^gc \d+ @.*$`).FindAllString(stderr, -1))
}
