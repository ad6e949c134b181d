package live

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestBoardRead: a published state counts as read once a reader loaded
// it, until the next one is published.
func TestBoardRead(t *testing.T) {
	var b Board
	assert.True(t, b.Read(), "nothing published: nothing waits to be read")
	assert.Nil(t, b.Load())
	s1, s2 := &State{EventsApplied: 1}, &State{EventsApplied: 2}
	b.Publish(s1)
	assert.False(t, b.Read())
	assert.Same(t, s1, b.Load())
	assert.True(t, b.Read())
	assert.Same(t, s1, b.Load())
	b.Publish(s2)
	assert.False(t, b.Read())
	assert.Same(t, s2, b.Load())
	assert.True(t, b.Read())
}
