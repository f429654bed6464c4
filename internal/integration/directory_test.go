package integration

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

type publicRoomsResp struct {
	Chunk []struct {
		RoomID           string `json:"room_id"`
		Name             string `json:"name"`
		Topic            string `json:"topic"`
		CanonicalAlias   string `json:"canonical_alias"`
		NumJoinedMembers int    `json:"num_joined_members"`
		WorldReadable    bool   `json:"world_readable"`
		GuestCanJoin     bool   `json:"guest_can_join"`
		JoinRule         string `json:"join_rule"`
		RoomType         string `json:"room_type"`
	} `json:"chunk"`
	NextBatch string `json:"next_batch"`
	PrevBatch string `json:"prev_batch"`
	Total     *int   `json:"total_room_count_estimate"`
}

func (p publicRoomsResp) ids() []string {
	var out []string
	for _, c := range p.Chunk {
		out = append(out, c.RoomID)
	}
	return out
}

var aliasN atomic.Int64

// adminClient creates a server administrator and logs it in.
func adminClient(t *testing.T, s *ts.Server) *ts.Client {
	t.Helper()
	local := fmt.Sprintf("admin%d", aliasN.Add(1))
	if _, err := s.Accounts.CreateUser(context.Background(), local, "correct horse battery", true); err != nil {
		t.Fatal(err)
	}
	c := s.Anonymous(t)
	var resp struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	c.MustDo("POST", "/_matrix/client/v3/login", map[string]any{
		"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": local}, "password": "correct horse battery",
	}, &resp)
	c.UserID, c.Token = resp.UserID, resp.AccessToken
	return c
}

