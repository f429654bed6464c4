package integration

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"

	ts "luxchat/internal/testserver"
)

const (
	msc4306Path = "/_matrix/client/unstable/io.element.msc4306"
	msc4308Path = "/_matrix/client/unstable/io.element.msc4308/thread_subscriptions"
	threadSubs  = "io.element.msc4308.thread_subscriptions"
)

func subPath(room, root string) string {
	return msc4306Path + "/rooms/" + esc(room) + "/thread/" + esc(root) + "/subscription"
}

// subscription returns GET .../subscription: its status and automatic.
func subscription(t *testing.T, c *ts.Client, room, root string) (int, bool) {
	t.Helper()
	r := c.Do("GET", subPath(room, root), nil)
	var body struct {
		Automatic *bool `json:"automatic"`
	}
	if r.Status == http.StatusOK {
		if err := r.JSON(&body); err != nil || body.Automatic == nil {
			t.Fatalf("GET subscription: %s", r.Body)
		}
		return r.Status, *body.Automatic
	}
	if r.ErrCode() != "M_NOT_FOUND" {
		t.Fatalf("GET subscription: %d %s", r.Status, r.Body)
	}
	return r.Status, false
}

// TestThreadSubscriptions covers MSC4306's endpoints: manual and
// automatic subscriptions, manual winning, the refusal of an automatic
// subscription whose cause came before an unsubscription, and the errors
// for bad causes, non-roots, rooms and events the user may not see, and
// bad bodies.
func TestThreadSubscriptions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, eve := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "eve")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		root := alice.SendText(room, "what do you think?")
		reply := threadReply(bob, room, root, "a reply")

		// Manual subscription, then unsubscription; unsubscribing again
		// changes nothing and succeeds.
		if st, _ := subscription(t, alice, room, root); st != http.StatusNotFound {
			t.Fatalf("subscribed before subscribing: %d", st)
		}
		alice.MustDo("PUT", subPath(room, root), map[string]any{}, nil)
		if st, auto := subscription(t, alice, room, root); st != http.StatusOK || auto {
			t.Fatalf("after a manual subscription: %d automatic=%v", st, auto)
		}
		if st, _ := subscription(t, bob, room, root); st != http.StatusNotFound {
			t.Fatalf("bob sees alice's subscription: %d", st)
		}
		alice.MustDo("DELETE", subPath(room, root), nil, nil)
		if st, _ := subscription(t, alice, room, root); st != http.StatusNotFound {
			t.Fatalf("still subscribed after DELETE: %d", st)
		}
		alice.MustDo("DELETE", subPath(room, root), nil, nil)

		// Automatic, caused by a reply; manual then wins, and a later
		// automatic request does not downgrade it.
		bob.MustDo("PUT", subPath(room, root), map[string]any{"automatic": reply}, nil)
		if st, auto := subscription(t, bob, room, root); st != http.StatusOK || !auto {
			t.Fatalf("after an automatic subscription: %d automatic=%v", st, auto)
		}
		bob.MustDo("PUT", subPath(room, root), map[string]any{"automatic": nil}, nil)
		if _, auto := subscription(t, bob, room, root); auto {
			t.Fatal("a manual subscription did not override the automatic one")
		}
		bob.MustDo("PUT", subPath(room, root), map[string]any{"automatic": reply}, nil)
		if _, auto := subscription(t, bob, room, root); auto {
			t.Fatal("an automatic subscription downgraded a manual one")
		}

		// Causes that are not replies of this thread.
		other := alice.SendText(room, "another root")
		otherReply := threadReply(alice, room, other, "elsewhere")
		elsewhere := alice.CreateRoom(map[string]any{})
		foreign := threadReply(alice, elsewhere, alice.SendText(elsewhere, "root"), "reply")
		for name, cause := range map[string]string{"the root itself": root, "a reply in another thread": otherReply,
			"an unknown event": "$nothing:example.org", "an event of another room": foreign} {
			r := alice.Do("PUT", subPath(room, root), map[string]any{"automatic": cause})
			if r.Status != http.StatusBadRequest || r.ErrCode() != "IO.ELEMENT.MSC4306.M_NOT_IN_THREAD" {
				t.Errorf("cause %s: %d %s", name, r.Status, r.Body)
			}
		}

		// No thread: unknown events, ill-formed ids, events that cannot be
		// roots, unknown rooms, rooms the user is not in. All look alike.
		notThreads := map[string][2]string{
			"unknown event":      {room, "$notathread:example.org"},
			"ill-formed id":      {room, "notanid"},
			"a reply":            {room, reply},
			"unknown room":       {"!nowhere:example.org", root},
			"event of elsewhere": {room, foreign},
		}
		for name, p := range notThreads {
			for _, m := range []string{"PUT", "GET", "DELETE"} {
				var body any
				if m == "PUT" {
					body = map[string]any{}
				}
				t.Run(name+"/"+m, func(t *testing.T) {
					wantError(t, alice.Do(m, subPath(p[0], p[1]), body), http.StatusNotFound, "M_NOT_FOUND")
				})
			}
		}
		for _, m := range []string{"PUT", "GET", "DELETE"} {
			var body any
			if m == "PUT" {
				body = map[string]any{}
			}
			// eve is in neither room: the private one is as unknown to her as
			// a made-up room.
			wantError(t, eve.Do(m, subPath(elsewhere, foreign), body), http.StatusNotFound, "M_NOT_FOUND")
		}

		// History eve may not see: she joins a room with joined visibility
		// after its root was sent.
		hidden := alice.CreateRoom(map[string]any{"preset": "public_chat",
			"initial_state": []map[string]any{{"type": "m.room.history_visibility", "content": map[string]any{"history_visibility": "joined"}}}})
		hiddenRoot := alice.SendText(hidden, "before eve")
		eve.Join(hidden)
		hiddenReply := threadReply(alice, hidden, hiddenRoot, "after eve joined")
		wantError(t, eve.Do("PUT", subPath(hidden, hiddenRoot), map[string]any{"automatic": hiddenReply}), http.StatusNotFound, "M_NOT_FOUND")
		wantError(t, eve.Do("GET", subPath(hidden, hiddenRoot), nil), http.StatusNotFound, "M_NOT_FOUND")
		// A visible root with a cause eve may not see.
		visibleRoot := alice.SendText(hidden, "eve sees this")
		eve.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(hidden)+"/leave", map[string]any{}, nil)
		unseen := threadReply(alice, hidden, visibleRoot, "after eve left")
		wantError(t, eve.Do("PUT", subPath(hidden, visibleRoot), map[string]any{"automatic": unseen}), http.StatusBadRequest, "IO.ELEMENT.MSC4306.M_NOT_IN_THREAD")

		// Bad bodies.
		wantError(t, alice.Do("PUT", subPath(room, root), "{not json"), http.StatusBadRequest, "M_NOT_JSON")
		wantError(t, alice.Do("PUT", subPath(room, root), "[]"), http.StatusBadRequest, "M_BAD_JSON")
		wantError(t, alice.Do("PUT", subPath(room, root), map[string]any{"automatic": 5}), http.StatusBadRequest, "M_BAD_JSON")
		wantError(t, alice.Do("PUT", subPath(room, root), map[string]any{"automatic": true}), http.StatusBadRequest, "M_BAD_JSON")
		wantError(t, alice.Do("PUT", subPath(room, root), map[string]any{"automatic": "not an id"}), http.StatusBadRequest, "M_INVALID_PARAM")
		if st, _ := subscription(t, alice, room, root); st != http.StatusNotFound {
			t.Fatalf("a refused request subscribed: %d", st)
		}
	})
}

