package integration

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

// makeAdmin grants u server administration and returns a fresh session.
func makeAdmin(t testing.TB, s *ts.Server, u *ts.Client) *ts.Client {
	t.Helper()
	ctx := context.Background()
	if err := s.Store.InTx(ctx, func(tx *store.Tx) error { return tx.SetAdmin(ctx, u.UserID, true) }); err != nil {
		t.Fatal(err)
	}
	c := s.Anonymous(t)
	var resp struct {
		AccessToken string `json:"access_token"`
	}
	c.MustDo("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": u.UserID}, "password": "correct horse battery"}, &resp)
	c.UserID, c.Token = u.UserID, resp.AccessToken
	return c
}

func TestServerNotices(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		bob, eve := s.Register(t, "bob"), s.Register(t, "eve")
		notice := func(c *ts.Client, body any) *ts.Response {
			return c.Do("POST", "/_synapse/admin/v1/send_server_notice", body)
		}
		send := map[string]any{"user_id": bob.UserID, "content": map[string]any{"msgtype": "m.text", "body": "Maintenance tonight at 22:00",
			"server_notice_type": "m.server_notice.usage_limit_reached", "limit_type": "monthly_active_user", "admin_contact": "mailto:ops@example.org"}}

		// Only administrators may send notices.
		if r := notice(eve, send); r.Status != http.StatusForbidden || r.ErrCode() != "M_FORBIDDEN" {
			t.Fatalf("non-admin: %d %s", r.Status, r.Body)
		}
		if r := notice(s.Anonymous(t), send); r.Status != http.StatusUnauthorized {
			t.Fatalf("anonymous: %d %s", r.Status, r.Body)
		}
		for _, bad := range []map[string]any{
			{"user_id": "@ghost:localhost", "content": map[string]any{"body": "x"}},
			{"user_id": bob.UserID},
			{"user_id": bob.UserID, "content": map[string]any{"body": ""}},
			{"content": map[string]any{"body": "x"}},
		} {
			if r := notice(admin, bad); r.Status != http.StatusNotFound && r.Status != http.StatusBadRequest {
				t.Fatalf("bad notice %v: %d %s", bad, r.Status, r.Body)
			}
		}
		var sent struct {
			EventID string `json:"event_id"`
		}
		admin.MustDo("POST", "/_synapse/admin/v1/send_server_notice", send, &sent)
		if sent.EventID == "" {
			t.Fatal("no event id")
		}

		// Bob is invited to a room, which he cannot reject.
		sy := doSync(t, bob, "timeout=0")
		if len(sy.Rooms.Invite) != 1 {
			t.Fatalf("invites: %+v", sy.Rooms.Invite)
		}
		var room string
		for id := range sy.Rooms.Invite {
			room = id
		}
		if r := bob.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}); r.Status != http.StatusForbidden || r.ErrCode() != "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM" {
			t.Fatalf("reject invite: %d %s", r.Status, r.Body)
		}
		if r := bob.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/kick", map[string]string{"user_id": bob.UserID}); r.Status != http.StatusForbidden || r.ErrCode() != "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM" {
			t.Fatalf("reject invite by kicking oneself: %d %s", r.Status, r.Body)
		}
		bob.Join(room)

		// The room is tagged m.server_notice and holds the notice.
		var tags struct {
			Tags map[string]any `json:"tags"`
		}
		bob.MustDo("GET", fmt.Sprintf("/_matrix/client/v3/user/%s/rooms/%s/tags", esc(bob.UserID), esc(room)), nil, &tags)
		if _, ok := tags.Tags["m.server_notice"]; !ok {
			t.Fatalf("tags: %+v", tags)
		}
		p := messages(t, bob, room, "dir=b&limit=50")
		var got *event
		for i, e := range p.Chunk {
			if e.EventID == sent.EventID {
				got = &p.Chunk[i]
			}
		}
		if got == nil || got.Sender != "@notices:localhost" || got.Content["msgtype"] != "m.server_notice" || got.Content["body"] != "Maintenance tonight at 22:00" ||
			got.Content["server_notice_type"] != "m.server_notice.usage_limit_reached" || got.Content["admin_contact"] != "mailto:ops@example.org" {
			t.Fatalf("notice event: %+v", got)
		}
		// A typed notice is the active (pinned) one of its type.
		pinned := func() []any {
			var pe struct {
				Pinned []any `json:"pinned"`
			}
			bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.pinned_events", nil, &pe)
			return pe.Pinned
		}
		if p := pinned(); len(p) != 1 || p[0] != sent.EventID {
			t.Fatalf("pinned: %v", p)
		}
		var again struct {
			EventID string `json:"event_id"`
		}
		admin.MustDo("POST", "/_synapse/admin/v1/send_server_notice", map[string]any{"user_id": bob.UserID,
			"content": map[string]any{"body": "still over the limit", "server_notice_type": "m.server_notice.usage_limit_reached"}}, &again)
		if p := pinned(); len(p) != 1 || p[0] != again.EventID {
			t.Fatalf("pinned after a second notice of the type: %v", p)
		}

		// Nobody can log in as the notices user.
		if r := s.Anonymous(t).Do("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
			"identifier": map[string]string{"type": "m.id.user", "user": "notices"}, "password": ""}); r.Status == http.StatusOK {
			t.Fatal("logged in as the notices user")
		}

		// Bob cannot post, change the room or invite anyone there.
		if r := bob.Do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.room.message/n1", map[string]string{"msgtype": "m.text", "body": "hi"}); r.Status != http.StatusForbidden {
			t.Fatalf("bob sent in the notices room: %d %s", r.Status, r.Body)
		}
		if r := bob.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]string{"user_id": eve.UserID}); r.Status != http.StatusForbidden {
			t.Fatalf("bob invited into the notices room: %d %s", r.Status, r.Body)
		}
		if r := eve.Do("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{}); r.Status != http.StatusForbidden {
			t.Fatalf("eve joined the notices room: %d %s", r.Status, r.Body)
		}

		// The next notice goes to the same room (untyped: not pinned);
		// after bob left, he is invited back to it.
		admin.MustDo("POST", "/_synapse/admin/v1/send_server_notice", map[string]any{"user_id": bob.UserID, "content": map[string]any{"body": "second"}}, nil)
		if p := pinned(); len(p) != 1 {
			t.Fatalf("an untyped notice was pinned: %v", p)
		}
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		admin.MustDo("POST", "/_synapse/admin/v1/send_server_notice", map[string]any{"user_id": bob.UserID, "content": map[string]any{"body": "third"}}, nil)
		sy = doSync(t, bob, "timeout=0")
		if _, ok := sy.Rooms.Invite[room]; !ok || len(sy.Rooms.Invite) != 1 {
			t.Fatalf("not re-invited to the same room: %+v", sy.Rooms.Invite)
		}
		bob.Join(room)
		if b := bodies(messages(t, bob, room, "dir=b&limit=50").Chunk); len(b) != 4 || b[0] != "third" || b[1] != "second" {
			t.Fatalf("notices: %v", b)
		}
	})
}
