package session

import (
	"testing"

	"github.com/stretchr/testify/require"

	"memscope/analyzer/reach"
)

// TestVerdictNote: a verdict goes through the journal's note format
// unchanged, and a note cut short is refused, not read past its end.
func TestVerdictNote(t *testing.T) {
	for _, v := range []verdict{
		{checked: true, addrSum: 0x60, kinds: []reach.Kind{reach.Direct, reach.Reachable, reach.Indirect}},
		{checked: true, kinds: []reach.Kind{}},
		{reason: "cannot stop the process to scan it: operation not permitted", kinds: []reach.Kind{}},
	} {
		note := v.encode()
		padded := append(note, make([]byte, (8-len(note)%8)%8)...) // as the journal keeps it
		got, err := decodeVerdict(padded[8:])                      // after kind and pad
		require.NoError(t, err)
		require.Equal(t, v, got)
		for cut := 8; cut < len(note); cut++ {
			_, err := decodeVerdict(note[8:cut])
			require.Error(t, err, "a note cut to %d of %d bytes", cut, len(note))
		}
	}
}
