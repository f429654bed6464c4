package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	ts "luxchat/internal/testserver"
)

type relPage struct {
	Chunk          []event `json:"chunk"`
	NextBatch      string  `json:"next_batch"`
	PrevBatch      string  `json:"prev_batch"`
	RecursionDepth *int    `json:"recursion_depth"`
}

// relGet fetches /relations; path is "" or "/relType" or "/relType/eventType".
func relGet(t *testing.T, c *ts.Client, room, parent, path, query string) relPage {
	t.Helper()
	var p relPage
	c.MustDo("GET", fmt.Sprintf("/_matrix/client/v1/rooms/%s/relations/%s%s?%s", esc(room), esc(parent), path, query), nil, &p)
	return p
}

func relIDs(evs []event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.EventID)
	}
	return out
}

func react(c *ts.Client, room, parent, key string) string {
	return c.Send(room, "m.reaction", map[string]any{"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": parent, "key": key}})
}

func threadReply(c *ts.Client, room, root, body string) string {
	return c.Send(room, "m.room.message", map[string]any{"msgtype": "m.text", "body": body,
		"m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": root, "is_falling_back": true}})
}

func edit(c *ts.Client, room, evType, original, body string) string {
	return c.Send(room, evType, map[string]any{"msgtype": "m.text", "body": "* " + body,
		"m.new_content": map[string]any{"msgtype": "m.text", "body": body},
		"m.relates_to":  map[string]any{"rel_type": "m.replace", "event_id": original}})
}

func getEvent(t *testing.T, c *ts.Client, room, id string) event {
	t.Helper()
	var e event
	c.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(id), nil, &e)
	return e
}

// bundle returns unsigned.m.relations[relType] of an event (nil if none).
func bundle(e event, relType string) map[string]any {
	rels, _ := e.Unsigned["m.relations"].(map[string]any)
	m, _ := rels[relType].(map[string]any)
	return m
}

func findEvent(evs []event, id string) *event {
	for i := range evs {
		if evs[i].EventID == id {
			return &evs[i]
		}
	}
	return nil
}

