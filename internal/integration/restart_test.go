package integration

import (
	"context"
	"slices"
	"testing"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// After a restart a room continues its event graph from its newest event:
// prev_events and depth follow on, and history reads in order.
func TestRestartContinuesRoomGraph(t *testing.T) {
	dir := t.TempDir()
	withDir := ts.WithConfig(func(c *config.Config) { c.DataDir = dir })
	s1 := ts.New(t, withDir)
	alice := s1.Register(t, "alice")
	room := alice.CreateRoom(map[string]any{})
	before := alice.SendText(room, "before restart")
	if err := s1.Stop(); err != nil {
		t.Fatal(err)
	}

	s2 := ts.New(t, withDir)
	alice.URL = s2.URL
	after := alice.SendText(room, "after restart")
	ctx := context.Background()
	prev, err := s2.Rooms.Event(ctx, before)
	if err != nil {
		t.Fatal(err)
	}
	next, err := s2.Rooms.Event(ctx, after)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(next.PrevEvents, []string{before}) || next.Depth != prev.Depth+1 {
		t.Fatalf("after restart: prev_events %v depth %d; want [%s] and %d", next.PrevEvents, next.Depth, before, prev.Depth+1)
	}
	got := bodies(messages(t, alice, room, "dir=b&limit=2").Chunk)
	if !slices.Equal(got, []string{"after restart", "before restart"}) {
		t.Fatalf("history %v", got)
	}
}
