package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	ts "luxchat/internal/testserver"
)

type searchGroup struct {
	NextBatch string   `json:"next_batch"`
	Order     int      `json:"order"`
	Results   []string `json:"results"`
}

type searchResult struct {
	Rank   float64 `json:"rank"`
	Result struct {
		event
		RoomID string `json:"room_id"`
	} `json:"result"`
	Context *struct {
		Start        string                    `json:"start"`
		End          string                    `json:"end"`
		ProfileInfo  map[string]map[string]any `json:"profile_info"`
		EventsBefore []event                   `json:"events_before"`
		EventsAfter  []event                   `json:"events_after"`
	} `json:"context"`
}

type roomEvents struct {
	Count      int                                `json:"count"`
	Highlights []string                           `json:"highlights"`
	Results    []searchResult                     `json:"results"`
	State      map[string][]event                 `json:"state"`
	Groups     map[string]map[string]*searchGroup `json:"groups"`
	NextBatch  string                             `json:"next_batch"`
}

// searchDo runs POST /search with room_events criteria.
func searchDo(c *ts.Client, nextBatch string, criteria map[string]any) *ts.Response {
	path := "/_matrix/client/v3/search"
	if nextBatch != "" {
		path += "?next_batch=" + url.QueryEscape(nextBatch)
	}
	return c.Do("POST", path, map[string]any{"search_categories": map[string]any{"room_events": criteria}})
}

func searchFor(t *testing.T, c *ts.Client, nextBatch string, criteria map[string]any) roomEvents {
	t.Helper()
	r := searchDo(c, nextBatch, criteria)
	if r.Status != http.StatusOK {
		t.Fatalf("search %v: %d %s", criteria, r.Status, r.Body)
	}
	var out struct {
		SearchCategories struct {
			RoomEvents roomEvents `json:"room_events"`
		} `json:"search_categories"`
	}
	if err := r.JSON(&out); err != nil {
		t.Fatal(err)
	}
	return out.SearchCategories.RoomEvents
}

func resultBodies(re roomEvents) []string {
	var out []string
	for _, r := range re.Results {
		b, _ := r.Result.Content["body"].(string)
		out = append(out, b)
	}
	return out
}

func term(s string) map[string]any { return map[string]any{"search_term": s} }