func TestRelationsPagination(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		parent := alice.SendText(room, "parent")
		var children []string // oldest first
		for i := range 4 {
			children = append(children, react(alice, room, parent, fmt.Sprint("k", i)))
		}
		r1 := threadReply(alice, room, parent, "one")
		children = append(children, r1)
		r2 := threadReply(alice, room, parent, "two")
		children = append(children, r2)
		alice.SendText(room, "unrelated")
		grand := react(alice, room, r1, "deep") // a child of a child
		newestFirst := slices.Clone(children)
		slices.Reverse(newestFirst)

		// Backwards (the default) in pages of 4.
		var got []string
		from := ""
		for range 5 {
			q := "limit=4"
			if from != "" {
				q += "&from=" + from
			}
			p := relGet(t, alice, room, parent, "", q)
			got = append(got, relIDs(p.Chunk)...)
			if p.RecursionDepth != nil {
				t.Errorf("recursion_depth without recurse: %d", *p.RecursionDepth)
			}
			if p.NextBatch == "" {
				break
			}
			from = p.NextBatch
		}
		if !slices.Equal(got, newestFirst) {
			t.Fatalf("backwards: got %v, want %v", got, newestFirst)
		}
		// Forwards.
		p := relGet(t, alice, room, parent, "", "dir=f&limit=3")
		if !slices.Equal(relIDs(p.Chunk), children[:3]) || p.NextBatch == "" {
			t.Fatalf("forwards page 1: %v next %q", relIDs(p.Chunk), p.NextBatch)
		}
		p2 := relGet(t, alice, room, parent, "", "dir=f&limit=10&from="+p.NextBatch)
		if !slices.Equal(relIDs(p2.Chunk), children[3:]) || p2.NextBatch != "" || p2.PrevBatch != p.NextBatch {
			t.Fatalf("forwards page 2: %v next %q prev %q", relIDs(p2.Chunk), p2.NextBatch, p2.PrevBatch)
		}
		// from and to bound a range: the first page's next token to the
		// second page's next token is exactly page 2.
		pa := relGet(t, alice, room, parent, "", "limit=2")
		pb := relGet(t, alice, room, parent, "", "limit=2&from="+pa.NextBatch)
		pc := relGet(t, alice, room, parent, "", "limit=10&from="+pa.NextBatch+"&to="+pb.NextBatch)
		if !slices.Equal(relIDs(pc.Chunk), relIDs(pb.Chunk)) {
			t.Fatalf("from/to: %v, want %v", relIDs(pc.Chunk), relIDs(pb.Chunk))
		}

		// Filters.
		if p := relGet(t, alice, room, parent, "/m.annotation", ""); len(p.Chunk) != 4 {
			t.Errorf("m.annotation: %d children", len(p.Chunk))
		}
		if p := relGet(t, alice, room, parent, "/m.annotation/m.reaction", ""); len(p.Chunk) != 4 {
			t.Errorf("m.annotation/m.reaction: %d children", len(p.Chunk))
		}
		if p := relGet(t, alice, room, parent, "/m.annotation/m.room.message", ""); len(p.Chunk) != 0 {
			t.Errorf("m.annotation/m.room.message: %d children", len(p.Chunk))
		}
		if p := relGet(t, alice, room, parent, "/m.thread", ""); !slices.Equal(relIDs(p.Chunk), []string{r2, r1}) {
			t.Errorf("m.thread: %v", relIDs(p.Chunk))
		}

		// Recursion reaches the grandchild; filters apply at every depth.
		p = relGet(t, alice, room, parent, "", "recurse=true")
		if p.RecursionDepth == nil || *p.RecursionDepth != 3 || len(p.Chunk) != len(children)+1 || p.Chunk[0].EventID != grand {
			t.Fatalf("recurse: depth %v, %v", p.RecursionDepth, relIDs(p.Chunk))
		}
		if p := relGet(t, alice, room, parent, "/m.annotation", "recurse=true"); len(p.Chunk) != 5 {
			t.Errorf("recursive m.annotation: %d children", len(p.Chunk))
		}
		if p := relGet(t, alice, room, parent, "", "recurse=false"); p.RecursionDepth == nil || *p.RecursionDepth != 1 || len(p.Chunk) != len(children) {
			t.Errorf("recurse=false: depth %v, %d children", p.RecursionDepth, len(p.Chunk))
		}

		// Bad input.
		base := "/_matrix/client/v1/rooms/" + esc(room) + "/relations/" + esc(parent)
		wantError(t, alice.Do("GET", base+"?dir=x", nil), http.StatusBadRequest, "M_INVALID_PARAM")
		wantError(t, alice.Do("GET", base+"?limit=abc", nil), http.StatusBadRequest, "M_INVALID_PARAM")
		wantError(t, alice.Do("GET", base+"?from=nonsense", nil), http.StatusBadRequest, "M_INVALID_PARAM")
		wantError(t, alice.Do("GET", base+"?recurse=maybe", nil), http.StatusBadRequest, "M_INVALID_PARAM")
		wantError(t, alice.Do("GET", "/_matrix/client/v1/rooms/"+esc(room)+"/relations/$nope", nil), http.StatusNotFound, "M_NOT_FOUND")
	})
}

func TestRelationsVisibility(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, eve := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "eve")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		parent := alice.SendText(room, "parent")
		before := react(alice, room, parent, "before")
		edit1 := edit(alice, room, "m.room.message", parent, "edited while bob was here")
		root := alice.SendText(room, "thread root")
		seen := threadReply(alice, room, root, "before bob left")
		bob.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		react(alice, room, parent, "after")
		edit(alice, room, "m.room.message", parent, "edited after bob left")
		threadReply(alice, room, root, "after bob left")
		root2 := alice.SendText(room, "thread root after bob left")
		threadReply(alice, room, root2, "reply")

		// Bob's view of the thread stops at his leave.
		th := bundle(getEvent(t, bob, room, root), "m.thread")
		if latest, _ := th["latest_event"].(map[string]any); th["count"] != float64(1) || latest["event_id"] != seen {
			t.Errorf("bob's thread summary: %v", th)
		}
		var threads struct {
			Chunk []event `json:"chunk"`
		}
		bob.MustDo("GET", "/_matrix/client/v1/rooms/"+esc(room)+"/threads", nil, &threads)
		if got := relIDs(threads.Chunk); !slices.Equal(got, []string{root}) {
			t.Errorf("bob's threads: %v", got)
		}
		alice.MustDo("GET", "/_matrix/client/v1/rooms/"+esc(room)+"/threads", nil, &threads)
		if got := relIDs(threads.Chunk); !slices.Equal(got, []string{root2, root}) {
			t.Errorf("alice's threads: %v", got)
		}

		if p := relGet(t, bob, room, parent, "", ""); !slices.Equal(relIDs(p.Chunk), []string{edit1, before}) {
			t.Errorf("bob after leaving sees %v", relIDs(p.Chunk))
		}
		if p := relGet(t, alice, room, parent, "", ""); len(p.Chunk) != 4 {
			t.Errorf("alice sees %d children", len(p.Chunk))
		}
		// The edit bundled for bob is the one he could see.
		if r := bundle(getEvent(t, bob, room, parent), "m.replace"); r == nil || r["event_id"] != edit1 {
			t.Errorf("bob's m.replace bundle: %v", r)
		}
		// A user who never joined a shared-history room sees nothing.
		wantError(t, eve.Do("GET", "/_matrix/client/v1/rooms/"+esc(room)+"/relations/"+esc(parent), nil), http.StatusNotFound, "M_NOT_FOUND")
		wantError(t, eve.Do("GET", "/_matrix/client/v1/rooms/"+esc(room)+"/threads", nil), http.StatusForbidden, "M_FORBIDDEN")
	})
}

