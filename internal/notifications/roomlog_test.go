package notifications

import (
	"fmt"
	"testing"

	"luxchat/internal/store"
)

func TestCountsFromRoomLog(t *testing.T) {
	c := newCountCache(9)
	const room, alice, bob = "!r:hs", "@alice:hs", "@bob:hs"
	notify := func(pos int64, thread string, highlight bool) note {
		return note{pos: pos, thread: thread, recipients: []store.StagedRecipient{{UserID: alice, Highlight: highlight}}}
	}
	c.record(room, notify(10, "main", false))
	base := &countEntry{asOf: 10, threads: []store.ThreadCount{{RoomID: room, ThreadID: "main", Notify: 1}}}

	c.record(room, notify(11, "main", true))
	c.record(room, notify(12, "$root", false))
	c.record(room, note{pos: 13, thread: "main", recipients: []store.StagedRecipient{{UserID: bob}}})
	c.mu.Lock()
	e, ok := c.fromLog(alice, room, base, 13)
	c.mu.Unlock()
	if !ok {
		t.Fatal("log does not cover (10, 13]")
	}
	want := map[string][2]int64{"main": {2, 1}, "$root": {1, 0}}
	for _, tc := range e.threads {
		if got := [2]int64{tc.Notify, tc.Highlight}; got != want[tc.ThreadID] {
			t.Errorf("thread %s: %v, want %v", tc.ThreadID, got, want[tc.ThreadID])
		}
	}
	if len(e.threads) != 2 {
		t.Fatalf("threads %v", e.threads)
	}

	// Alice sends in the main timeline: it is read up to there.
	c.record(room, note{pos: 14, thread: "main", sentBy: alice})
	c.record(room, notify(15, "main", false))
	c.mu.Lock()
	e2, _ := c.fromLog(alice, room, e, 15)
	c.mu.Unlock()
	for _, tc := range e2.threads {
		if tc.ThreadID == "main" && (tc.Notify != 1 || tc.Highlight != 0) {
			t.Fatalf("main after sending: %+v", tc)
		}
		if tc.ThreadID == "$root" && tc.Notify != 1 {
			t.Fatalf("thread after sending in main: %+v", tc)
		}
	}

	// A moved receipt, an older count than the log, or a redaction (the
	// log dropped) all need the database.
	c.readMoved(alice, room)
	c.mu.Lock()
	_, ok = c.fromLog(alice, room, e2, 15)
	c.mu.Unlock()
	if ok {
		t.Fatal("counted from the log after the receipt moved")
	}
	c.mu.Lock()
	_, ok = c.fromLog(alice, room, &countEntry{asOf: 5, readVer: c.reads[[2]string{alice, room}]}, 15)
	c.mu.Unlock()
	if ok {
		t.Fatal("counted from the log before its start")
	}
	c.dropRoom(room)
	c.mu.Lock()
	_, ok = c.fromLog(alice, room, &countEntry{asOf: 14, readVer: c.reads[[2]string{alice, room}]}, 15)
	c.mu.Unlock()
	if ok {
		t.Fatal("counted from a dropped log")
	}
}

// A room with nothing logged had no notifications since the floor: a
// count from after it stands; one from before it does not, nor one from
// before the logs started over.
func TestCountsOfRoomWithoutLog(t *testing.T) {
	c := newCountCache(100)
	const room, other, alice = "!r:hs", "!o:hs", "@alice:hs"
	e := &countEntry{asOf: 100, threads: []store.ThreadCount{{RoomID: room, ThreadID: "main", Notify: 3}}}
	c.mu.Lock()
	got, ok := c.fromLog(alice, room, e, 120)
	_, okOld := c.fromLog(alice, room, &countEntry{asOf: 99}, 120)
	c.mu.Unlock()
	if !ok || got.asOf != 120 || len(got.threads) != 1 || got.threads[0].Notify != 3 {
		t.Fatalf("idle room: %+v %v", got, ok)
	}
	if okOld {
		t.Fatal("counted from before the process's start")
	}
	// Another room's note at 130 was logged; then the logs start over.
	c.record(other, note{pos: 130, thread: "main", recipients: []store.StagedRecipient{{UserID: alice}}})
	c.mu.Lock()
	c.logs = map[string]*roomLog{}
	for i := range maxLogRooms {
		c.logs[fmt.Sprint(i)] = &roomLog{}
	}
	c.mu.Unlock()
	c.record(other, note{pos: 131, thread: "main", recipients: []store.StagedRecipient{{UserID: alice}}})
	c.mu.Lock()
	_, ok = c.fromLog(alice, room, e, 131)
	c.mu.Unlock()
	if ok {
		t.Fatal("counted from before the logs started over")
	}
}