func TestSearchRankingOrderKeysFilter(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "Zebra crossing", "topic": "all about zebra stripes"})
		bob.Join(room)
		strong := alice.SendText(room, "apple apple apple apple")
		weak := alice.SendText(room, "an apple among many other words in a rather long sentence about fruit baskets")
		alice.SendText(room, "banana only")
		zebraMsg := bob.SendText(room, "a zebra walked by")

		// Rank: the message that is all about apples comes first.
		re := searchFor(t, bob, "", term("apple"))
		if len(re.Results) != 2 || re.Results[0].Result.EventID != strong || re.Results[1].Result.EventID != weak {
			t.Fatalf("rank order: %+v", resultBodies(re))
		}
		if re.Results[0].Rank < re.Results[1].Rank || re.Count != 2 || !slices.Equal(re.Highlights, []string{"apple"}) {
			t.Fatalf("ranks %v %v count %d highlights %v", re.Results[0].Rank, re.Results[1].Rank, re.Count, re.Highlights)
		}
		if re.Results[0].Result.Content["body"] != "apple apple apple apple" || re.Results[0].Result.Sender != alice.UserID {
			t.Fatalf("result event: %+v", re.Results[0].Result)
		}
		// Recent: newest first.
		c := term("apple")
		c["order_by"] = "recent"
		re = searchFor(t, bob, "", c)
		if len(re.Results) != 2 || re.Results[0].Result.EventID != weak {
			t.Fatalf("recent order: %+v", resultBodies(re))
		}
		// Prefixes match; all words are required.
		if re := searchFor(t, bob, "", term("APP")); len(re.Results) != 2 {
			t.Fatalf("prefix: %v", resultBodies(re))
		}
		if re := searchFor(t, bob, "", term("apple fruit")); len(re.Results) != 1 || re.Results[0].Result.EventID != weak {
			t.Fatalf("two words: %v", resultBodies(re))
		}

		// Keys: name, topic and body are searched by default, one by one
		// on request.
		types := func(re roomEvents) []string {
			var out []string
			for _, r := range re.Results {
				out = append(out, r.Result.Type)
			}
			slices.Sort(out)
			return out
		}
		if got := types(searchFor(t, bob, "", term("zebra"))); !slices.Equal(got, []string{"m.room.message", "m.room.name", "m.room.topic"}) {
			t.Fatalf("default keys: %v", got)
		}
		for key, want := range map[string]string{"content.name": "m.room.name", "content.topic": "m.room.topic", "content.body": "m.room.message"} {
			c := term("zebra")
			c["keys"] = []string{key}
			if got := types(searchFor(t, bob, "", c)); !slices.Equal(got, []string{want}) {
				t.Fatalf("keys [%s]: %v", key, got)
			}
		}

		// Filter: senders, not_senders, rooms, not_rooms, types.
		other := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(other)
		inOther := alice.SendText(other, "zebra elsewhere")
		for _, tc := range []struct {
			name   string
			filter map[string]any
			want   []string
		}{
			{"senders", map[string]any{"senders": []string{bob.UserID}}, []string{zebraMsg}},
			{"rooms", map[string]any{"rooms": []string{other}}, []string{inOther}},
			{"not_rooms", map[string]any{"not_rooms": []string{room}}, []string{inOther}},
			{"types and not_senders", map[string]any{"types": []string{"m.room.message"}, "not_senders": []string{bob.UserID}}, []string{inOther}},
		} {
			c := term("zebra")
			c["filter"] = tc.filter
			var got []string
			for _, r := range searchFor(t, bob, "", c).Results {
				got = append(got, r.Result.EventID)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("filter %s: got %v want %v", tc.name, got, tc.want)
			}
		}

		// Bad requests are Matrix errors.
		for _, tc := range []struct {
			body map[string]any
			code string
		}{
			{map[string]any{"keys": []string{"content.body"}}, "M_MISSING_PARAM"},
			{map[string]any{"search_term": "x", "keys": []string{"content.url"}}, "M_INVALID_PARAM"},
			{map[string]any{"search_term": "x", "order_by": "oldest"}, "M_INVALID_PARAM"},
			{map[string]any{"search_term": "x", "groupings": map[string]any{"group_by": []map[string]string{{"key": "type"}}}}, "M_INVALID_PARAM"},
			{map[string]any{"search_term": "x", "filter": map[string]any{"limit": -1}}, "M_INVALID_PARAM"},
			{map[string]any{"search_term": 5}, "M_BAD_JSON"},
		} {
			if r := searchDo(bob, "", tc.body); r.Status != http.StatusBadRequest || r.ErrCode() != tc.code {
				t.Fatalf("%v: %d %s", tc.body, r.Status, r.Body)
			}
		}
		if r := searchDo(bob, "bm90IGEgdG9rZW4", term("apple")); r.Status != http.StatusBadRequest || r.ErrCode() != "M_INVALID_PARAM" {
			t.Fatalf("bad next_batch: %d %s", r.Status, r.Body)
		}
		if r := bob.Do("POST", "/_matrix/client/v3/search", map[string]any{}); r.Status != http.StatusBadRequest {
			t.Fatalf("no categories: %d %s", r.Status, r.Body)
		}
		if r := s.Anonymous(t).Do("POST", "/_matrix/client/v3/search", map[string]any{}); r.Status != http.StatusUnauthorized {
			t.Fatalf("anonymous search: %d %s", r.Status, r.Body)
		}
	})
}