func TestDirectoryPublicRooms(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		n := aliasN.Add(1)
		cafe := alice.CreateRoom(map[string]any{"visibility": "public", "preset": "public_chat", "name": "Café Lumière",
			"topic": "Coffee talk", "room_alias_name": fmt.Sprintf("cafe%d", n)})
		space := alice.CreateRoom(map[string]any{"visibility": "public", "preset": "public_chat", "name": "Town space",
			"creation_content": map[string]any{"type": "m.space"}})
		plain := alice.CreateRoom(map[string]any{"visibility": "public", "preset": "public_chat", "name": "Plain room"})
		hidden := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Not published"})
		bob.Join(cafe)
		carol.Join(cafe)
		carol.Join(space)

		var all publicRoomsResp
		bob.MustDo("GET", "/_matrix/client/v3/publicRooms", nil, &all)
		if got, want := all.ids(), []string{cafe, space, plain}; !slices.Equal(got, want) {
			t.Fatalf("public rooms %v, want %v (members desc, then id)", got, want)
		}
		if all.Total == nil || *all.Total != 3 || all.NextBatch != "" || all.PrevBatch != "" {
			t.Fatalf("total/next/prev: %+v", all)
		}
		c := all.Chunk[0]
		if c.Name != "Café Lumière" || c.Topic != "Coffee talk" || c.CanonicalAlias != fmt.Sprintf("#cafe%d:%s", n, s.Config.ServerName) ||
			c.NumJoinedMembers != 3 || c.JoinRule != "public" || c.WorldReadable || c.RoomType != "" {
			t.Fatalf("cafe chunk: %+v", c)
		}
		if all.Chunk[1].RoomID != space || all.Chunk[1].RoomType != "m.space" {
			t.Fatalf("space chunk: %+v", all.Chunk[1])
		}
		if slices.Contains(all.ids(), hidden) {
			t.Fatal("an unpublished room is listed")
		}
		// Anonymous callers may list too (GET has no auth in the spec).
		var anon publicRoomsResp
		s.Anonymous(t).MustDo("GET", "/_matrix/client/v3/publicRooms", nil, &anon)
		if len(anon.Chunk) != 3 {
			t.Fatalf("anonymous list: %v", anon.ids())
		}

		filter := func(body map[string]any) []string {
			t.Helper()
			var p publicRoomsResp
			bob.MustDo("POST", "/_matrix/client/v3/publicRooms", body, &p)
			return p.ids()
		}
		for _, tc := range []struct {
			name string
			body map[string]any
			want []string
		}{
			{"accent-free term", map[string]any{"filter": map[string]any{"generic_search_term": "cafe"}}, []string{cafe}},
			{"topic", map[string]any{"filter": map[string]any{"generic_search_term": "COFFEE"}}, []string{cafe}},
			{"alias", map[string]any{"filter": map[string]any{"generic_search_term": fmt.Sprintf("#cafe%d", n)}}, []string{cafe}},
			{"no match", map[string]any{"filter": map[string]any{"generic_search_term": "zzz%"}}, nil},
			{"plain rooms only", map[string]any{"filter": map[string]any{"room_types": []any{nil}}}, []string{cafe, plain}},
			{"spaces only", map[string]any{"filter": map[string]any{"room_types": []any{"m.space"}}}, []string{space}},
			{"third-party network", map[string]any{"third_party_instance_id": "irc"}, nil},
		} {
			if got := filter(tc.body); !slices.Equal(got, tc.want) {
				t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
			}
		}

		// Pagination: one room per page forwards, then back.
		var pages [][]string
		since := ""
		var last publicRoomsResp
		for i := 0; i < 5; i++ {
			var p publicRoomsResp
			q := "/_matrix/client/v3/publicRooms?limit=1"
			if since != "" {
				q += "&since=" + since
			}
			bob.MustDo("GET", q, nil, &p)
			pages = append(pages, p.ids())
			last = p
			if p.NextBatch == "" {
				break
			}
			since = p.NextBatch
		}
		if len(pages) != 3 || pages[0][0] != all.ids()[0] || pages[1][0] != all.ids()[1] || pages[2][0] != all.ids()[2] {
			t.Fatalf("pages %v, want one by one of %v", pages, all.ids())
		}
		if last.PrevBatch == "" {
			t.Fatal("last page has no prev_batch")
		}
		var back publicRoomsResp
		bob.MustDo("GET", "/_matrix/client/v3/publicRooms?limit=1&since="+last.PrevBatch, nil, &back)
		if !slices.Equal(back.ids(), all.ids()[1:2]) || back.NextBatch == "" {
			t.Fatalf("previous page %v next %q, want %v", back.ids(), back.NextBatch, all.ids()[1:2])
		}
		if r := bob.Do("GET", "/_matrix/client/v3/publicRooms?since=garbage", nil); r.Status != 400 || r.ErrCode() != "M_INVALID_PARAM" {
			t.Fatalf("bad token: %d %s", r.Status, r.Body)
		}

		// Renaming a published room shows at once.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(plain)+"/state/m.room.name", map[string]string{"name": "Renamed"}, nil)
		if got := filter(map[string]any{"filter": map[string]any{"generic_search_term": "renamed"}}); !slices.Equal(got, []string{plain}) {
			t.Fatalf("after rename: %v", got)
		}

		// Visibility: read, unpublish, publish.
		vis := func(roomID string) string {
			var v struct {
				Visibility string `json:"visibility"`
			}
			s.Anonymous(t).MustDo("GET", "/_matrix/client/v3/directory/list/room/"+esc(roomID), nil, &v)
			return v.Visibility
		}
		if vis(cafe) != "public" || vis(hidden) != "private" {
			t.Fatal("visibility of published/unpublished room")
		}
		alice.MustDo("PUT", "/_matrix/client/v3/directory/list/room/"+esc(cafe), map[string]string{"visibility": "private"}, nil)
		alice.MustDo("PUT", "/_matrix/client/v3/directory/list/room/"+esc(hidden), map[string]string{"visibility": "public"}, nil)
		if vis(cafe) != "private" || vis(hidden) != "public" {
			t.Fatal("visibility did not change")
		}
		bob.MustDo("GET", "/_matrix/client/v3/publicRooms", nil, &all)
		if slices.Contains(all.ids(), cafe) || !slices.Contains(all.ids(), hidden) {
			t.Fatalf("after unpublish/publish: %v", all.ids())
		}
		for _, tc := range []struct {
			name   string
			c      *ts.Client
			roomID string
			body   any
			status int
			code   string
		}{
			{"member without power", bob, cafe, map[string]string{"visibility": "public"}, 403, "M_FORBIDDEN"},
			{"non-member", carol, plain, map[string]string{"visibility": "private"}, 403, "M_FORBIDDEN"},
			{"unknown room", alice, "!nope:" + s.Config.ServerName, map[string]string{"visibility": "public"}, 404, "M_NOT_FOUND"},
			{"bad visibility", alice, cafe, map[string]string{"visibility": "secret"}, 400, "M_INVALID_PARAM"},
			{"not JSON", alice, cafe, "{", 400, "M_NOT_JSON"},
		} {
			r := tc.c.Do("PUT", "/_matrix/client/v3/directory/list/room/"+esc(tc.roomID), tc.body)
			if r.Status != tc.status || r.ErrCode() != tc.code {
				t.Errorf("%s: %d %s, want %d %s", tc.name, r.Status, r.Body, tc.status, tc.code)
			}
		}
		if r := s.Anonymous(t).Do("GET", "/_matrix/client/v3/directory/list/room/"+esc("!nope:x"), nil); r.Status != 404 {
			t.Fatalf("unknown room visibility: %d", r.Status)
		}
		// Upgrading a published room lists the new room in its place.
		var up struct {
			ReplacementRoom string `json:"replacement_room"`
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(plain)+"/upgrade", map[string]string{"new_version": "12"}, &up)
		if vis(plain) != "private" || vis(up.ReplacementRoom) != "public" {
			t.Fatalf("after upgrade: old %s, new %s", vis(plain), vis(up.ReplacementRoom))
		}
		// A moderator with the power over the canonical alias may publish.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(cafe)+"/state/m.room.power_levels", map[string]any{
			"users": map[string]int{bob.UserID: 50}, "events": map[string]int{"m.room.canonical_alias": 50},
		}, nil)
		bob.MustDo("PUT", "/_matrix/client/v3/directory/list/room/"+esc(cafe), map[string]string{"visibility": "public"}, nil)
		if vis(cafe) != "public" {
			t.Fatal("moderator could not publish")
		}
	})
}

