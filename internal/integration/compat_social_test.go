package integration

import (
	"fmt"
	"net/url"
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

type roomSummaryResp struct {
	RoomID           string   `json:"room_id"`
	Name             string   `json:"name"`
	JoinRule         string   `json:"join_rule"`
	RoomType         string   `json:"room_type"`
	RoomVersion      string   `json:"room_version"`
	Encryption       string   `json:"encryption"`
	NumJoinedMembers int      `json:"num_joined_members"`
	Membership       string   `json:"membership"`
	AllowedRoomIDs   []string `json:"allowed_room_ids"`
	WorldReadable    bool     `json:"world_readable"`
}

func summaryOf(c *ts.Client, idOrAlias, query string) (*ts.Response, roomSummaryResp) {
	r := c.Do("GET", "/_matrix/client/v1/room_summary/"+esc(idOrAlias)+query, nil)
	var out roomSummaryResp
	if r.Status == 200 {
		_ = r.JSON(&out)
	}
	return r, out
}

// A room summary shows what a user could see of the room in a space
// hierarchy: allowed_room_ids for restricted rooms only, the caller's
// membership, and "not found" for rooms they may not see.
func TestRoomSummaryLocal(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		anon := s.Anonymous(t)
		space := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "The space", "creation_content": map[string]any{"type": "m.space"}})
		restricted := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_version": "8", "initial_state": []map[string]any{{
			"type": "m.room.join_rules", "state_key": "", "content": map[string]any{"join_rule": "restricted",
				"allow": []map[string]any{{"type": "m.room_membership", "room_id": space}}}}}})
		private := alice.CreateRoom(map[string]any{"preset": "private_chat", "room_alias_name": "secret" + strings.ToLower(bob.DeviceID)})

		r, sum := summaryOf(alice, restricted, "")
		if r.Status != 200 || sum.RoomID != restricted || sum.JoinRule != "restricted" || !slices.Equal(sum.AllowedRoomIDs, []string{space}) ||
			sum.RoomVersion != "8" || sum.Membership != "join" || sum.NumJoinedMembers != 1 {
			t.Fatalf("restricted room: %d %s", r.Status, r.Body)
		}
		r, sum = summaryOf(alice, private, "")
		if r.Status != 200 || sum.JoinRule != "invite" || strings.Contains(string(r.Body), "allowed_room_ids") || sum.Encryption != "m.megolm.v1.aes-sha2" {
			t.Fatalf("private room: %d %s", r.Status, r.Body)
		}
		// By alias, and through the unstable path.
		alias := "#secret" + strings.ToLower(bob.DeviceID) + ":" + strings.SplitN(alice.UserID, ":", 2)[1]
		if r, sum := summaryOf(alice, alias, ""); r.Status != 200 || sum.RoomID != private {
			t.Fatalf("by alias: %d %s", r.Status, r.Body)
		}
		for _, path := range []string{"/rooms/" + esc(private) + "/summary", "/summary/" + esc(private)} {
			if r := alice.Do("GET", "/_matrix/client/unstable/im.nheko.summary"+path, nil); r.Status != 200 || !strings.Contains(string(r.Body), private) {
				t.Fatalf("unstable path %s: %d %s", path, r.Status, r.Body)
			}
		}

		// Bob may see the space (public) but not the private room, nor the
		// restricted room until he joins the space.
		if r, sum := summaryOf(bob, space, ""); r.Status != 200 || sum.RoomType != "m.space" || sum.Name != "The space" || sum.Membership != "leave" {
			t.Fatalf("space for a stranger: %d %s", r.Status, r.Body)
		}
		for _, room := range []string{private, alias, restricted} {
			if r, _ := summaryOf(bob, room, ""); r.Status != 404 || r.ErrCode() != "M_NOT_FOUND" {
				t.Fatalf("%s for a stranger: %d %s", room, r.Status, r.Body)
			}
		}
		bob.Join(space)
		if r, sum := summaryOf(bob, restricted, ""); r.Status != 200 || sum.Membership != "leave" {
			t.Fatalf("restricted room for a member of the space: %d %s", r.Status, r.Body)
		}
		// An invitee sees the room.
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(private)+"/invite", map[string]string{"user_id": bob.UserID}, nil)
		if r, sum := summaryOf(bob, private, ""); r.Status != 200 || sum.Membership != "invite" {
			t.Fatalf("private room for an invitee: %d %s", r.Status, r.Body)
		}

		// Anonymous callers see public rooms only, with no membership.
		if r, _ := summaryOf(anon, space, ""); r.Status != 200 || strings.Contains(string(r.Body), "membership") {
			t.Fatalf("space, anonymous: %d %s", r.Status, r.Body)
		}
		if r, _ := summaryOf(anon, private, ""); r.Status != 404 {
			t.Fatalf("private room, anonymous: %d %s", r.Status, r.Body)
		}
		// Unknown rooms and bad ids.
		if r, _ := summaryOf(alice, "!nowhere:"+strings.SplitN(alice.UserID, ":", 2)[1], ""); r.Status != 404 {
			t.Fatalf("unknown room: %d %s", r.Status, r.Body)
		}
		if r, _ := summaryOf(alice, "nonsense", ""); r.Status != 400 {
			t.Fatalf("bad id: %d %s", r.Status, r.Body)
		}
	})
}