func TestSearchPaginationGroupsContext(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		alice.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/displayname", map[string]string{"displayname": "Alice A."}, nil)
		r1 := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		r2 := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(r1)
		bob.Join(r2)
		want := map[string]bool{}
		for i := range 25 {
			room, who := r1, alice
			if i%3 == 0 {
				room, who = r2, bob
			}
			want[who.SendText(room, fmt.Sprintf("report number %d", i))] = true
		}

		// Every order pages through all 25 results exactly once, 10 at a
		// time, and the last page has no next_batch.
		for _, order := range []string{"rank", "recent"} {
			seen := map[string]bool{}
			next, pages := "", 0
			for {
				c := map[string]any{"search_term": "report", "order_by": order, "filter": map[string]any{"limit": 10}}
				re := searchFor(t, bob, next, c)
				pages++
				if re.Count != 25 {
					t.Fatalf("%s: count %d", order, re.Count)
				}
				for _, r := range re.Results {
					if seen[r.Result.EventID] || !want[r.Result.EventID] {
						t.Fatalf("%s: duplicate or unexpected result %s", order, r.Result.EventID)
					}
					seen[r.Result.EventID] = true
				}
				if re.NextBatch == "" {
					break
				}
				if len(re.Results) != 10 || pages > 5 {
					t.Fatalf("%s: page %d has %d results", order, pages, len(re.Results))
				}
				next = re.NextBatch
			}
			if len(seen) != 25 || pages != 3 {
				t.Fatalf("%s: %d results over %d pages", order, len(seen), pages)
			}
		}
		// A token of one order is refused by the other.
		c := map[string]any{"search_term": "report", "order_by": "recent", "filter": map[string]any{"limit": 5}}
		tok := searchFor(t, bob, "", c).NextBatch
		if r := searchDo(bob, tok, term("report")); r.Status != http.StatusBadRequest {
			t.Fatalf("token of another order: %d %s", r.Status, r.Body)
		}

		// Groups: by room and by sender, each with its own next_batch
		// that continues within the group.
		c = map[string]any{"search_term": "report", "order_by": "recent", "filter": map[string]any{"limit": 6},
			"groupings": map[string]any{"group_by": []map[string]string{{"key": "room_id"}, {"key": "sender"}}}}
		re := searchFor(t, bob, "", c)
		byRoom, bySender := re.Groups["room_id"], re.Groups["sender"]
		if byRoom[r1] == nil || byRoom[r2] == nil || bySender[alice.UserID] == nil || bySender[bob.UserID] == nil {
			t.Fatalf("groups: %+v", re.Groups)
		}
		if n := len(byRoom[r1].Results) + len(byRoom[r2].Results); n != 6 {
			t.Fatalf("room groups hold %d results", n)
		}
		if byRoom[r2].NextBatch == "" || bySender[alice.UserID].NextBatch == "" {
			t.Fatalf("groups without next_batch: %+v %+v", byRoom[r2], bySender[alice.UserID])
		}
		shown := map[string]bool{}
		for _, id := range byRoom[r2].Results {
			shown[id] = true
		}
		more := searchFor(t, bob, byRoom[r2].NextBatch, c)
		if len(more.Results) == 0 {
			t.Fatal("room group's next_batch returned nothing")
		}
		for _, r := range more.Results {
			if r.Result.RoomID != r2 || shown[r.Result.EventID] {
				t.Fatalf("room group page: %+v", r.Result)
			}
		}
		for _, r := range searchFor(t, bob, bySender[alice.UserID].NextBatch, c).Results {
			if r.Result.Sender != alice.UserID {
				t.Fatalf("sender group page: %+v", r.Result)
			}
		}

		// Context with historic profiles, and the rooms' state.
		c = map[string]any{"search_term": "number 13", "include_state": true,
			"event_context": map[string]any{"before_limit": 2, "after_limit": 1, "include_profile": true}}
		re = searchFor(t, bob, "", c)
		if len(re.Results) != 1 || re.Results[0].Context == nil {
			t.Fatalf("context: %s", fmt.Sprint(re.Results))
		}
		ctx := re.Results[0].Context
		if len(ctx.EventsBefore) != 2 || len(ctx.EventsAfter) != 1 || ctx.Start == "" || ctx.End == "" {
			t.Fatalf("context sizes: %d before, %d after", len(ctx.EventsBefore), len(ctx.EventsAfter))
		}
		if !slices.Equal(bodies(ctx.EventsBefore), []string{"report number 11", "report number 10"}) || !slices.Equal(bodies(ctx.EventsAfter), []string{"report number 14"}) {
			t.Fatalf("context events: %v %v", bodies(ctx.EventsBefore), bodies(ctx.EventsAfter))
		}
		if p := ctx.ProfileInfo[alice.UserID]; p == nil || p["displayname"] != "Alice A." {
			t.Fatalf("profile_info: %+v", ctx.ProfileInfo)
		}
		st := re.State[r1]
		if !slices.ContainsFunc(st, func(e event) bool { return e.Type == "m.room.create" }) || re.State[r2] != nil {
			t.Fatalf("state: %d events in r1, r2 present: %v", len(st), re.State[r2] != nil)
		}
		// No context unless asked for.
		if re := searchFor(t, bob, "", term("number 12")); re.Results[0].Context != nil || re.State != nil {
			t.Fatalf("unrequested context or state: %+v", re)
		}
	})
}