// forEachEngineWith is forEachEngine for servers with options.
func forEachEngineWith(t *testing.T, f func(t *testing.T, s *ts.Server), opts ...ts.Option) {
	t.Run("sqlite", func(t *testing.T) { f(t, ts.New(t, opts...)) })
	t.Run("postgres", func(t *testing.T) { f(t, ts.New(t, append([]ts.Option{ts.WithPostgres(t)}, opts...)...)) })
}

func TestDirectoryPublicationPolicy(t *testing.T) {
	forEachEngineWith(t, func(t *testing.T, s *ts.Server) {
		alice, admin := s.Register(t, "alice"), adminClient(t, s)
		if r := alice.Do("POST", "/_matrix/client/v3/createRoom", map[string]any{"visibility": "public"}); r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
			t.Fatalf("createRoom public by non-admin: %d %s", r.Status, r.Body)
		}
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		if r := alice.Do("PUT", "/_matrix/client/v3/directory/list/room/"+esc(room), map[string]string{"visibility": "public"}); r.Status != 403 {
			t.Fatalf("publish by non-admin: %d %s", r.Status, r.Body)
		}
		admin.MustDo("PUT", "/_matrix/client/v3/directory/list/room/"+esc(room), map[string]string{"visibility": "public"}, nil)
		var p publicRoomsResp
		alice.MustDo("GET", "/_matrix/client/v3/publicRooms", nil, &p)
		if !slices.Equal(p.ids(), []string{room}) {
			t.Fatalf("after admin published: %v", p.ids())
		}
		// The room's own moderators may still take it out.
		alice.MustDo("PUT", "/_matrix/client/v3/directory/list/room/"+esc(room), map[string]string{"visibility": "private"}, nil)
		admin.CreateRoom(map[string]any{"visibility": "public"})
		// Another server's directory, federation being off.
		if r := alice.Do("GET", "/_matrix/client/v3/publicRooms?server=other.test", nil); r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
			t.Fatalf("remote directory without federation: %d %s", r.Status, r.Body)
		}
		if r := s.Anonymous(t).Do("GET", "/_matrix/client/v3/publicRooms?server=other.test", nil); r.Status != 401 {
			t.Fatalf("anonymous remote directory: %d %s", r.Status, r.Body)
		}
	}, ts.WithConfig(func(c *config.Config) {
		c.Directory.RoomPublication = config.PublicationAdmins
		c.Federation.Enabled = false
	}))
}

type dirResults struct {
	Results []struct {
		UserID      string `json:"user_id"`
		DisplayName string `json:"display_name"`
	} `json:"results"`
	Limited bool `json:"limited"`
}

