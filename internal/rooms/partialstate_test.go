package rooms

import (
	"encoding/json"
	"testing"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

func memberKey(u string) store.StateKey { return store.StateKey{Type: "m.room.member", StateKey: u} }

// A partial state made complete: what changed since the partial state
// before the join goes on the full state before it, a rejected event's
// change is undone, and an admitted event's change applies after its
// place unless its key changed since.
func TestCompletionFull(t *testing.T) {
	bob, eve := "@bob:a", "@eve:a"
	before := store.StateMap{{Type: "m.room.create"}: "$create", memberKey(bob): "$bobJoin", memberKey(eve): "$eveJoin"}
	partialBefore := store.StateMap{{Type: "m.room.create"}: "$create"}
	c := &completion{before: before, partialBefore: partialBefore, undo: map[string]string{"$forgedBan": "$eveJoin"}}
	kick := &pdu.Event{ID: "$kick", Type: "m.room.member", StateKey: &bob, Content: json.RawMessage(`{"membership":"leave"}`)}
	c.redo = []*admission{{ev: kick, afterPos: 10, replaced: ""}}

	// Before the kick's place: the forged ban is undone, the kick not applied.
	partial := store.StateMap{{Type: "m.room.create"}: "$create", memberKey(eve): "$forgedBan"}
	full, _ := c.full(partial, 10)
	if full[memberKey(bob)] != "$bobJoin" {
		t.Fatalf("bob before the kick's place: %q", full[memberKey(bob)])
	}
	if full[memberKey(eve)] != "$eveJoin" {
		t.Fatalf("eve after her forged ban is undone: %q", full[memberKey(eve)])
	}
	// After it: the kick applies.
	full, delta := c.full(partial, 11)
	if full[memberKey(bob)] != "$kick" || delta[memberKey(bob)] != "$kick" {
		t.Fatalf("bob after the kick's place: %q (delta %q)", full[memberKey(bob)], delta[memberKey(bob)])
	}
	// Unless bob's membership changed since, in the partial state.
	partial[memberKey(bob)] = "$bobRejoin"
	if full, _ := c.full(partial, 11); full[memberKey(bob)] != "$bobRejoin" {
		t.Fatalf("bob after a later change: %q", full[memberKey(bob)])
	}
}