// TestThreadSubscriptionOrdering is the MSC's server-side ordering: after
// an unsubscription, automatic subscriptions caused by events the user
// could have seen then are refused (409), later ones apply.
func TestThreadSubscriptionOrdering(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{})
		root := alice.SendText(room, "root")
		r1 := threadReply(alice, room, root, "1")
		alice.MustDo("PUT", subPath(room, root), map[string]any{"automatic": r1}, nil)
		r2 := threadReply(alice, room, root, "2")
		alice.MustDo("DELETE", subPath(room, root), nil, nil)
		r3 := threadReply(alice, room, root, "3")
		for _, cause := range []string{r1, r2} {
			wantError(t, alice.Do("PUT", subPath(room, root), map[string]any{"automatic": cause}),
				http.StatusConflict, "IO.ELEMENT.MSC4306.M_CONFLICTING_UNSUBSCRIPTION")
			if st, _ := subscription(t, alice, room, root); st != http.StatusNotFound {
				t.Fatalf("a refused automatic subscription subscribed: %d", st)
			}
		}
		alice.MustDo("PUT", subPath(room, root), map[string]any{"automatic": r3}, nil)
		if st, auto := subscription(t, alice, room, root); st != http.StatusOK || !auto {
			t.Fatalf("automatic subscription after the unsubscription: %d %v", st, auto)
		}
		// A manual subscription always applies, whatever came before.
		alice.MustDo("DELETE", subPath(room, root), nil, nil)
		alice.MustDo("PUT", subPath(room, root), map[string]any{}, nil)
		if st, auto := subscription(t, alice, room, root); st != http.StatusOK || auto {
			t.Fatalf("manual subscription after an unsubscription: %d %v", st, auto)
		}
	})
}