func search(t *testing.T, c *ts.Client, term string, limit int) dirResults {
	t.Helper()
	body := map[string]any{"search_term": term}
	if limit > 0 {
		body["limit"] = limit
	}
	var r dirResults
	c.MustDo("POST", "/_matrix/client/v3/user_directory/search", body, &r)
	return r
}

func (r dirResults) ids() []string {
	var out []string
	for _, u := range r.Results {
		out = append(out, u.UserID)
	}
	return out
}

func setName(t *testing.T, c *ts.Client, name string) {
	t.Helper()
	c.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(c.UserID)+"/displayname", map[string]string{"displayname": name}, nil)
}

func optIn(t *testing.T, c *ts.Client, visible bool) {
	t.Helper()
	c.MustDo("PUT", "/_matrix/client/v3/user/"+esc(c.UserID)+"/account_data/lu.luxchat.directory", map[string]bool{"visible": visible}, nil)
}

func TestUserDirectorySearch(t *testing.T) {
	for _, defaultVisible := range []bool{false, true} {
		t.Run(fmt.Sprintf("default_visible=%v", defaultVisible), func(t *testing.T) {
			forEachEngineWith(t, func(t *testing.T, s *ts.Server) {
				testUserDirectory(t, s, defaultVisible)
			}, ts.WithConfig(func(c *config.Config) { c.Directory.DefaultVisible = defaultVisible }))
		})
	}
}

func testUserDirectory(t *testing.T, s *ts.Server, defaultVisible bool) {
	me := s.Register(t, "searcher")
	setName(t, me, "Searcher Person")
	mk := func(name, display string) *ts.Client {
		c := s.Register(t, name)
		setName(t, c, display)
		return c
	}
	roommate := mk("roommate", "Roomy Shared")
	outRoommate := mk("outmate", "Roomy Optedout")
	opted := mk("opted", "Marguerite Öberg")
	optedOut := mk("optedout", "Hidden Optedout")
	noChoice := mk("nochoice", "Nochoice Default")
	leaver := mk("leaver", "Leaving Shared")
	gone := mk("gone", "Deactivated Person")
	smith := mk("smith", "John Smith")
	zoe := mk("zoe", "Zoë Ångström")
	var limits []*ts.Client
	for i := range 3 {
		limits = append(limits, mk("lim", fmt.Sprintf("Limitname %d", i)))
	}

	room := me.CreateRoom(map[string]any{"preset": "public_chat"})
	for _, c := range []*ts.Client{roommate, outRoommate, leaver} {
		c.Join(room)
	}
	leaver.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
	for _, c := range append([]*ts.Client{opted, gone, smith, zoe}, limits...) {
		optIn(t, c, true)
	}
	optIn(t, optedOut, false)
	optIn(t, outRoommate, false)
	gone.MustDo("POST", "/_matrix/client/v3/account/deactivate", map[string]any{
		"auth": map[string]string{"type": "m.login.password", "user": gone.UserID, "password": "correct horse battery"},
	}, nil)

	local := func(c *ts.Client) string { return strings.TrimPrefix(strings.Split(c.UserID, ":")[0], "@") }
	ifDefault := func(c *ts.Client) []string {
		if defaultVisible {
			return []string{c.UserID}
		}
		return nil
	}
	for _, tc := range []struct {
		name  string
		term  string
		limit int
		want  []string
	}{
		{"shares a room", "roomy shared", 0, []string{roommate.UserID}},
		{"opted out but shares a room", "optedout roomy", 0, []string{outRoommate.UserID}},
		{"opted in, shares no room", "marguerite", 0, []string{opted.UserID}},
		{"opted out explicitly", "hidden", 0, nil},
		{"no choice follows the default", "nochoice", 0, ifDefault(noChoice)},
		{"left the shared room", "leaving", 0, ifDefault(leaver)},
		{"deactivated", "deactivated", 0, nil},
		{"accents folded", "OBERG", 0, []string{opted.UserID}},
		{"accents folded in the name", "zoe angstr", 0, []string{zoe.UserID}},
		{"prefix", "Marg", 0, []string{opted.UserID}},
		{"word order", "smith john", 0, []string{smith.UserID}},
		{"every word must match", "john smythe", 0, nil},
		{"localpart", local(smith), 0, []string{smith.UserID}},
		{"full user id", smith.UserID, 0, []string{smith.UserID}},
		{"own profile is no result", "searcher", 0, nil},
		{"non-listed user by id", optedOut.UserID, 0, nil},
		{"non-listed user by localpart", local(optedOut), 0, nil},
		{"empty term", "  ", 0, nil},
	} {
		got := search(t, me, tc.term, tc.limit)
		if !slices.Equal(got.ids(), tc.want) {
			t.Errorf("%s: search %q = %v, want %v", tc.name, tc.term, got.ids(), tc.want)
		}
	}
	// limit and limited.
	got := search(t, me, "limitname", 2)
	if len(got.Results) != 2 || !got.Limited {
		t.Errorf("limit 2: %v limited=%v", got.ids(), got.Limited)
	}
	got = search(t, me, "limitname", 3)
	if len(got.Results) != 3 || got.Limited {
		t.Errorf("limit 3: %v limited=%v", got.ids(), got.Limited)
	}
	if got.Results[0].DisplayName != "Limitname 0" {
		t.Errorf("display name: %+v", got.Results[0])
	}
	// Opting out makes a user vanish for strangers, and a display name
	// change is searchable at once.
	optIn(t, opted, false)
	if r := search(t, me, "marguerite", 0); len(r.Results) != 0 {
		t.Errorf("opted out, still found: %v", r.ids())
	}
	setName(t, smith, "Jane Doe")
	if r := search(t, me, "jane", 0); !slices.Equal(r.ids(), []string{smith.UserID}) {
		t.Errorf("renamed user: %v", r.ids())
	}
	if r := search(t, me, "john", 0); len(r.Results) != 0 {
		t.Errorf("old name still found: %v", r.ids())
	}
	// Bad input.
	for _, body := range []any{map[string]any{}, map[string]any{"search_term": 5}, map[string]any{"search_term": "x", "limit": -1}} {
		if r := me.Do("POST", "/_matrix/client/v3/user_directory/search", body); r.Status != 400 {
			t.Errorf("%v: status %d %s", body, r.Status, r.Body)
		}
	}
	// A restart rebuilds nothing wrongly: the rows are already current.
	s2 := s.Restart(t)
	me.URL = s2.URL
	if r := search(t, me, "roomy", 0); len(r.Results) != 2 {
		t.Errorf("after restart: %v", r.ids())
	}
}