func TestSearchVisibility(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		found := func(c *ts.Client, word string) int {
			t.Helper()
			re := searchFor(t, c, "", term(word))
			if len(re.Results) != re.Count {
				t.Fatalf("%s: %d results, count %d", word, len(re.Results), re.Count)
			}
			return len(re.Results)
		}

		// A room bob never joined is never searched.
		secret := carol.CreateRoom(map[string]any{"preset": "public_chat"})
		carol.SendText(secret, "carolsecret plans")
		if n := found(bob, "carolsecret"); n != 0 {
			t.Fatalf("bob found %d events of a room he never joined", n)
		}
		if n := found(carol, "carolsecret"); n != 1 {
			t.Fatalf("carol found %d of her own", n)
		}

		// Encrypted events are never indexed.
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		alice.Send(room, "m.room.encrypted", map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "hiddenword", "body": "hiddenword",
			"sender_key": "k", "session_id": "s", "device_id": "D"})
		if n := found(bob, "hiddenword"); n != 0 {
			t.Fatal("an encrypted event was found")
		}
		// Nor is anything of an encrypted room, plain text included.
		encRoom := alice.CreateRoom(map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
			{"type": "m.room.encryption", "state_key": "", "content": map[string]string{"algorithm": "m.megolm.v1.aes-sha2"}}}})
		bob.Join(encRoom)
		alice.SendText(encRoom, "plaintextleak in an encrypted room")
		if n := found(bob, "plaintextleak"); n != 0 {
			t.Fatal("a message of an encrypted room was found")
		}

		// A redacted message is no longer found.
		red := alice.SendText(room, "redactme please")
		if n := found(bob, "redactme"); n != 1 {
			t.Fatalf("before redaction: %d", n)
		}
		alice.MustDo("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/redact/%s/r1", esc(room), esc(red)), map[string]string{"reason": "oops"}, nil)
		if n := found(bob, "redactme"); n != 0 || found(alice, "redactme") != 0 {
			t.Fatal("a redacted message was found")
		}

		// Left rooms: what bob could see until he left, nothing after.
		alice.SendText(room, "beforeleave notes")
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		alice.SendText(room, "afterleave notes")
		if found(bob, "beforeleave") != 1 || found(bob, "afterleave") != 0 || found(bob, "notes") != 1 {
			t.Fatal("left room: wrong results")
		}
		// Forgetting the room takes it out of search.
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/forget", map[string]any{}, nil)
		if found(bob, "beforeleave") != 0 {
			t.Fatal("a forgotten room was searched")
		}

		// history_visibility joined: nothing from before bob joined.
		hv := alice.CreateRoom(map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
			{"type": "m.room.history_visibility", "state_key": "", "content": map[string]string{"history_visibility": "joined"}}}})
		alice.SendText(hv, "prejoin words")
		bob.Join(hv)
		alice.SendText(hv, "postjoin words")
		if found(bob, "prejoin") != 0 || found(bob, "postjoin") != 1 || found(alice, "words") != 2 {
			t.Fatal("history visibility not applied")
		}
		// An invite alone opens nothing.
		inv := alice.CreateRoom(map[string]any{"preset": "public_chat", "invite": []string{carol.UserID}})
		alice.SendText(inv, "invitedonly text")
		if found(alice, "invitedonly") != 1 || found(carol, "invitedonly") != 0 {
			t.Fatal("an invited user searched the room")
		}
	})
}

func TestSearchHostileTerms(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		tricky := alice.SendText(room, `she said "quoted" (paren) a-b c:d ^caret NEAR OR *star*`)
		cafe := alice.SendText(room, "Grüße aus dem Café")
		alice.SendText(room, "plain filler")
		nul := alice.SendText(room, "nul\x00byte")
		for _, tc := range []struct {
			term string
			want string // an event the term must find; "" when any answer will do
		}{
			{`"`, ""},
			{`""`, ""},
			{`"quoted`, tricky},
			{`quoted"`, tricky},
			{`*`, ""},
			{`star*`, tricky},
			{`NEAR`, tricky},
			{`NEAR(quoted paren)`, tricky},
			{`OR`, tricky},
			{`quoted OR nothing`, ""},
			{`-paren`, tricky},
			{`(paren`, tricky},
			{`c:d`, tricky},
			{`body:quoted`, ""},
			{`^caret`, tricky},
			{`'`, ""},
			{`it's`, ""},
			{`quoted & !paren | <->`, ""},
			{`:*`, ""},
			{"", ""},
			{"   \t\n", ""},
			{"\x00", ""},
			{strings.Repeat("a b \" ( * ", 1000), ""},
			{strings.Repeat("x", 10240), ""},
			{"byte", nul},
			{"grüße", cafe},
			{"café", cafe},
			{"日本語 🙂 ﷽", ""},
		} {
			r := searchDo(alice, "", map[string]any{"search_term": tc.term})
			if tc.term == "\x00" {
				if r.Status != http.StatusOK && r.Status != http.StatusBadRequest {
					t.Fatalf("NUL: %d %s", r.Status, r.Body)
				}
				continue
			}
			if r.Status != http.StatusOK {
				t.Fatalf("term %.40q: %d %s", tc.term, r.Status, r.Body)
			}
			if tc.want == "" {
				continue
			}
			var out struct {
				SearchCategories struct {
					RoomEvents roomEvents `json:"room_events"`
				} `json:"search_categories"`
			}
			_ = r.JSON(&out)
			if !slices.ContainsFunc(out.SearchCategories.RoomEvents.Results, func(x searchResult) bool { return x.Result.EventID == tc.want }) {
				t.Fatalf("term %q did not find its event: %s", tc.term, r.Body)
			}
		}
	})
}
