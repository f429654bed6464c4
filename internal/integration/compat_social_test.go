package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"luxchat/internal/config"
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

// unencrypted is a server whose private rooms are not encrypted by
// default, so their messages are searchable.
func unencrypted() ts.Option {
	return ts.WithConfig(func(c *config.Config) { c.Encryption.Default = false })
}

// A full page of search results always carries next_batch; the page
// after the last result is empty, keeps the total count and has none.
func TestSearchFullPagesOfferNextBatch(t *testing.T) {
	forEachEngineWith(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "private_chat"})
		var ids []string
		for i := range 20 {
			ids = append(ids, alice.SendText(room, fmt.Sprintf("Message number %d", i)))
		}
		c := map[string]any{"keys": []string{"content.body"}, "search_term": "Message", "order_by": "recent",
			"filter": map[string]any{"limit": 10, "rooms": []string{room}}}
		next := ""
		for page, want := range [][2]string{{ids[19], ids[10]}, {ids[9], ids[0]}} {
			re := searchFor(t, alice, next, c)
			if re.Count != 20 || len(re.Results) != 10 || re.NextBatch == "" ||
				re.Results[0].Result.EventID != want[0] || re.Results[9].Result.EventID != want[1] {
				t.Fatalf("page %d: count %d, %d results, next_batch %q", page+1, re.Count, len(re.Results), re.NextBatch)
			}
			next = re.NextBatch
		}
		if re := searchFor(t, alice, next, c); re.Count != 20 || len(re.Results) != 0 || re.NextBatch != "" {
			t.Fatalf("past the end: count %d, %d results, next_batch %q", re.Count, len(re.Results), re.NextBatch)
		}

		// One result asked for, one found: still a next_batch, and the
		// context around it.
		re := searchFor(t, alice, "", map[string]any{"keys": []string{"content.body"}, "search_term": "Message 4", "order_by": "recent",
			"filter": map[string]any{"limit": 1, "rooms": []string{room}}, "event_context": map[string]any{"before_limit": 2, "after_limit": 2}})
		if re.Count != 1 || len(re.Results) != 1 || re.NextBatch == "" || re.Results[0].Context == nil {
			t.Fatalf("limit 1: %+v", re)
		}
		ctx := re.Results[0].Context
		if !slices.Equal(bodies(ctx.EventsBefore), []string{"Message number 3", "Message number 2"}) ||
			!slices.Equal(bodies(ctx.EventsAfter), []string{"Message number 5", "Message number 6"}) {
			t.Fatalf("context: %v %v", bodies(ctx.EventsBefore), bodies(ctx.EventsAfter))
		}
	}, unencrypted())
}

// Search covers an upgraded room and its predecessor, and never shows a
// redacted message, in either order.
func TestSearchUpgradedAndRedacted(t *testing.T) {
	forEachEngineWith(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		old := alice.CreateRoom(map[string]any{"preset": "private_chat", "room_version": "8"})
		before := alice.SendText(old, "Message before upgrade")
		var up struct {
			ReplacementRoom string `json:"replacement_room"`
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(old)+"/upgrade", map[string]string{"new_version": "9"}, &up)
		after := alice.SendText(up.ReplacementRoom, "Message after upgrade")
		re := searchFor(t, alice, "", map[string]any{"keys": []string{"content.body"}, "search_term": "upgrade",
			"filter": map[string]any{"rooms": []string{old, up.ReplacementRoom}}})
		var got []string
		for _, r := range re.Results {
			got = append(got, r.Result.EventID)
		}
		slices.Sort(got)
		want := []string{before, after}
		slices.Sort(want)
		if re.Count != 2 || !slices.Equal(got, want) {
			t.Fatalf("across the upgrade: count %d, %v, want %v", re.Count, got, want)
		}

		room := alice.CreateRoom(map[string]any{"preset": "private_chat"})
		gone := alice.SendText(room, "This message is going to be redacted")
		kept := alice.SendText(room, "This message is not going to be redacted")
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(gone)+"/r1", map[string]string{"reason": "testing"}, nil)
		for _, order := range []string{"rank", "recent"} {
			re := searchFor(t, alice, "", map[string]any{"keys": []string{"content.body"}, "search_term": "redacted", "order_by": order,
				"filter": map[string]any{"rooms": []string{room}}})
			if len(re.Results) != 1 || re.Results[0].Result.EventID != kept {
				t.Fatalf("%s: %d results", order, len(re.Results))
			}
		}
	}, unencrypted())
}

// Private rooms are encrypted by default and encrypted rooms are never
// indexed: a plain-text message sent there is not found.
func TestSearchSkipsDefaultEncryptedRooms(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "private_chat"})
		alice.SendText(room, "hello, world")
		re := searchFor(t, alice, "", map[string]any{"search_term": "hello", "filter": map[string]any{"rooms": []string{room}}})
		if re.Count != 0 || len(re.Results) != 0 || re.NextBatch != "" {
			t.Fatalf("encrypted room searched: %+v", re)
		}
	})
}