// A room this server does not know is summarised from another server's
// /hierarchy, still only when the user may see it.
func TestRoomSummaryOverFederation(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice, bob := p.a.Register(t, "alice"), p.b.Register(t, "bob")
		public := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Open door", "room_alias_name": "opendoor"})
		private := alice.CreateRoom(map[string]any{"preset": "private_chat", "name": "Closed door"})
		serverA := strings.SplitN(alice.UserID, ":", 2)[1]
		via := "?via=" + url.QueryEscape(serverA)
		r, sum := summaryOf(bob, public, via)
		if r.Status != 200 || sum.Name != "Open door" || sum.JoinRule != "public" || sum.Membership != "leave" || sum.NumJoinedMembers != 1 {
			t.Fatalf("remote public room: %d %s", r.Status, r.Body)
		}
		if r, sum := summaryOf(bob, "#opendoor:"+serverA, ""); r.Status != 200 || sum.RoomID != public {
			t.Fatalf("remote alias: %d %s", r.Status, r.Body)
		}
		if r, _ := summaryOf(bob, private, via); r.Status != 404 {
			t.Fatalf("remote private room: %d %s", r.Status, r.Body)
		}
		if r, _ := summaryOf(p.b.Anonymous(t), public, via); r.Status != 404 {
			t.Fatalf("anonymous caller made us ask another server: %d %s", r.Status, r.Body)
		}

		// Invited to the private room, bob sees it without naming a
		// server (his invite names them), and from the invite's state
		// when the room's server cannot be reached.
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(private)+"/invite", map[string]string{"user_id": bob.UserID}, nil)
		if r, sum := summaryOf(bob, private, ""); r.Status != 200 || sum.Name != "Closed door" || sum.Membership != "invite" || sum.NumJoinedMembers != 1 {
			t.Fatalf("invited, over federation: %d %s", r.Status, r.Body)
		}
		private2 := alice.CreateRoom(map[string]any{"preset": "private_chat", "name": "Back room"})
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(private2)+"/invite", map[string]string{"user_id": bob.UserID}, nil)
		p.fed.Cut("police.test", "gouv.test")
		defer p.fed.Heal()
		if r, sum := summaryOf(bob, private2, ""); r.Status != 200 || sum.Name != "Back room" || sum.Membership != "invite" || sum.JoinRule != "invite" {
			t.Fatalf("invited, server unreachable: %d %s", r.Status, r.Body)
		}
	})
}