func TestProfileRequireSharedRoom(t *testing.T) {
	forEachEngineWith(t, func(t *testing.T, s *ts.Server) {
		me, mate, listed, stranger := s.Register(t, "me"), s.Register(t, "mate"), s.Register(t, "listed"), s.Register(t, "stranger")
		room := me.CreateRoom(map[string]any{"preset": "public_chat"})
		mate.Join(room)
		optIn(t, listed, true)
		ghost := "@ghost:" + s.Config.ServerName
		var forbidden []byte
		for _, tc := range []struct {
			name   string
			c      *ts.Client
			target string
			status int
		}{
			{"own profile", me, me.UserID, 200},
			{"shares a room", me, mate.UserID, 200},
			{"listed in the directory", me, listed.UserID, 200},
			{"stranger", me, stranger.UserID, 403},
			{"unknown user", me, ghost, 403},
			{"anonymous", s.Anonymous(t), mate.UserID, 401},
		} {
			for _, path := range []string{"", "/displayname"} {
				r := tc.c.Do("GET", "/_matrix/client/v3/profile/"+esc(tc.target)+path, nil)
				if r.Status != tc.status {
					t.Errorf("%s %s: %d %s, want %d", tc.name, path, r.Status, r.Body, tc.status)
				}
				if tc.status == 403 {
					if forbidden == nil {
						forbidden = r.Body
					} else if string(forbidden) != string(r.Body) {
						t.Errorf("403 bodies differ (existence leaks): %s vs %s", forbidden, r.Body)
					}
				}
			}
		}
		// Leaving the shared room hides the profile again.
		mate.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		if r := me.Do("GET", "/_matrix/client/v3/profile/"+esc(mate.UserID), nil); r.Status != http.StatusForbidden {
			t.Errorf("after leaving: %d", r.Status)
		}
		// The stranger is not in the directory either.
		if r := search(t, me, "stranger", 0); len(r.Results) != 0 {
			t.Errorf("stranger found: %v", r.ids())
		}
	}, ts.WithConfig(func(c *config.Config) { c.Profile.RequireSharedRoom = true }))
}