type subsPage struct {
	Subscribed map[string]map[string]struct {
		Automatic *bool  `json:"automatic"`
		BumpStamp *int64 `json:"bump_stamp"`
	} `json:"subscribed"`
	Unsubscribed map[string]map[string]struct {
		BumpStamp *int64 `json:"bump_stamp"`
	} `json:"unsubscribed"`
	PrevBatch string `json:"prev_batch"`
	End       string `json:"end"`
}

// keys lists a page's threads as "s:root" and "u:root", sorted.
func (p subsPage) keys() []string {
	var out []string
	for _, threads := range p.Subscribed {
		for id, sub := range threads {
			if sub.BumpStamp == nil || sub.Automatic == nil {
				panic("subscribed thread without bump_stamp or automatic")
			}
			out = append(out, "s:"+id)
		}
	}
	for _, threads := range p.Unsubscribed {
		for id, sub := range threads {
			if sub.BumpStamp == nil {
				panic("unsubscribed thread without bump_stamp")
			}
			out = append(out, "u:"+id)
		}
	}
	slices.Sort(out)
	return out
}

// slideSubs does a sliding sync with only the thread subscriptions
// extension and returns the pos and the extension's answer.
func slideSubs(t *testing.T, c *ts.Client, pos string, timeoutMS int, ext map[string]any) (string, subsPage) {
	t.Helper()
	var raw struct {
		Pos        string                     `json:"pos"`
		Extensions map[string]json.RawMessage `json:"extensions"`
	}
	q := "?timeout=" + itoa(timeoutMS)
	if pos != "" {
		q += "&pos=" + pos
	}
	c.MustDo("POST", ssPath+q, map[string]any{"extensions": map[string]any{threadSubs: ext}}, &raw)
	var p subsPage
	if e, ok := raw.Extensions[threadSubs]; ok {
		if err := json.Unmarshal(e, &p); err != nil {
			t.Fatal(err)
		}
	}
	return raw.Pos, p
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func want(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// TestThreadSubscriptionsSlidingSync covers MSC4308: subscriptions on an
// initial sliding sync, changes (subscriptions, unsubscriptions, a
// manual upgrade) on later positions, a long poll woken by a change, the
// limit with prev_batch and the companion endpoint paging back between
// it and the request's pos, and the endpoint's errors.
func TestThreadSubscriptionsSlidingSync(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{})
		var roots []string
		for i := range 6 {
			roots = append(roots, alice.SendText(room, "root "+itoa(i)))
		}
		on := map[string]any{"enabled": true, "limit": 2}

		pos, p := slideSubs(t, alice, "", 0, on)
		want(t, "initial, nothing subscribed", p.keys())

		alice.MustDo("PUT", subPath(room, roots[0]), map[string]any{}, nil)
		pos, p = slideSubs(t, alice, pos, 0, on)
		want(t, "after a subscription", p.keys(), "s:"+roots[0])
		if sub := p.Subscribed[room][roots[0]]; *sub.Automatic {
			t.Fatal("manual subscription sent as automatic")
		}
		first := *p.Subscribed[room][roots[0]].BumpStamp
		pos, p = slideSubs(t, alice, pos, 0, on)
		want(t, "nothing new", p.keys())

		// An automatic subscription, upgraded to manual in the same
		// window: sent once, as it is now.
		reply := threadReply(alice, room, roots[1], "reply")
		alice.MustDo("PUT", subPath(room, roots[1]), map[string]any{"automatic": reply}, nil)
		alice.MustDo("PUT", subPath(room, roots[1]), map[string]any{}, nil)
		alice.MustDo("DELETE", subPath(room, roots[0]), nil, nil)
		pos, p = slideSubs(t, alice, pos, 0, nil) // settings are sticky
		want(t, "after an unsubscription", p.keys(), "s:"+roots[1], "u:"+roots[0])
		if *p.Subscribed[room][roots[1]].Automatic {
			t.Fatal("upgraded subscription still automatic")
		}
		if *p.Unsubscribed[room][roots[0]].BumpStamp <= first {
			t.Fatal("the unsubscription's bump_stamp is not after the subscription's")
		}

		// A long poll wakes for a subscription.
		type answer struct {
			pos string
			p   subsPage
		}
		done := make(chan answer, 1)
		go func() {
			pos, p := slideSubs(t, alice, pos, 20000, nil)
			done <- answer{pos, p}
		}()
		waitParked(t, s, 1)
		alice.MustDo("PUT", subPath(room, roots[2]), map[string]any{}, nil)
		woken := <-done
		want(t, "woken long poll", woken.p.keys(), "s:"+roots[2])
		pos = woken.pos

		// More changes than the limit since a pos: the newest, and a
		// prev_batch that pages back to the pos, not beyond.
		for _, r := range roots[3:] {
			alice.MustDo("PUT", subPath(room, r), map[string]any{}, nil)
		}
		_, p = slideSubs(t, alice, pos, 0, on)
		want(t, "limited window", p.keys(), "s:"+roots[4], "s:"+roots[5])
		if p.PrevBatch == "" {
			t.Fatal("no prev_batch on a limited window")
		}
		var back subsPage
		alice.MustDo("GET", msc4308Path+"?dir=b&limit=5&from="+p.PrevBatch+"&to="+pos, nil, &back)
		want(t, "paged back to the pos", back.keys(), "s:"+roots[3])
		if back.End != "" {
			t.Fatalf("end past the pos: %q", back.End)
		}

		// Paging back from the start of time, two at a time, sees every
		// thread once in its latest state.
		var all []string
		from := ""
		for range 10 {
			var pg subsPage
			alice.MustDo("GET", msc4308Path+"?dir=b&limit=2"+from, nil, &pg)
			all = append(all, pg.keys()...)
			if pg.End == "" {
				break
			}
			from = "&from=" + pg.End
		}
		want(t, "everything paged back", sortedCopy(all), "u:"+roots[0], "s:"+roots[1], "s:"+roots[2], "s:"+roots[3], "s:"+roots[4], "s:"+roots[5])

		// Bad requests.
		for q, code := range map[string]string{
			"":                            "M_MISSING_PARAM",
			"?dir=f":                      "M_INVALID_PARAM",
			"?dir=b&limit=0":              "M_INVALID_PARAM",
			"?dir=b&limit=x":              "M_INVALID_PARAM",
			"?dir=b&from=s1_2":            "M_INVALID_PARAM",
			"?dir=b&to=nosuchpos_1":       "M_INVALID_PARAM",
			"?dir=b&from=ts-1":            "M_INVALID_PARAM",
			"?dir=b&from=ts01":            "M_INVALID_PARAM",
			"?dir=b&to=" + esc(pos) + "x": "M_INVALID_PARAM",
		} {
			wantError(t, alice.Do("GET", msc4308Path+q, nil), http.StatusBadRequest, code)
		}
		wantError(t, alice.Do("POST", ssPath, map[string]any{"extensions": map[string]any{threadSubs: map[string]any{"enabled": true, "limit": 0}}}),
			http.StatusBadRequest, "M_INVALID_PARAM")
		wantError(t, alice.Do("POST", ssPath, map[string]any{"extensions": map[string]any{threadSubs: map[string]any{"enabled": "yes"}}}),
			http.StatusBadRequest, "M_BAD_JSON")
	})
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// TestThreadSubscriptionsRestart: subscriptions and the order of their
// bump_stamps survive a restart. (That the stream resumes above
// subscriptions far ahead of any account data is the store's
// TestThreadSubsResumeAccountDataStream: it takes RestartGap changes.)
func TestThreadSubscriptionsRestart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{})
		a, b := alice.SendText(room, "a"), alice.SendText(room, "b")
		for range 3 {
			alice.MustDo("PUT", subPath(room, a), map[string]any{}, nil)
			alice.MustDo("DELETE", subPath(room, a), nil, nil)
		}
		alice.MustDo("PUT", subPath(room, a), map[string]any{}, nil)
		s.Restart(t) // same address: alice's client goes on
		alice.MustDo("PUT", subPath(room, b), map[string]any{}, nil)
		_, p := slideSubs(t, alice, "", 0, map[string]any{"enabled": true})
		want(t, "after a restart", p.keys(), "s:"+a, "s:"+b)
		if *p.Subscribed[room][b].BumpStamp <= *p.Subscribed[room][a].BumpStamp {
			t.Fatal("a change after the restart has an older bump_stamp")
		}
		if st, _ := subscription(t, alice, room, a); st != http.StatusOK {
			t.Fatal("subscription lost in the restart")
		}
	})
}