// /mutual_rooms lists the rooms where both users are joined, and refuses
// bad or missing user ids and one's own.
func TestMutualRooms(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		shared1 := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		shared2 := bob.CreateRoom(map[string]any{"preset": "public_chat"})
		left := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		alice.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{bob.UserID}}) // bob only invited
		alice.CreateRoom(map[string]any{"preset": "public_chat"})                                  // alice alone
		bob.Join(shared1)
		alice.Join(shared2)
		bob.Join(left)
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(left)+"/leave", map[string]any{}, nil)

		var res struct {
			Joined    []string `json:"joined"`
			Count     int      `json:"count"`
			NextBatch *string  `json:"next_batch"`
		}
		alice.MustDo("GET", "/_matrix/client/v1/mutual_rooms?user_id="+url.QueryEscape(bob.UserID), nil, &res)
		want := []string{shared1, shared2}
		slices.Sort(want)
		got := slices.Clone(res.Joined)
		slices.Sort(got)
		if !slices.Equal(got, want) || res.Count != 2 || res.NextBatch != nil {
			t.Fatalf("mutual rooms: %+v, want %v", res, want)
		}
		alice.MustDo("GET", "/_matrix/client/v1/mutual_rooms?user_id="+url.QueryEscape(carol.UserID), nil, &res)
		if len(res.Joined) != 0 || res.Count != 0 || res.Joined == nil {
			t.Fatalf("no mutual rooms: %+v", res)
		}
		for _, q := range []string{"", "?user_id=" + url.QueryEscape(alice.UserID), "?user_id=bob", "?user_id=" + url.QueryEscape("@Bad Name:x.test"),
			"?user_id=" + url.QueryEscape(bob.UserID) + "&from=%25%25"} {
			r := alice.Do("GET", "/_matrix/client/v1/mutual_rooms"+q, nil)
			if r.Status != 400 || (r.ErrCode() != "M_INVALID_PARAM" && r.ErrCode() != "M_MISSING_PARAM") {
				t.Errorf("%q: %d %s", q, r.Status, r.Body)
			}
		}
		if r := s.Anonymous(t).Do("GET", "/_matrix/client/v1/mutual_rooms?user_id="+url.QueryEscape(bob.UserID), nil); r.Status != 401 {
			t.Errorf("anonymous: %d", r.Status)
		}
	})
}

// /.well-known/matrix/support serves the configured contacts and page,
// and is 404 when nothing is configured.
func TestWellKnownSupport(t *testing.T) {
	s := ts.New(t)
	if r := s.Anonymous(t).Do("GET", "/.well-known/matrix/support", nil); r.Status != 404 {
		t.Fatalf("nothing configured: %d %s", r.Status, r.Body)
	}
	s = ts.New(t, ts.WithConfig(func(c *config.Config) {
		c.Support = config.Support{
			Contacts: []config.SupportContact{
				{MatrixID: "@admin:example.org", EmailAddress: "admin@example.org", Role: "m.role.admin"},
				{EmailAddress: "security@example.org", Role: "m.role.security"},
			},
			SupportPage: "https://example.org/help",
		}
	}))
	var got map[string]any
	s.Anonymous(t).MustDo("GET", "/.well-known/matrix/support", nil, &got)
	want := map[string]any{
		"contacts": []any{
			map[string]any{"matrix_id": "@admin:example.org", "email_address": "admin@example.org", "role": "m.role.admin"},
			map[string]any{"email_address": "security@example.org", "role": "m.role.security"},
		},
		"support_page": "https://example.org/help",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("support: %v, want %v", got, want)
	}
	s = ts.New(t, ts.WithConfig(func(c *config.Config) { c.Support.SupportPage = "https://example.org/help" }))
	got = nil
	s.Anonymous(t).MustDo("GET", "/.well-known/matrix/support", nil, &got)
	if _, ok := got["contacts"]; ok || got["support_page"] != "https://example.org/help" {
		t.Fatalf("page only: %v", got)
	}
}

func setInvitePermission(c *ts.Client, typ string, content map[string]any) {
	c.MustDo("PUT", "/_matrix/client/v3/user/"+esc(c.UserID)+"/account_data/"+typ, content, nil)
}

func invitedRooms(t *testing.T, c *ts.Client) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for id := range doSync(t, c, "timeout=0").Rooms.Invite {
		out[id] = true
	}
	return out
}

// A user who blocks invites (m.invite_permission_config default_action
// "block") is never invited: /invite, a PUT of the member event and
// createRoom's invite list all leave them out, with M_INVITE_BLOCKED
// where one invite was asked for; unblocking lets invites through again.
func TestInvitePermissionBlocksAll(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		setInvitePermission(alice, "m.invite_permission_config", map[string]any{"default_action": "block"})
		room := bob.CreateRoom(map[string]any{"preset": "private_chat"})
		blocked := func(what string, r *ts.Response) {
			t.Helper()
			if r.Status != 403 || r.ErrCode() != "M_INVITE_BLOCKED" {
				t.Fatalf("%s: %d %s", what, r.Status, r.Body)
			}
		}
		blocked("invite", bob.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]string{"user_id": alice.UserID}))
		blocked("member event", bob.Do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.member/"+esc(alice.UserID), map[string]string{"membership": "invite"}))
		created := bob.CreateRoom(map[string]any{"preset": "private_chat", "invite": []string{alice.UserID}})
		if got := invitedRooms(t, alice); len(got) != 0 {
			t.Fatalf("invites shown: %v", got)
		}
		if r := alice.Do("GET", "/_matrix/client/v3/rooms/"+esc(created)+"/state/m.room.member/"+esc(alice.UserID), nil); r.Status == 200 {
			t.Fatalf("createRoom invited a user who blocks invites: %s", r.Body)
		}
		// Without default_action, invites come through again.
		setInvitePermission(alice, "m.invite_permission_config", map[string]any{})
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]string{"user_id": alice.UserID}, nil)
		if got := invitedRooms(t, alice); !got[room] {
			t.Fatalf("invite after unblocking not shown: %v", got)
		}
	})
}