type hierarchyResp struct {
	Rooms []struct {
		RoomID        string           `json:"room_id"`
		Name          string           `json:"name"`
		RoomType      string           `json:"room_type"`
		JoinRule      string           `json:"join_rule"`
		ChildrenState []map[string]any `json:"children_state"`
	} `json:"rooms"`
	NextBatch string `json:"next_batch"`
}

func (h hierarchyResp) ids() []string {
	var out []string
	for _, r := range h.Rooms {
		out = append(out, r.RoomID)
	}
	return out
}

func TestSpaceHierarchy(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		srv := s.Config.ServerName
		newSpace := func(name string) string {
			return alice.CreateRoom(map[string]any{"preset": "public_chat", "name": name, "creation_content": map[string]any{"type": "m.space"}})
		}
		root, sub := newSpace("Root"), newSpace("Sub")
		r1 := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "R1"})
		r2 := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "R2"})
		secret := alice.CreateRoom(map[string]any{"preset": "private_chat", "name": "Secret"})
		deep := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Deep"})
		link := func(parent, child string, content map[string]any) {
			t.Helper()
			content["via"] = []string{srv}
			alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(parent)+"/state/m.space.child/"+esc(child), content, nil)
		}
		link(root, r1, map[string]any{"order": "b"})
		link(root, sub, map[string]any{"order": "a", "suggested": true})
		link(root, secret, map[string]any{"order": "c"})
		link(root, r2, map[string]any{"suggested": true})
		link(sub, deep, map[string]any{})
		link(sub, root, map[string]any{}) // a loop
		link(r1, deep, map[string]any{})  // no effect: r1 is no space
		// A child whose via was removed is no child.
		gone := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		link(root, gone, map[string]any{})
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(root)+"/state/m.space.child/"+esc(gone), map[string]any{}, nil)

		get := func(c *ts.Client, query string) hierarchyResp {
			t.Helper()
			var h hierarchyResp
			c.MustDo("GET", "/_matrix/client/v1/rooms/"+esc(root)+"/hierarchy"+query, nil, &h)
			return h
		}
		for _, tc := range []struct {
			name  string
			c     *ts.Client
			query string
			want  []string
		}{
			{"member sees all, depth first, in order", alice, "", []string{root, sub, deep, r1, secret, r2}},
			{"private child hidden from a non-member", bob, "", []string{root, sub, deep, r1, r2}},
			{"suggested only", bob, "?suggested_only=true", []string{root, sub, r2}},
			{"max depth 1", bob, "?max_depth=1", []string{root, sub, r1, r2}},
			{"max depth 0", bob, "?max_depth=0", []string{root}},
		} {
			if got := get(tc.c, tc.query).ids(); !slices.Equal(got, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
			}
		}
		h := get(bob, "")
		if h.Rooms[0].RoomType != "m.space" || h.Rooms[0].Name != "Root" || len(h.Rooms[0].ChildrenState) != 4 {
			t.Fatalf("root entry: %+v", h.Rooms[0])
		}
		if cs := h.Rooms[0].ChildrenState[0]; cs["type"] != "m.space.child" || cs["state_key"] != sub || cs["origin_server_ts"] == nil {
			t.Fatalf("children_state entry: %v", cs)
		}
		if len(h.Rooms[3].ChildrenState) != 0 {
			t.Fatalf("a plain room has children: %+v", h.Rooms[3])
		}
		// Pagination, two rooms a page.
		var seen []string
		from := ""
		for i := 0; i < 5; i++ {
			q := "?limit=2"
			if from != "" {
				q += "&from=" + from
			}
			p := get(bob, q)
			seen = append(seen, p.ids()...)
			if p.NextBatch == "" {
				break
			}
			from = p.NextBatch
		}
		if want := []string{root, sub, deep, r1, r2}; !slices.Equal(seen, want) {
			t.Fatalf("paginated %v, want %v", seen, want)
		}
		first := get(bob, "?limit=2")
		for _, q := range []string{"?from=" + first.NextBatch + "&max_depth=1", "?from=" + first.NextBatch + "&suggested_only=true", "?from=junk", "?limit=0", "?max_depth=-1"} {
			if r := bob.Do("GET", "/_matrix/client/v1/rooms/"+esc(root)+"/hierarchy"+q, nil); r.Status != 400 || r.ErrCode() != "M_INVALID_PARAM" {
				t.Errorf("%s: %d %s", q, r.Status, r.Body)
			}
		}
		// A room the user may not see.
		if r := bob.Do("GET", "/_matrix/client/v1/rooms/"+esc(secret)+"/hierarchy", nil); r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
			t.Errorf("private root: %d %s", r.Status, r.Body)
		}
		if r := bob.Do("GET", "/_matrix/client/v1/rooms/"+esc("!unknown:"+srv)+"/hierarchy", nil); r.Status != 403 {
			t.Errorf("unknown root: %d %s", r.Status, r.Body)
		}
	})
}