func TestEditBundles(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		orig := alice.SendText(room, "original")
		edit1 := edit(alice, room, "m.room.message", orig, "first edit")
		// The latest edit is the one with the latest origin_server_ts (ties
		// go to the largest event id): make the order unambiguous.
		time.Sleep(3 * time.Millisecond)
		edit2 := edit(alice, room, "m.room.message", orig, "second edit")
		// Invalid replacements are stored (the server does not refuse them)
		// but never bundled.
		byBob := edit(bob, room, "m.room.message", orig, "bob's edit")
		otherType := edit(alice, room, "org.example.note", orig, "changed type")
		alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "no new content",
			"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": orig}})
		editOfEdit := edit(alice, room, "m.room.message", edit1, "edit of an edit")
		for _, id := range []string{byBob, otherType, editOfEdit} {
			getEvent(t, alice, room, id) // stored and served
		}

		check := func(what string, e event, want string) {
			t.Helper()
			r := bundle(e, "m.replace")
			switch {
			case want == "" && r != nil:
				t.Errorf("%s: unexpected m.replace %v", what, r["event_id"])
			case want != "" && (r == nil || r["event_id"] != want):
				t.Errorf("%s: m.replace %v, want %s", what, r, want)
			case want != "":
				nc, _ := r["content"].(map[string]any)["m.new_content"].(map[string]any)
				if nc == nil || r["sender"] != alice.UserID || r["type"] != "m.room.message" {
					t.Errorf("%s: m.replace is not the whole event: %v", what, r)
				}
			}
			if e.EventID == orig && e.Content["body"] != "original" {
				t.Errorf("%s: original content replaced: %v", what, e.Content)
			}
		}
		check("/event", getEvent(t, bob, room, orig), edit2)
		m := messages(t, bob, room, "dir=b&limit=50")
		check("/messages", *findEvent(m.Chunk, orig), edit2)
		var ctx struct {
			Event        event   `json:"event"`
			EventsBefore []event `json:"events_before"`
			EventsAfter  []event `json:"events_after"`
		}
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/context/"+esc(orig), nil, &ctx)
		check("/context", ctx.Event, edit2)
		// The edit of an edit does not make edit1 look edited.
		check("/event of edit1", getEvent(t, bob, room, edit1), "")
		// A limited sync timeline carries bundles.
		sr := doSync(t, bob, "filter="+url.QueryEscape(`{"room":{"timeline":{"limit":8}}}`))
		tl := sr.Rooms.Join[room].Timeline
		if !tl.Limited {
			t.Fatalf("sync timeline not limited")
		}
		if e := findEvent(tl.Events, orig); e == nil {
			// The original scrolled out; its bundle shows on /messages.
		} else {
			check("/sync", *e, edit2)
		}
		sr = doSync(t, bob, "filter="+url.QueryEscape(`{"room":{"timeline":{"limit":9}}}`))
		if e := findEvent(sr.Rooms.Join[room].Timeline.Events, orig); e == nil || !sr.Rooms.Join[room].Timeline.Limited {
			t.Errorf("sync timeline does not hold the original")
		} else {
			check("/sync", *e, edit2)
		}

		// Redacting the latest edit falls back to the previous one.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(edit2)+"/r1", map[string]string{}, nil)
		check("after redacting edit2", getEvent(t, bob, room, orig), edit1)
		// Redacting the original hides every edit.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(orig)+"/r2", map[string]string{}, nil)
		e := getEvent(t, bob, room, orig)
		if bundle(e, "m.replace") != nil {
			t.Errorf("redacted original still has an m.replace bundle")
		}
		// Edits stay listed as children of the redacted original.
		if p := relGet(t, bob, room, orig, "/m.replace", ""); len(p.Chunk) == 0 {
			t.Errorf("no m.replace children listed")
		}
	})
}

