package integration

import (
	"encoding/json"
	"testing"

	ts "luxchat/internal/testserver"
)

// TestCallEventsRing: the m.call.* signalling of a 1:1 call passes as
// ordinary room events, and the invite, alone of them, notifies the
// callee with the ringing sound of .m.rule.call.
func TestCallEventsRing(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		call := map[string]any{"call_id": "c1", "party_id": "ALICEPRT", "version": "1"}
		with := func(extra map[string]any) map[string]any {
			m := map[string]any{}
			for k, v := range call {
				m[k] = v
			}
			for k, v := range extra {
				m[k] = v
			}
			return m
		}
		sdp := map[string]any{"type": "offer", "sdp": "v=0\r\n"}
		invite := alice.Send(room, "m.call.invite", with(map[string]any{"lifetime": 90000, "offer": sdp, "invitee": bob.UserID}))
		sent := []string{"m.call.invite"}
		for _, ev := range []struct {
			typ     string
			content map[string]any
		}{
			{"m.call.candidates", with(map[string]any{"candidates": []any{map[string]any{"candidate": "candidate:1 1 UDP 1 203.0.113.1 3478 typ relay", "sdpMid": "0", "sdpMLineIndex": 0}}})},
			{"m.call.negotiate", with(map[string]any{"lifetime": 10000, "description": sdp})},
			{"m.call.hangup", with(map[string]any{"reason": "user_hangup"})},
		} {
			alice.Send(room, ev.typ, ev.content)
			sent = append(sent, ev.typ)
		}
		// The invite rings bob; nothing else of alice's notifies him (his own
		// events, next, read the room).
		var p struct {
			Notifications []struct {
				Actions []json.RawMessage `json:"actions"`
				Event   event             `json:"event"`
			} `json:"notifications"`
		}
		bob.MustDo("GET", "/_matrix/client/v3/notifications", nil, &p)
		if len(p.Notifications) != 1 || p.Notifications[0].Event.EventID != invite {
			t.Fatalf("bob's notifications %+v", p)
		}
		var actions []any
		for _, a := range p.Notifications[0].Actions {
			var v any
			if err := json.Unmarshal(a, &v); err != nil {
				t.Fatal(err)
			}
			actions = append(actions, v)
		}
		rings := false
		for _, a := range actions {
			if m, ok := a.(map[string]any); ok && m["set_tweak"] == "sound" && m["value"] == "ring" {
				rings = true
			}
		}
		if len(actions) == 0 || actions[0] != "notify" || !rings {
			t.Fatalf("the invite's actions %v do not ring", actions)
		}
		if got := syncCounts(t, bob, "").Rooms.Join[room].Unread; got.NotificationCount != 1 || got.HighlightCount != 0 {
			t.Fatalf("bob's counts %+v", got)
		}
		bobParty := map[string]any{"call_id": "c1", "party_id": "BOBPARTY", "version": "1"}
		for _, typ := range []string{"m.call.answer", "m.call.select_answer", "m.call.reject"} {
			content := map[string]any{"answer": map[string]any{"type": "answer", "sdp": "v=0\r\n"}, "selected_party_id": "ALICEPRT"}
			for k, v := range bobParty {
				content[k] = v
			}
			if typ == "m.call.select_answer" {
				alice.Send(room, typ, with(map[string]any{"selected_party_id": "BOBPARTY"}))
			} else {
				bob.Send(room, typ, content)
			}
			sent = append(sent, typ)
		}

		// Every event reaches the other side as sent.
		var seen []string
		for _, ev := range messages(t, bob, room, "dir=b&limit=50").Chunk {
			if len(ev.Type) > 7 && ev.Type[:7] == "m.call." {
				seen = append([]string{ev.Type}, seen...)
				if ev.Content["call_id"] != "c1" {
					t.Errorf("%s content %v", ev.Type, ev.Content)
				}
			}
		}
		if len(seen) != len(sent) {
			t.Fatalf("bob sees %v, sent %v", seen, sent)
		}

	})
}
