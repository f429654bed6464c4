package integration

import (
	"slices"
	"testing"
	"time"
)

// TestSlidingSyncPartialStateRoom: a room joined with partial state
// (members omitted by the resident server) is shown at once by a list
// that lazy-loads members, with the members its timeline needs, and is
// hidden from a list that asks for every member (not even counted) until
// its full state has come; then that list shows it with all its members.
func TestSlidingSyncPartialStateRoom(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		roomID, _ := pjRoom(t, p.a, "bob", "carol", "dan", "erin", "frank")
		zoe := p.a.Register(t, "zoe")
		zoe.Join(roomID)
		dave, release := pjJoinHeld(t, p, roomID)
		defer release()
		if !p.b.Rooms.IsPartialState(roomID) {
			t.Fatal("the room is not partial after a join with members omitted")
		}
		lazyBody := map[string]any{"conn_id": "lazy", "lists": map[string]any{"a": allList([2]int{0, 9}, 5, [][]string{{"m.room.member", "$LAZY"}})}}
		fullBody := map[string]any{"conn_id": "full", "lists": map[string]any{"a": allList([2]int{0, 9}, 5, [][]string{{"m.room.member", "*"}})}}
		subBody := map[string]any{"conn_id": "sub", "room_subscriptions": map[string]any{roomID: map[string]any{"timeline_limit": 5, "required_state": [][]string{{"*", "*"}}}}}
		lazy := slide(t, dave, "", 0, lazyBody)
		full := slide(t, dave, "", 0, fullBody)
		sub := slide(t, dave, "", 0, subBody)
		zoe.SendText(roomID, "from zoe")

		// The lazy list: the room, zoe's message and her member event.
		deadline := time.Now().Add(15 * time.Second)
		for {
			lazy = slide(t, dave, lazy.Pos, 500, lazyBody)
			if rm, ok := lazy.Rooms[roomID]; ok && slices.Contains(ssBodies(rm), "from zoe") {
				if !slices.Contains(stateTypes(rm), "m.room.member|"+zoe.UserID) {
					t.Fatalf("lazy list without zoe's member event: %v", stateTypes(rm))
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the lazy list never showed the partial-state room with zoe's message")
			}
		}
		// The list asking for every member and the subscription asking for
		// all state: not shown, not counted.
		full = slide(t, dave, full.Pos, 0, fullBody)
		if _, ok := full.Rooms[roomID]; ok || full.Lists["a"].Count != 0 {
			t.Fatalf("a partial-state room in a list needing its members: count %d, rooms %v", full.Lists["a"].Count, ssKeys(full.Rooms))
		}
		sub = slide(t, dave, sub.Pos, 0, subBody)
		if _, ok := sub.Rooms[roomID]; ok {
			t.Fatal("a partial-state room sent to a subscription asking for all its state")
		}

		// The full state comes: the room is shown, with every member.
		release()
		pjWaitFull(t, p.b, roomID)
		members := func(rm ssRoom) int {
			n := 0
			for _, e := range rm.RequiredState {
				if e.Type == "m.room.member" {
					n++
				}
			}
			return n
		}
		full = slide(t, dave, full.Pos, 0, fullBody)
		if rm, ok := full.Rooms[roomID]; !ok || !rm.Initial || members(rm) < 8 || full.Lists["a"].Count != 1 {
			t.Fatalf("after the full state: count %d, %d members, %+v", full.Lists["a"].Count, members(rm), rm)
		}
		sub = slide(t, dave, sub.Pos, 0, subBody)
		if rm, ok := sub.Rooms[roomID]; !ok || members(rm) < 8 {
			t.Fatalf("subscription after the full state: %+v", sub.Rooms)
		}
	})
}