func TestEncryptedRelations(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "private_chat"})
		enc := func(rel map[string]any) string {
			c := map[string]any{"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AwgAEn", "sender_key": "k", "device_id": "D", "session_id": "S"}
			if rel != nil {
				c["m.relates_to"] = rel
			}
			return alice.Send(room, "m.room.encrypted", c)
		}
		orig := enc(nil)
		ed := enc(map[string]any{"rel_type": "m.replace", "event_id": orig})
		reply := enc(map[string]any{"rel_type": "m.thread", "event_id": orig})
		if r := bundle(getEvent(t, alice, room, orig), "m.replace"); r == nil || r["event_id"] != ed {
			t.Errorf("encrypted edit not bundled: %v", r)
		}
		if th := bundle(getEvent(t, alice, room, orig), "m.thread"); th == nil || th["count"] != float64(1) {
			t.Errorf("encrypted thread not bundled: %v", th)
		}
		if p := relGet(t, alice, room, orig, "/m.thread/m.room.encrypted", ""); !slices.Equal(relIDs(p.Chunk), []string{reply}) {
			t.Errorf("encrypted thread children: %v", relIDs(p.Chunk))
		}
	})
}

func TestThreads(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		carol.Join(room)
		root1 := alice.SendText(room, "thread one")
		root2 := carol.SendText(room, "thread two")
		threadReply(bob, room, root1, "1a")
		threadReply(alice, room, root2, "2a")
		last := threadReply(bob, room, root1, "1b")
		lastEdit := edit(bob, room, "m.room.message", last, "1b edited")

		summary := func(c *ts.Client, root string) map[string]any {
			t.Helper()
			th := bundle(getEvent(t, c, room, root), "m.thread")
			if th == nil {
				t.Fatalf("no m.thread bundle on %s", root)
			}
			return th
		}
		th := summary(alice, root1)
		latest, _ := th["latest_event"].(map[string]any)
		if th["count"] != float64(2) || latest["event_id"] != last || th["current_user_participated"] != true {
			t.Errorf("alice's summary of thread one: %v", th)
		}
		// The latest event carries its own edit.
		lu, _ := latest["unsigned"].(map[string]any)
		lr, _ := lu["m.relations"].(map[string]any)
		if r, _ := lr["m.replace"].(map[string]any); r == nil || r["event_id"] != lastEdit {
			t.Errorf("latest_event has no m.replace bundle: %v", latest["unsigned"])
		}
		if th := summary(bob, root1); th["current_user_participated"] != true {
			t.Errorf("bob replied but did not participate: %v", th)
		}
		if th := summary(carol, root1); th["current_user_participated"] != false {
			t.Errorf("carol participated in thread one: %v", th)
		}

		threads := func(c *ts.Client, query string) ([]string, string) {
			t.Helper()
			var p struct {
				Chunk     []event `json:"chunk"`
				NextBatch string  `json:"next_batch"`
			}
			c.MustDo("GET", "/_matrix/client/v1/rooms/"+esc(room)+"/threads?"+query, nil, &p)
			for _, e := range p.Chunk {
				if bundle(e, "m.thread") == nil {
					t.Errorf("thread root %s without summary", e.EventID)
				}
			}
			return relIDs(p.Chunk), p.NextBatch
		}
		// Thread one has the latest activity.
		if got, _ := threads(carol, ""); !slices.Equal(got, []string{root1, root2}) {
			t.Errorf("threads: %v", got)
		}
		got, next := threads(carol, "limit=1")
		if !slices.Equal(got, []string{root1}) || next == "" {
			t.Fatalf("threads page 1: %v %q", got, next)
		}
		if got, next := threads(carol, "limit=1&from="+next); !slices.Equal(got, []string{root2}) {
			t.Errorf("threads page 2: %v %q", got, next)
		}
		// carol participated only in her own thread (as its root's sender),
		// bob only in thread one, alice in both.
		if got, _ := threads(carol, "include=participated"); !slices.Equal(got, []string{root2}) {
			t.Errorf("carol participated in %v", got)
		}
		if got, _ := threads(bob, "include=participated"); !slices.Equal(got, []string{root1}) {
			t.Errorf("bob participated in %v", got)
		}
		if got, _ := threads(alice, "include=participated"); !slices.Equal(got, []string{root1, root2}) {
			t.Errorf("alice participated in %v", got)
		}
		// A root sent by an ignored user is shown redacted.
		bob.MustDo("PUT", "/_matrix/client/v3/user/"+esc(bob.UserID)+"/account_data/m.ignored_user_list",
			map[string]any{"ignored_users": map[string]any{carol.UserID: map[string]any{}}}, nil)
		var ip struct {
			Chunk []event `json:"chunk"`
		}
		bob.MustDo("GET", "/_matrix/client/v1/rooms/"+esc(room)+"/threads", nil, &ip)
		for _, e := range ip.Chunk {
			if e.EventID == root2 && (len(e.Content) != 0 || bundle(e, "m.thread") == nil) {
				t.Errorf("ignored user's root: content %v, unsigned %v", e.Content, e.Unsigned)
			}
			if e.EventID == root1 && e.Content["body"] != "thread one" {
				t.Errorf("root of thread one: %v", e.Content)
			}
		}
		if len(ip.Chunk) != 2 {
			t.Errorf("bob's threads with an ignore list: %v", relIDs(ip.Chunk))
		}

		base := "/_matrix/client/v1/rooms/" + esc(room) + "/threads"
		wantError(t, alice.Do("GET", base+"?include=mine", nil), http.StatusBadRequest, "M_INVALID_PARAM")
		wantError(t, alice.Do("GET", base+"?limit=0", nil), http.StatusBadRequest, "M_INVALID_PARAM")
		wantError(t, alice.Do("GET", base+"?from=x", nil), http.StatusBadRequest, "M_INVALID_PARAM")

		// A thread cannot start from an event that has a relation.
		r := alice.Do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.room.message/bad-thread", esc(room)), map[string]any{
			"msgtype": "m.text", "body": "x", "m.relates_to": map[string]any{"rel_type": "m.thread", "event_id": last}})
		wantError(t, r, http.StatusBadRequest, "M_UNKNOWN")
	})
}