// MSC4155's lists: blocked users and servers are refused, ignored ones are
// accepted but never shown, and an allowed user gets through a blocked
// server; an invite already received is hidden once its sender is blocked.
func TestInvitePermissionLists(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol, dave := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol"), s.Register(t, "dave")
		server := strings.SplitN(alice.UserID, ":", 2)[1]
		invite := func(from *ts.Client) (string, *ts.Response) {
			room := from.CreateRoom(map[string]any{"preset": "private_chat"})
			return room, from.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]string{"user_id": alice.UserID})
		}
		earlier, r := invite(dave)
		if r.Status != 200 {
			t.Fatalf("invite before any rule: %d %s", r.Status, r.Body)
		}
		setInvitePermission(alice, "org.matrix.msc4155.invite_permission_config", map[string]any{
			"blocked_users":   []string{"@bob*"},
			"ignored_users":   []string{carol.UserID},
			"allowed_users":   []string{dave.UserID},
			"blocked_servers": []string{server},
		})
		if _, r := invite(bob); r.Status != 403 || r.ErrCode() != "M_INVITE_BLOCKED" {
			t.Fatalf("blocked user: %d %s", r.Status, r.Body)
		}
		ignoredRoom, r := invite(carol)
		if r.Status != 200 {
			t.Fatalf("ignored user: %d %s", r.Status, r.Body)
		}
		allowedRoom, r := invite(dave)
		if r.Status != 200 {
			t.Fatalf("allowed user from a blocked server: %d %s", r.Status, r.Body)
		}
		got := invitedRooms(t, alice)
		if got[ignoredRoom] || !got[allowedRoom] || !got[earlier] || len(got) != 2 {
			t.Fatalf("invites shown: %v (ignored %s, allowed %s, earlier %s)", got, ignoredRoom, allowedRoom, earlier)
		}
		// The ignored invite is real: alice may still join.
		alice.Join(ignoredRoom)
		// Blocking dave now hides his earlier invites from sync.
		setInvitePermission(alice, "org.matrix.msc4155.invite_permission_config", map[string]any{"blocked_users": []string{dave.UserID}})
		if got := invitedRooms(t, alice); len(got) != 0 {
			t.Fatalf("invites of a blocked user still shown: %v", got)
		}
		// Null fields are no rules.
		setInvitePermission(alice, "org.matrix.msc4155.invite_permission_config", map[string]any{"blocked_users": nil, "blocked_servers": nil})
		if _, r := invite(bob); r.Status != 200 {
			t.Fatalf("null lists: %d %s", r.Status, r.Body)
		}
	})
}

// Invites over federation follow the invitee's choices too: a blocked
// server's invite is refused with M_INVITE_BLOCKED, passed on to the
// inviter; an ignored one is accepted and not shown.
func TestInvitePermissionOverFederation(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		alice, bob, carol := p.a.Register(t, "alice"), p.b.Register(t, "bob"), p.b.Register(t, "carol")
		serverB := strings.SplitN(bob.UserID, ":", 2)[1]
		setInvitePermission(alice, "org.matrix.msc4155.invite_permission_config", map[string]any{
			"blocked_users": []string{bob.UserID}, "ignored_servers": []string{serverB},
		})
		room := bob.CreateRoom(map[string]any{"preset": "private_chat"})
		if r := bob.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]string{"user_id": alice.UserID}); r.Status != 403 || r.ErrCode() != "M_INVITE_BLOCKED" {
			t.Fatalf("blocked remote inviter: %d %s", r.Status, r.Body)
		}
		room2 := carol.CreateRoom(map[string]any{"preset": "private_chat"})
		carol.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room2)+"/invite", map[string]string{"user_id": alice.UserID}, nil)
		if got := invitedRooms(t, alice); len(got) != 0 {
			t.Fatalf("invites shown: %v", got)
		}
		setInvitePermission(alice, "org.matrix.msc4155.invite_permission_config", map[string]any{})
		if got := invitedRooms(t, alice); !got[room2] || len(got) != 1 {
			t.Fatalf("invite of a server no longer ignored: %v", got)
		}
	})
}