// TestThreadSubscriptionPushCondition: a user's push rules with MSC4306's
// condition decide by the user's subscriptions: replies in a subscribed
// thread highlight, those in others do not notify, other events go on
// to the defaults; another member's rules are untouched.
func TestThreadSubscriptionPushCondition(t *testing.T) {
	forEachCrowd(t, func(t *testing.T, s *ts.Server, fill func(string)) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		fill(room)
		bob.Join(room)
		carol.Join(room)
		cond := func(subscribed bool) []any {
			return []any{map[string]any{"kind": "io.element.msc4306.thread_subscription", "subscribed": subscribed}}
		}
		bob.MustDo("PUT", rulesPath+"override/unsubscribed-threads", map[string]any{"conditions": cond(false), "actions": []any{}}, nil)
		bob.MustDo("PUT", rulesPath+"override/subscribed-threads", map[string]any{"conditions": cond(true),
			"actions": []any{"notify", map[string]any{"set_tweak": "highlight"}}}, nil)
		wantError(t, bob.Do("PUT", rulesPath+"override/bad", map[string]any{"conditions": []any{map[string]any{"kind": "io.element.msc4306.thread_subscription"}},
			"actions": []any{}}), http.StatusBadRequest, "M_INVALID_PARAM")

		followed, ignored := alice.SendText(room, "follow me"), alice.SendText(room, "ignore me")
		bob.MustDo("PUT", subPath(room, followed), map[string]any{}, nil)
		threadReply(alice, room, followed, "in the followed thread")
		threadReply(alice, room, ignored, "in the ignored thread")

		type page struct {
			Notifications []struct {
				Event event `json:"event"`
			} `json:"notifications"`
		}
		ids := func(c *ts.Client, query string) []string {
			var p page
			c.MustDo("GET", "/_matrix/client/v3/notifications"+query, nil, &p)
			var out []string
			for _, n := range p.Notifications {
				out = append(out, n.Event.Content["body"].(string))
			}
			return sortedCopy(out)
		}
		want(t, "bob's notifications", ids(bob, ""), "follow me", "ignore me", "in the followed thread")
		want(t, "bob's highlights", ids(bob, "?only=highlight"), "in the followed thread")
		want(t, "carol's notifications", ids(carol, ""), "follow me", "ignore me", "in the followed thread", "in the ignored thread")
	})
}