func TestReferencesAndCrossRoom(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		other := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		parent := alice.SendText(room, "parent")
		ref := func(r string) string {
			return alice.Send(r, "m.room.message", map[string]any{"msgtype": "m.text", "body": "see above",
				"m.relates_to": map[string]any{"rel_type": "m.reference", "event_id": parent}})
		}
		ref1, ref2 := ref(room), ref(room)
		// Relations into another room are stored as plain events, ignored
		// as relations.
		foreign := ref(other)
		alice.Send(other, "m.room.message", map[string]any{"msgtype": "m.text", "body": "* x", "m.new_content": map[string]any{"body": "x"},
			"m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": parent}})
		getEvent(t, alice, other, foreign)

		e := getEvent(t, alice, room, parent)
		refs := bundle(e, "m.reference")
		chunk, _ := refs["chunk"].([]any)
		var ids []string
		for _, c := range chunk {
			ids = append(ids, c.(map[string]any)["event_id"].(string))
		}
		slices.Sort(ids)
		want := []string{ref1, ref2}
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Errorf("m.reference chunk %v, want %v", ids, want)
		}
		if bundle(e, "m.replace") != nil {
			t.Errorf("an edit from another room was bundled")
		}
		if p := relGet(t, alice, room, parent, "", ""); len(p.Chunk) != 2 {
			t.Errorf("children: %v", relIDs(p.Chunk))
		}
		// Asking for the parent through the wrong room finds nothing.
		wantError(t, alice.Do("GET", "/_matrix/client/v1/rooms/"+esc(other)+"/relations/"+esc(parent), nil), http.StatusNotFound, "M_NOT_FOUND")
	})
}

