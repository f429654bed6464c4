package rooms

import (
	"fmt"
	"slices"
	"testing"
)

func TestActiveLog(t *testing.T) {
	l := newActiveLog(10)
	if _, ok := l.since(9); ok {
		t.Fatal("a window from before the log's start answered")
	}
	if got, ok := l.since(10); !ok || len(got) != 0 {
		t.Fatalf("empty log: %v %v", got, ok)
	}
	l.add("!a", 11)
	l.add("!b", 13)
	l.add("!c", 12) // published after a later position (concurrent writers)
	l.add("!a", 14)
	l.add("!old", 10) // at or before the start: never a sync's news
	rooms := func(from int64) []string {
		t.Helper()
		got, ok := l.since(from)
		if !ok {
			t.Fatalf("since %d: unknown", from)
		}
		if len(slices.Compact(slices.Sorted(slices.Values(got)))) != len(got) {
			t.Fatalf("since %d: %v lists a room twice", from, got)
		}
		return slices.Sorted(slices.Values(got))
	}
	for from, want := range map[int64][]string{10: {"!a", "!b", "!c"}, 11: {"!a", "!b", "!c"}, 12: {"!a", "!b"}, 13: {"!a"}, 14: {}} {
		if got := rooms(from); !slices.Equal(got, want) {
			t.Errorf("since %d: %v, want %v", from, got, want)
		}
	}
	// Past its size the log forgets the oldest and says so.
	for i := range 2 * activeLogSize {
		l.add("!busy", 100+int64(i))
	}
	if _, ok := l.since(50); ok {
		t.Fatal("a window older than what is kept answered")
	}
	last := int64(100 + 2*activeLogSize - 1)
	if got := rooms(last - 1); !slices.Equal(got, []string{"!busy"}) {
		t.Fatalf("recent window: %v", got)
	}
	if len(l.entries) >= 2*activeLogSize {
		t.Fatalf("log grew to %d entries", len(l.entries))
	}
	// Many rooms in a window (more than a woken sync's few).
	for i := range 100 {
		l.add(fmt.Sprint("!many", i%70), last+1+int64(i))
	}
	if got := rooms(last); len(got) != 70 {
		t.Fatalf("window of 100 events in 70 rooms: %d rooms", len(got))
	}
}
