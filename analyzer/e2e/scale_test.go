package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestThousandThreads runs testdata/crowd.c: 1000 threads allocating at
// once on 2 cores, then 100000 short threads one after another (issue 18
// §4). However late some events arrive, no event is dropped, every free
// meets its block and every site's counts are the program's own.
func TestThousandThreads(t *testing.T) {
	const threads, rounds, shorts = 1000, 100, 100000
	a := analyze(t, nil, program(t, "crowd"), fmt.Sprint(threads), fmt.Sprint(rounds), fmt.Sprint(shorts))
	require.Equal(t, 0, a.exitCode, "stderr:\n%s", a.stderr)
	m := a.main(t)
	assert.True(t, m.Complete, "complete")
	assert.Zero(t, m.Totals.DroppedEvents, "dropped events")
	assert.Zero(t, m.LeakedObjects, "leaked objects: everything is kept in kept[]")
	if unknown := regexp.MustCompile(`frees of unknown blocks: (\d+)`).FindStringSubmatch(a.stderr); unknown != nil {
		assert.Equal(t, "0", unknown[1], "frees of unknown blocks")
	}

	// Per site, from the exit profile: [alloc_objects, alloc_space,
	// inuse_objects, inuse_space] summed over the samples whose innermost
	// frame is the site's function.
	type counts struct{ allocObjects, allocBytes, inuseObjects, inuseBytes int64 }
	got := map[string]counts{}
	exit := parseProfile(t, filepath.Join(a.dir, fmt.Sprintf("memscope.crowd.%d.pb.gz", m.Pid)))
	for _, s := range exit.Sample {
		fn := s.Location[0].Line[0].Function.Name
		c := got[fn]
		c.allocObjects += s.Value[0]
		c.allocBytes += s.Value[1]
		c.inuseObjects += s.Value[2]
		c.inuseBytes += s.Value[3]
		got[fn] = c
	}
	// crowd_round: thread n allocates 16*(n%8+1) bytes each round; the
	// 1000 threads cover n%8 = 0..7 125 times each.
	var roundBytes int64
	for n := 0; n < threads; n++ {
		roundBytes += rounds * 16 * int64(n%8+1)
	}
	want := map[string]counts{
		"crowd_round": {threads * rounds, roundBytes, 0, 0},
		"crowd_keep":  {threads, threads * 24, threads, threads * 24},
		"short_round": {shorts, shorts * 40, 0, 0},
	}
	for fn, w := range want {
		assert.Equal(t, w, got[fn], "site %s", fn)
	}

	// The kept blocks are one reachable group of the leak report.
	var kept []string
	for _, l := range m.Leaks {
		if len(l.Frames) > 0 && l.Frames[0].Function == "crowd_keep" {
			kept = append(kept, fmt.Sprintf("%s %d objects %d bytes", l.Kind, l.Objects, l.Bytes))
		}
	}
	assert.Equal(t, []string{fmt.Sprintf("reachable %d objects %d bytes", threads, threads*24)}, kept)
}
