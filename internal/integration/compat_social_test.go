package integration

import (
	"slices"
	"strings"
	"testing"

	ts "luxchat/internal/testserver"
)

// registerAs registers a user with an exact localpart.
func registerAs(t *testing.T, s *ts.Server, localpart string) *ts.Client {
	t.Helper()
	c := s.Anonymous(t)
	var resp struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
		DeviceID    string `json:"device_id"`
	}
	c.MustDo("POST", "/_matrix/client/v3/register", map[string]any{
		"username": localpart, "password": "correct horse battery", "auth": map[string]string{"type": "m.login.dummy"},
	}, &resp)
	c.UserID, c.Token, c.DeviceID = resp.UserID, resp.AccessToken, resp.DeviceID
	return c
}

// A room mate finds a user by the start of their user id and by their
// public name, sees the public name (not the name the user chose for
// one room), and is not among their own results; a stranger finds
// nobody who did not opt in, and never by a room-specific name.
func TestUserDirectoryRoomMatesAndStrangers(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := registerAs(t, s, "dir-1-alice")
		bob := registerAs(t, s, "dir-2-bob")
		eve := registerAs(t, s, "dir-3-eve")
		setName(t, alice, "Alice Cooper")
		room := bob.CreateRoom(map[string]any{"invite": []string{alice.UserID}})
		alice.Join(room)
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.member/"+esc(alice.UserID),
			map[string]any{"membership": "join", "displayname": "Freddy"}, nil)

		justAlice := func(who string, r dirResults) {
			t.Helper()
			if len(r.Results) != 1 || r.Results[0].UserID != alice.UserID || r.Results[0].DisplayName != "Alice Cooper" {
				t.Errorf("%s: got %+v, want only %s as Alice Cooper", who, r.Results, alice.UserID)
			}
		}
		idStart := strings.Split(alice.UserID, "-")[0] // "@dir"
		justAlice("room mate by id start", search(t, bob, idStart, 0))
		justAlice("room mate by public name", search(t, bob, "Alice Cooper", 0))
		if r := search(t, eve, "Freddy", 0); len(r.Results) != 0 {
			t.Errorf("stranger by room-specific name: %v", r.ids())
		}
		// Alice never opted in: strangers do not find her.
		if r := search(t, eve, "Alice Cooper", 0); len(r.Results) != 0 {
			t.Errorf("stranger found a user who did not opt in: %v", r.ids())
		}
		optIn(t, alice, true)
		justAlice("stranger after opt-in, by public name", search(t, eve, "Alice Cooper", 0))
		justAlice("stranger after opt-in, by id start", search(t, eve, idStart, 0))
		if r := search(t, eve, "Freddy", 0); len(r.Results) != 0 {
			t.Errorf("stranger by room-specific name after opt-in: %v", r.ids())
		}
	})
}

// A whole user id finds that user only, not others whose names share
// its words, and only when the searcher may see them.
func TestUserDirectoryExactUserID(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		me := s.Register(t, "finder")
		target := registerAs(t, s, "exact-target")
		lookalike := registerAs(t, s, "exact-target-two")
		hidden := registerAs(t, s, "exact-hidden")
		setName(t, lookalike, "exact target")
		optIn(t, target, true)
		optIn(t, lookalike, true)
		if r := search(t, me, target.UserID, 0); !slices.Equal(r.ids(), []string{target.UserID}) {
			t.Errorf("search %s = %v, want just that user", target.UserID, r.ids())
		}
		if r := search(t, me, "exact target", 0); len(r.Results) != 2 {
			t.Errorf("words still find both: %v", r.ids())
		}
		if r := search(t, me, hidden.UserID, 0); len(r.Results) != 0 {
			t.Errorf("a user who did not opt in was found by id: %v", r.ids())
		}
		if r := search(t, me, me.UserID, 0); len(r.Results) != 0 {
			t.Errorf("own id: %v", r.ids())
		}
	})
}