func TestDirectoryFederation(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			f := newFederation(t)
			var o1, o2 []ts.Option
			if engine == "postgres" {
				o1, o2 = []ts.Option{ts.WithPostgres(t)}, []ts.Option{ts.WithPostgres(t)}
			}
			hidden := ts.WithConfig(func(c *config.Config) { c.Profile.RequireSharedRoom = true })
			hs1 := ts.New(t, append(o1, f.Server(), hidden)...)
			hs2 := ts.New(t, append(o2, f.Server())...)
			alice, bob := hs1.Register(t, "alice"), hs2.Register(t, "bob")
			name1 := hs1.Config.ServerName

			// Another server's published rooms.
			pub := alice.CreateRoom(map[string]any{"visibility": "public", "preset": "public_chat", "name": "Federated café"})
			alice.CreateRoom(map[string]any{"visibility": "public", "preset": "public_chat", "name": "Other"})
			var p publicRoomsResp
			bob.MustDo("GET", "/_matrix/client/v3/publicRooms?server="+url.QueryEscape(name1), nil, &p)
			if len(p.Chunk) != 2 || p.Total == nil || *p.Total != 2 {
				t.Fatalf("remote directory: %+v", p)
			}
			bob.MustDo("POST", "/_matrix/client/v3/publicRooms?server="+url.QueryEscape(name1),
				map[string]any{"filter": map[string]any{"generic_search_term": "cafe"}}, &p)
			if !slices.Equal(p.ids(), []string{pub}) || p.Chunk[0].Name != "Federated café" {
				t.Fatalf("remote filtered directory: %+v", p)
			}
			if r := bob.Do("GET", "/_matrix/client/v3/publicRooms?server=nowhere.test", nil); r.Status != 502 {
				t.Fatalf("unreachable server: %d %s", r.Status, r.Body)
			}

			// A local space whose child is a space on the other server.
			remoteSpace := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Remote space", "creation_content": map[string]any{"type": "m.space"}})
			priv := alice.CreateRoom(map[string]any{"preset": "private_chat", "name": "Private"})
			for _, child := range []string{pub, priv} {
				alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(remoteSpace)+"/state/m.space.child/"+esc(child), map[string]any{"via": []string{name1}}, nil)
			}
			local := bob.CreateRoom(map[string]any{"preset": "public_chat", "name": "Local space", "creation_content": map[string]any{"type": "m.space"}})
			bob.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(local)+"/state/m.space.child/"+esc(remoteSpace), map[string]any{"via": []string{name1}}, nil)
			var h hierarchyResp
			bob.MustDo("GET", "/_matrix/client/v1/rooms/"+esc(local)+"/hierarchy", nil, &h)
			if want := []string{local, remoteSpace, pub}; !slices.Equal(h.ids(), want) {
				t.Fatalf("hierarchy over federation: %v, want %v", h.ids(), want)
			}
			if h.Rooms[1].Name != "Remote space" || len(h.Rooms[1].ChildrenState) != 2 {
				t.Fatalf("remote space entry: %+v", h.Rooms[1])
			}

			// Joining a room over federation indexes its summary and its
			// remote members: Bob finds Alice, whom he now shares a room with.
			setName(t, alice, "Alice Fédérée")
			// (The join has partial state: members are indexed once the
			// room's whole state has been fetched, just after.)
			bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(pub)+"?server_name="+url.QueryEscape(name1), map[string]any{}, nil)
			eventually(t, 10*time.Second, func() string {
				if r := search(t, bob, "federee", 0); !slices.Equal(r.ids(), []string{alice.UserID}) {
					return fmt.Sprintf("remote room mate: %v", r.ids())
				}
				return ""
			})
			bob.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(local)+"/state/m.space.child/"+esc(pub), map[string]any{"via": []string{name1}}, nil)
			bob.MustDo("GET", "/_matrix/client/v1/rooms/"+esc(local)+"/hierarchy?max_depth=1", nil, &h)
			if len(h.Rooms) != 3 || h.Rooms[2].RoomID != pub || h.Rooms[2].Name != "Federated café" {
				t.Errorf("joined remote room in the hierarchy: %+v", h.Rooms)
			}

			// The federation profile query keeps hidden users hidden: Carol
			// shares no room with hs2's users until she opts in; Alice does
			// since Bob joined.
			carol := hs1.Register(t, "carol")
			ctx := context.Background()
			profile := func(c *ts.Client) error {
				var prof map[string]any
				return hs2.Federation.Do(ctx, name1, "GET", "/_matrix/federation/v1/query/profile?user_id="+url.QueryEscape(c.UserID), nil, &prof)
			}
			if err := profile(carol); err == nil || !strings.Contains(err.Error(), "403") {
				t.Fatalf("hidden profile over federation: %v", err)
			}
			optIn(t, carol, true)
			for _, c := range []*ts.Client{carol, alice} {
				if err := profile(c); err != nil {
					t.Fatalf("profile of %s over federation: %v", c.UserID, err)
				}
			}
		})
	}
}