// PUT /_synapse/admin/v1/send_server_notice/{txnId} sends a notice once
// per transaction id: a repeat returns the first event; another id (or
// another recipient) sends a new one. The system user's localpart is
// configurable (Complement expects _server), and the recipient sees the
// invite from it, cannot reject it, may join, leave and be invited back
// to the same room.
func TestServerNoticeTransactions(t *testing.T) {
	forEachEngineWith(t, func(t *testing.T, s *ts.Server) {
		admin := adminClient(t, s)
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		body := func(to *ts.Client) map[string]any {
			return map[string]any{"user_id": to.UserID, "content": map[string]any{"msgtype": "m.text", "body": "hello from server notices!"}}
		}
		put := func(c *ts.Client, txn string, to *ts.Client) (*ts.Response, string) {
			r := c.Do("PUT", "/_synapse/admin/v1/send_server_notice/"+txn, body(to))
			var out struct {
				EventID string `json:"event_id"`
			}
			_ = r.JSON(&out)
			return r, out.EventID
		}
		if r, _ := put(alice, "t1", bob); r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
			t.Fatalf("non-admin: %d %s", r.Status, r.Body)
		}
		r1, first := put(admin, "t1", alice)
		r2, again := put(admin, "t1", alice)
		_, other := put(admin, "t2", alice)
		_, toBob := put(admin, "t1", bob)
		if r1.Status != 200 || r2.Status != 200 || first == "" || again != first || other == first || toBob == first || toBob == "" {
			t.Fatalf("first %s, repeat %s, other txn %s, other recipient %s", first, again, other, toBob)
		}

		var room string
		for id, inv := range doSync(t, alice, "timeout=0").Rooms.Invite {
			if evs := inv.InviteState.Events; len(evs) > 0 && evs[0].Sender == "@_server:"+strings.SplitN(alice.UserID, ":", 2)[1] {
				room = id
			}
		}
		if room == "" {
			t.Fatal("no invite from @_server")
		}
		if r := alice.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}); r.Status != 403 || r.ErrCode() != "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM" {
			t.Fatalf("reject: %d %s", r.Status, r.Body)
		}
		alice.Join(room)
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		put(admin, "t3", alice)
		if _, ok := doSync(t, alice, "timeout=0").Rooms.Invite[room]; !ok {
			t.Fatal("not invited back to the same room")
		}
		// Bad transaction ids and bodies are refused, not 500s.
		if r := admin.Do("PUT", "/_synapse/admin/v1/send_server_notice/t4", map[string]any{"user_id": alice.UserID}); r.Status != 400 {
			t.Fatalf("no content: %d %s", r.Status, r.Body)
		}
	}, ts.WithConfig(func(c *config.Config) { c.ServerNotices.Localpart = "_server" }))
}

// An avatar URL that is not an mxc:// URI is stored as given and reaches
// the user's member events; text with control characters is refused.
func TestAvatarURLNotMXC(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		since := doSync(t, alice, "timeout=0").NextBatch
		alice.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/avatar_url", map[string]string{"avatar_url": "LemurLover"}, nil)
		var p struct {
			AvatarURL string `json:"avatar_url"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/avatar_url", nil, &p)
		if p.AvatarURL != "LemurLover" {
			t.Fatalf("profile: %+v", p)
		}
		found := false
		for _, e := range doSync(t, alice, "timeout=0&since="+url.QueryEscape(since)).Rooms.Join[room].Timeline.Events {
			if e.Type == "m.room.member" && e.Content["avatar_url"] == "LemurLover" {
				found = true
			}
		}
		if !found {
			t.Fatal("member event without the new avatar_url")
		}
		if r := alice.Do("PUT", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/avatar_url", map[string]string{"avatar_url": "mxc://x/y\n"}); r.Status != 400 || r.ErrCode() != "M_INVALID_PARAM" {
			t.Fatalf("control character: %d %s", r.Status, r.Body)
		}
	})
}
