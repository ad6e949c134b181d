package live

import (
	"context"
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

// TestBoardSourceBuildsAViewOnce: readers of one published state share
// its View; the next state gets its own.
func TestBoardSourceBuildsAViewOnce(t *testing.T) {
	var b Board
	src := NewBoardSource(&b, "")
	b.Publish(&State{EventsApplied: 1})
	v1, err := src.State(context.Background())
	assert.NoError(t, err)
	again, err := src.State(context.Background())
	assert.NoError(t, err)
	assert.Same(t, v1, again)
	b.Publish(&State{EventsApplied: 2})
	v2, err := src.State(context.Background())
	assert.NoError(t, err)
	assert.NotSame(t, v1, v2)
	assert.Equal(t, uint64(1), v1.EventsApplied)
	assert.Equal(t, uint64(2), v2.EventsApplied)
}