// TestUserDirectoryFillAtStart: accounts and profiles changed while the
// server's hooks did not run (a bulk import, a crash, an upgrade) are in
// the directory after the next start, and the directory still lists only
// users who opted in (directory.default_visible is off by default).
func TestUserDirectoryFillAtStart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		me := s.Register(t, "searcher")
		mk := func(name, display string) *ts.Client {
			c := s.Register(t, name)
			setName(t, c, display)
			optIn(t, c, true)
			return c
		}
		steady := mk("steady", "Steady Listed")
		renamed := mk("renamed", "Oldname Person")
		leaving := mk("leaving", "Leaving Directory")
		gone := mk("gone", "Gone Away")
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		// What an import or a lost hook leaves: rows changed behind the
		// server's back.
		ctx := context.Background()
		dsn, _ := s.Config.PostgresDSN()
		st, err := store.Open(ctx, store.Options{DataDir: s.Config.DataDir, PostgresDSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		server := strings.SplitN(me.UserID, ":", 2)[1]
		err = st.InTx(ctx, func(tx *store.Tx) error {
			for _, u := range []struct{ local, name string }{{"newcomer", "Newcomer Listed"}, {"silent", "Silent Newcomer"}} {
				if err := tx.CreateUser(ctx, store.User{UserID: "@" + u.local + ":" + server, DisplayName: sql.NullString{String: u.name, Valid: true}}); err != nil {
					return err
				}
			}
			if _, err := tx.PutAccountData(ctx, "@newcomer:"+server, "", "lu.luxchat.directory", []byte(`{"visible":true}`)); err != nil {
				return err
			}
			if err := tx.SetDisplayName(ctx, renamed.UserID, sql.NullString{String: "Newname Person", Valid: true}); err != nil {
				return err
			}
			if _, err := tx.PutAccountData(ctx, leaving.UserID, "", "lu.luxchat.directory", []byte(`{"visible":false}`)); err != nil {
				return err
			}
			return tx.Deactivate(ctx, gone.UserID)
		})
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		s2 := s.Restart(t)
		me.URL = s2.URL
		for _, tc := range []struct{ term, want string }{
			{"steady", steady.UserID},
			{"newcomer listed", "@newcomer:" + server},
			{"silent", ""}, // no choice: not listed
			{"newname", renamed.UserID},
			{"oldname", ""},
			{"leaving", ""}, // opted out
			{"gone", ""},    // deactivated
		} {
			got := strings.Join(search(t, me, tc.term, 0).ids(), ",")
			if got != tc.want {
				t.Errorf("after restart, search %q = %q, want %q", tc.term, got, tc.want)
			}
		}
	})
}