func TestReactions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		parent := alice.SendText(room, "react to me")
		thumbs := react(bob, room, parent, "👍")
		react(alice, room, parent, "👍")
		// The same annotation twice from one user is refused.
		r := bob.Do("PUT", fmt.Sprintf("/_matrix/client/v3/rooms/%s/send/m.reaction/dup", esc(room)), map[string]any{
			"m.relates_to": map[string]any{"rel_type": "m.annotation", "event_id": parent, "key": "👍"}})
		wantError(t, r, http.StatusBadRequest, "M_DUPLICATE_ANNOTATION")
		// Once redacted it may be sent again.
		bob.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(thumbs)+"/r1", map[string]string{}, nil)
		again := react(bob, room, parent, "👍")
		// A huge key is stored (within the event size limit) but not
		// indexed, and breaks nothing.
		huge := react(bob, room, parent, strings.Repeat("🎉", 5000))
		getEvent(t, alice, room, huge)
		p := relGet(t, alice, room, parent, "/m.annotation", "")
		if ids := relIDs(p.Chunk); len(ids) != 2 || ids[0] != again || slices.Contains(ids, huge) || slices.Contains(ids, thumbs) {
			t.Errorf("annotations: %v", ids)
		}
		// Annotations are not bundled by the server.
		if rels := getEvent(t, alice, room, parent).Unsigned["m.relations"]; rels != nil {
			t.Errorf("unexpected bundle %v", rels)
		}
		m := messages(t, alice, room, "dir=b&limit=20")
		if findEvent(m.Chunk, huge) == nil {
			t.Errorf("huge reaction missing from /messages")
		}
	})
}

// TestPoll runs a poll through its life: the server stores and relays
// every event and lists the responses as references; it tallies nothing,
// so the late response is simply one more reference that clients ignore.
func TestPoll(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		carol.Join(room)
		since := doSync(t, bob, "").NextBatch
		start := alice.Send(room, "m.poll.start", map[string]any{
			"m.text": []any{map[string]any{"body": "Lunch? 1. pizza 2. soup"}},
			"m.poll": map[string]any{"kind": "m.disclosed", "max_selections": 1,
				"question": map[string]any{"m.text": []any{map[string]any{"body": "Lunch?"}}},
				"answers": []any{
					map[string]any{"m.id": "pizza", "m.text": []any{map[string]any{"body": "pizza"}}},
					map[string]any{"m.id": "soup", "m.text": []any{map[string]any{"body": "soup"}}},
				}},
		})
		respond := func(c *ts.Client, answer string) string {
			return c.Send(room, "m.poll.response", map[string]any{
				"m.selections": []string{answer},
				"m.relates_to": map[string]any{"rel_type": "m.reference", "event_id": start}})
		}
		r1, r2 := respond(bob, "pizza"), respond(carol, "soup")
		end := alice.Send(room, "m.poll.end", map[string]any{
			"m.text":       []any{map[string]any{"body": "The poll has ended."}},
			"m.relates_to": map[string]any{"rel_type": "m.reference", "event_id": start}})
		late := respond(bob, "soup")
		// Unstable names used by clients are plain events too.
		ustart := alice.Send(room, "org.matrix.msc3381.poll.start", map[string]any{"org.matrix.msc3381.poll.start": map[string]any{"question": map[string]any{"body": "?"}}})
		uresp := bob.Send(room, "org.matrix.msc3381.poll.response", map[string]any{
			"org.matrix.msc3381.poll.response": map[string]any{"answers": []string{"a"}},
			"m.relates_to":                     map[string]any{"rel_type": "m.reference", "event_id": ustart}})

		// bob receives the whole poll through sync.
		sr := doSync(t, bob, "since="+since)
		var types []string
		for _, e := range sr.Rooms.Join[room].Timeline.Events {
			types = append(types, e.Type)
		}
		for _, want := range []string{"m.poll.start", "m.poll.response", "m.poll.end", "org.matrix.msc3381.poll.start", "org.matrix.msc3381.poll.response"} {
			if !slices.Contains(types, want) {
				t.Errorf("bob did not receive %s: %v", want, types)
			}
		}
		p := relGet(t, carol, room, start, "/m.reference", "dir=f")
		if !slices.Equal(relIDs(p.Chunk), []string{r1, r2, end, late}) {
			t.Errorf("poll references: %v", relIDs(p.Chunk))
		}
		if p := relGet(t, carol, room, start, "/m.reference/m.poll.response", "dir=f"); !slices.Equal(relIDs(p.Chunk), []string{r1, r2, late}) {
			t.Errorf("poll responses: %v", relIDs(p.Chunk))
		}
		if p := relGet(t, carol, room, ustart, "/m.reference", ""); !slices.Equal(relIDs(p.Chunk), []string{uresp}) {
			t.Errorf("unstable poll responses: %v", relIDs(p.Chunk))
		}
		refs, _ := bundle(getEvent(t, carol, room, start), "m.reference")["chunk"].([]any)
		if len(refs) != 4 {
			t.Errorf("m.reference bundle: %v", refs)
		}
	})
}

