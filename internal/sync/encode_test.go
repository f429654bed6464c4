package sync

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"luxchat/internal/roomread"
)

// The hand-written encoder must say exactly what encoding/json would.
func TestJSONMatchesEncodingJSON(t *testing.T) {
	ev := json.RawMessage(`{"type":"m.room.message","content":{"body":"hé \"x\""}}`)
	r := &Response{
		NextBatch: "s1_2_3_4_5_0_0",
		Rooms: &RoomsResp{
			Join: map[string]*JoinedRoom{"!b:x": {
				Summary:   &roomread.Summary{Heroes: []string{"@a:x"}, JoinedMemberCount: 2},
				State:     Events{[]json.RawMessage{ev}},
				Timeline:  Timeline{Events: []json.RawMessage{ev, ev}, Limited: true, PrevBatch: "t5"},
				Ephemeral: Events{[]json.RawMessage{}}, AccountData: Events{[]json.RawMessage{}},
				UnreadNotifications: Unread{NotificationCount: 3, HighlightCount: 1},
			}, "!a:x": emptyJoined(), "!q\"é<\\:x": emptyJoined()},
			Invite: map[string]*InvitedRoom{"!i:x": {InviteState: Events{[]json.RawMessage{ev}}}},
			Leave:  map[string]*LeftRoom{"!l:x": {State: Events{[]json.RawMessage{}}, Timeline: Timeline{Events: []json.RawMessage{ev}}, AccountData: Events{[]json.RawMessage{}}}},
			Knock:  map[string]*KnockedRoom{"!k:x": {KnockState: Events{[]json.RawMessage{ev}}}},
		},
		AccountData:      &Events{[]json.RawMessage{ev}},
		Presence:         &Events{[]json.RawMessage{}},
		ToDevice:         &Events{[]json.RawMessage{ev}},
		DeviceLists:      &DeviceLists{Changed: []string{"@a:x"}},
		OTKCounts:        map[string]int{"signed_curve25519": 3, "curve25519": 0, "x\"é": 1},
		FallbackKeyTypes: []string{"signed_curve25519", "x<"},
	}
	std, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var a, b any
	if err := json.Unmarshal(r.JSON(), &a); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, r.JSON())
	}
	_ = json.Unmarshal(std, &b)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("differs:\n%s\n%s", r.JSON(), std)
	}
	// An empty fallback key list is sent (it tells clients to upload one).
	r.FallbackKeyTypes = []string{}
	if !strings.Contains(string(r.JSON()), `"device_unused_fallback_key_types":[]`) {
		t.Fatal("empty fallback key types omitted")
	}
	empty := &Response{NextBatch: "s0"}
	if string(empty.JSON()) != `{"next_batch":"s0"}` {
		t.Fatalf("%s", empty.JSON())
	}
}
