package integration

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	ts "luxchat/internal/testserver"
)

// pjTemplate asks to (resident) for a make_<membership> template for
// userID of from, and signs it as from.
func pjTemplate(t *testing.T, from, to *ts.Server, roomID, userID, membership string) *pdu.Event {
	t.Helper()
	var mk struct {
		RoomVersion string `json:"room_version"`
		Event       struct {
			Type       string          `json:"type"`
			StateKey   *string         `json:"state_key"`
			Content    json.RawMessage `json:"content"`
			PrevEvents []string        `json:"prev_events"`
			AuthEvents []string        `json:"auth_events"`
			Depth      int64           `json:"depth"`
		} `json:"event"`
	}
	uri := "/_matrix/federation/v1/make_" + membership + "/" + url.PathEscape(roomID) + "/" + url.PathEscape(userID)
	if membership != "leave" {
		uri += "?ver=" + roomversion.Default
	}
	if err := frGet(from, to, "GET", uri, nil, &mk); err != nil {
		t.Fatalf("make_%s: %v", membership, err)
	}
	v, _ := roomversion.Get(mk.RoomVersion)
	e := mk.Event
	ev, err := pdu.Build(pdu.Proto{RoomID: roomID, Sender: userID, Type: e.Type, StateKey: e.StateKey, Content: e.Content,
		PrevEvents: e.PrevEvents, AuthEvents: e.AuthEvents, Depth: e.Depth, OriginServerTS: time.Now().UnixMilli()}, v, from.Config.ServerName, from.Key)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// The deprecated v1 send_join and send_leave answer [200, {...}] and
// refuse events of another membership like v2 does.
func TestFedSendJoinLeaveV1(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice := p.a.Register(t, "alice")
		roomID := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		zed := "@zed:" + p.b.Config.ServerName
		fed := "/_matrix/federation/v1/"

		// A leave through send_join, a join through send_leave: 400.
		leave := frBuild(t, p.b, roomID, zed, "m.room.member", &zed, map[string]any{"membership": "leave"}, []string{frLatest(t, p.a, roomID)}, frAuth(t, p.a, roomID, zed), 10)
		err := frGet(p.b, p.a, "PUT", fed+"send_join/"+url.PathEscape(roomID)+"/"+url.PathEscape(leave.ID), json.RawMessage(leave.JSON()), nil)
		if err == nil || !strings.Contains(err.Error(), "400") {
			t.Fatalf("a leave through v1 send_join: %v", err)
		}
		join := pjTemplate(t, p.b, p.a, roomID, zed, "join")
		err = frGet(p.b, p.a, "PUT", fed+"send_leave/"+url.PathEscape(roomID)+"/"+url.PathEscape(join.ID), json.RawMessage(join.JSON()), nil)
		if err == nil || !strings.Contains(err.Error(), "400") {
			t.Fatalf("a join through v1 send_leave: %v", err)
		}

		var res []json.RawMessage
		if err := frGet(p.b, p.a, "PUT", fed+"send_join/"+url.PathEscape(roomID)+"/"+url.PathEscape(join.ID), json.RawMessage(join.JSON()), &res); err != nil {
			t.Fatalf("v1 send_join: %v", err)
		}
		var body struct {
			Origin    string            `json:"origin"`
			State     []json.RawMessage `json:"state"`
			AuthChain []json.RawMessage `json:"auth_chain"`
		}
		if len(res) != 2 || string(res[0]) != "200" || json.Unmarshal(res[1], &body) != nil || body.Origin != p.a.Config.ServerName || len(body.State) < 4 || len(body.AuthChain) == 0 {
			t.Fatalf("v1 send_join answered %s", res)
		}
		if m := frMembership(t, alice, roomID, zed); m != "join" {
			t.Fatalf("zed's membership after v1 send_join: %q", m)
		}

		leave = pjTemplate(t, p.b, p.a, roomID, zed, "leave")
		res = nil
		if err := frGet(p.b, p.a, "PUT", fed+"send_leave/"+url.PathEscape(roomID)+"/"+url.PathEscape(leave.ID), json.RawMessage(leave.JSON()), &res); err != nil {
			t.Fatalf("v1 send_leave: %v", err)
		}
		if len(res) != 2 || string(res[0]) != "200" || string(res[1]) != "{}" {
			t.Fatalf("v1 send_leave answered %s", res)
		}
		if m := frMembership(t, alice, roomID, zed); m != "leave" {
			t.Fatalf("zed's membership after v1 send_leave: %q", m)
		}
	})
}