func TestLiveLocation(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		putState := func(c *ts.Client, typ, key string, content any) *ts.Response {
			return c.Do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/"+typ+"/"+esc(key), content)
		}
		for _, typ := range []string{"m.beacon_info", "org.matrix.msc3672.beacon_info"} {
			info := map[string]any{"description": "alice's walk", "live": true, "timeout": 600000, "m.asset": map[string]any{"type": "m.self"}}
			// bob (power 0) shares his own location.
			r := putState(bob, typ, bob.UserID, info)
			if r.Status != http.StatusOK {
				t.Fatalf("%s: bob's own beacon_info: %d %s", typ, r.Status, r.Body)
			}
			var sent struct {
				EventID string `json:"event_id"`
			}
			if r := putState(alice, typ, alice.UserID, info); r.Status != http.StatusOK {
				t.Fatalf("%s: alice's beacon_info: %d %s", typ, r.Status, r.Body)
			} else if err := r.JSON(&sent); err != nil {
				t.Fatal(err)
			}
			// Nobody overwrites another user's beacon, not even the admin.
			wantError(t, putState(bob, typ, alice.UserID, map[string]any{"live": false}), http.StatusForbidden, "M_FORBIDDEN")
			wantError(t, putState(alice, typ, bob.UserID, map[string]any{"live": false}), http.StatusForbidden, "M_FORBIDDEN")
			beaconType := strings.Replace(typ, "beacon_info", "beacon", 1)
			var beacons []string
			for i := range 3 {
				beacons = append(beacons, alice.Send(room, beaconType, map[string]any{
					"m.relates_to": map[string]any{"rel_type": "m.reference", "event_id": sent.EventID},
					"m.location":   map[string]any{"uri": fmt.Sprintf("geo:51.50%d,-0.12;u=10", i)},
					"m.ts":         1700000000000 + i,
				}))
			}
			// The owner updates (stops) the share.
			info["live"] = false
			if r := putState(alice, typ, alice.UserID, info); r.Status != http.StatusOK {
				t.Fatalf("%s: alice stops sharing: %d %s", typ, r.Status, r.Body)
			}
			var st map[string]any
			bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/"+typ+"/"+esc(alice.UserID), nil, &st)
			if st["live"] != false {
				t.Errorf("%s: state after update: %v", typ, st)
			}
			p := relGet(t, bob, room, sent.EventID, "/m.reference/"+beaconType, "dir=f")
			if !slices.Equal(relIDs(p.Chunk), beacons) {
				t.Errorf("%s: beacons %v, want %v", typ, relIDs(p.Chunk), beacons)
			}
		}
		// A static location is a message like any other.
		loc := alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.location", "body": "Big Ben", "geo_uri": "geo:51.5008,0.1247;u=35"})
		if e := getEvent(t, bob, room, loc); e.Content["geo_uri"] != "geo:51.5008,0.1247;u=35" {
			t.Errorf("location: %v", e.Content)
		}
	})
}

// TestEditBundleWhileReading reads an event's bundle while it is being
// edited: once the edits are done, every reader sees the last one (the
// cached bundles never keep a stale edit).
func TestEditBundleWhileReading(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		orig := alice.SendText(room, "original")
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
				}
				bob.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(orig), nil)
				bob.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/messages?dir=b&limit=5", nil)
			}
		}()
		var last string
		for i := range 15 {
			time.Sleep(2 * time.Millisecond)
			last = edit(alice, room, "m.room.message", orig, fmt.Sprint("edit ", i))
		}
		close(stop)
		<-done
		if r := bundle(getEvent(t, bob, room, orig), "m.replace"); r == nil || r["event_id"] != last {
			t.Errorf("m.replace after the edits: %v, want %s", r, last)
		}
		// Redacting the last edit falls back to the one before.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(last)+"/r1", map[string]string{}, nil)
		if r := bundle(getEvent(t, bob, room, orig), "m.replace"); r == nil || r["content"].(map[string]any)["m.new_content"].(map[string]any)["body"] != "edit 13" {
			t.Errorf("m.replace after redacting the last edit: %v", r)
		}
	})
}
