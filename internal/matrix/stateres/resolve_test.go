package stateres

import (
	"errors"
	"maps"
	"testing"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
)

// Versions whose answers agree for the classic forks: v1's algorithm, v2
// (2–11) and v2.1 (12).
var (
	allAlgorithms = []string{"1", "2", "10", "11", "12"}
	v2Versions    = []string{"2", "10", "11", "12"}
)

// An admin demotes a moderator while the moderator bans someone: the
// demotion is ordered first (the admin has more power), so the ban fails.
func TestBanRacesDemotion(t *testing.T) {
	forEachVersion(t, allAlgorithms, func(t *testing.T, vid string, signed bool) {
		r, root := newRoom(t, vid, signed)
		a, b := root.fork(), root.fork()
		b.send("ban", bob, "m.room.member", carol, `{"membership":"ban"}`) // earlier than the demotion
		a.send("demote", alice, "m.room.power_levels", "", r.levels(nil))
		got := r.resolve(a.state, b.state)
		r.expect(got, map[pdu.StateTuple]string{
			plT: "demote", memberT(carol): "joinC", memberT(bob): "joinB", jrT: "jr0",
		})
		// The order of the sets does not matter.
		if again := r.resolve(b.state, a.state); !maps.Equal(got, again) {
			t.Errorf("order of sets changes the result: %s vs %s", r.dump(got), r.dump(again))
		}
	})
}

// The join rules become invite-only on one fork while dave joins on the
// other: the join, checked after the join rules, is dropped. Room version
// 1 keeps dave: his member tuple exists on one side only, which v1 does not
// count as a conflict.
func TestJoinRacesJoinRules(t *testing.T) {
	forEachVersion(t, allAlgorithms, func(t *testing.T, vid string, signed bool) {
		r, root := newRoom(t, vid, signed)
		a, b := root.fork(), root.fork()
		b.send("joinD", dave, "m.room.member", dave, `{"membership":"join"}`)
		a.send("invite-only", alice, "m.room.join_rules", "", `{"join_rule":"invite"}`)
		got := r.resolve(a.state, b.state)
		want := map[pdu.StateTuple]string{jrT: "invite-only", memberT(dave): "", memberT(carol): "joinC"}
		if vid == "1" {
			want[memberT(dave)] = "joinD"
		}
		r.expect(got, want)
	})
}

// Topics are ordered by the mainline of the resolved power levels: a topic
// sent after a power levels change comes after one that cites the older
// power levels, whatever their timestamps.
func TestTopicByMainline(t *testing.T) {
	forEachVersion(t, v2Versions, func(t *testing.T, vid string, signed bool) {
		r, root := newRoom(t, vid, signed)
		root.send("topic0", alice, "m.room.topic", "", `{"topic":"zero"}`)
		a, b := root.fork(), root.fork()
		a.send("pl1", alice, "m.room.power_levels", "", r.levels(map[string]int{bob: 50, erin: 10}))
		a.send("topicB", bob, "m.room.topic", "", `{"topic":"bob"}`, at(2000))
		b.send("topicA", alice, "m.room.topic", "", `{"topic":"alice"}`, at(9000))
		r.expect(r.resolve(a.state, b.state), map[pdu.StateTuple]string{plT: "pl1", topicT: "topicB"})
	})
}

// At the same mainline position the later timestamp wins, then the
// greater event id.
func TestTopicByTimestamp(t *testing.T) {
	forEachVersion(t, v2Versions, func(t *testing.T, vid string, signed bool) {
		r, root := newRoom(t, vid, signed)
		a, b := root.fork(), root.fork()
		a.send("topicB", bob, "m.room.topic", "", `{"topic":"bob"}`, at(3000))
		b.send("topicA", alice, "m.room.topic", "", `{"topic":"alice"}`, at(2500))
		r.expect(r.resolve(a.state, b.state), map[pdu.StateTuple]string{topicT: "topicB"})

		if signed {
			return // the tie below needs ids we choose
		}
		c, d := root.fork(), root.fork()
		c.send("tie-x", bob, "m.room.topic", "", `{"topic":"x"}`, at(4000))
		d.send("tie-y", alice, "m.room.topic", "", `{"topic":"y"}`, at(4000))
		r.expect(r.resolve(c.state, d.state), map[pdu.StateTuple]string{topicT: "tie-y"})
	})
}

// Room version 1 picks the topic of greatest depth, where v2 looks at the
// timestamps within one mainline position.
func TestTopicVersion1ByDepth(t *testing.T) {
	for _, vid := range []string{"1", "2"} {
		t.Run("v"+vid, func(t *testing.T) {
			r, root := newRoom(t, vid, false)
			a, b := root.fork(), root.fork()
			a.send("nameA", alice, "m.room.name", "", `{"name":"a"}`)
			a.send("topicA", alice, "m.room.topic", "", `{"topic":"deep"}`, at(1500)) // depth 8, older
			b.send("topicB", bob, "m.room.topic", "", `{"topic":"late"}`, at(8000))   // depth 7, newer
			want := "topicB"
			if vid == "1" {
				want = "topicA"
			}
			r.expect(r.resolve(a.state, b.state), map[pdu.StateTuple]string{topicT: want, nameT: "nameA"})
		})
	}
}

// Both forks change the power levels. The admin's change is replayed first;
// the moderator's, built on the old levels, would take away a level equal
// to his own and is rejected.
func TestBothForksChangePowerLevels(t *testing.T) {
	forEachVersion(t, v2Versions, func(t *testing.T, vid string, signed bool) {
		r, root := newRoom(t, vid, signed)
		a, b := root.fork(), root.fork()
		b.send("plBob", bob, "m.room.power_levels", "", r.levels(map[string]int{bob: 50, dave: 50}), at(1001))
		a.send("plAlice", alice, "m.room.power_levels", "", r.levels(map[string]int{bob: 50, carol: 50}), at(5000))
		r.expect(r.resolve(a.state, b.state), map[pdu.StateTuple]string{plT: "plAlice"})
	})
}

// Two admins of equal power change different levels: the earlier change is
// replayed first and the later one, allowed on top of it, replaces it.
func TestEqualAdminsChangePowerLevels(t *testing.T) {
	forEachVersion(t, []string{"2", "10", "11"}, func(t *testing.T, vid string, signed bool) {
		r, root := newRoom(t, vid, signed)
		root.send("joinE", erin, "m.room.member", erin, `{"membership":"join"}`)
		root.send("pl1", alice, "m.room.power_levels", "", r.levels(map[string]int{bob: 50, erin: 100}))
		a, b := root.fork(), root.fork()
		b.send("plErin", erin, "m.room.power_levels", "", `{"users":{"@alice:a.test":100,"@bob:b.test":50,"@erin:e.test":100},"invite":40}`, at(7000))
		a.send("plAlice", alice, "m.room.power_levels", "", `{"users":{"@alice:a.test":100,"@bob:b.test":50,"@erin:e.test":100},"events":{"m.room.topic":60}}`, at(6000))
		r.expect(r.resolve(a.state, b.state), map[pdu.StateTuple]string{plT: "plErin"})
	})
}

// The moderator renames the room while being demoted: the rename fails
// against the resolved power levels and the old name comes back.
func TestEventFailsAgainstResolvedPower(t *testing.T) {
	forEachVersion(t, allAlgorithms, func(t *testing.T, vid string, signed bool) {
		r, root := newRoom(t, vid, signed)
		root.send("name0", alice, "m.room.name", "", `{"name":"old"}`)
		a, b := root.fork(), root.fork()
		b.send("nameBob", bob, "m.room.name", "", `{"name":"bob's"}`)
		a.send("demote", alice, "m.room.power_levels", "", r.levels(nil))
		r.expect(r.resolve(a.state, b.state), map[pdu.StateTuple]string{plT: "demote", nameT: "name0"})
	})
}

// Unconflicted state is kept as it is, even an event that its sender could
// no longer send under the resolved power levels.
func TestUnconflictedStateKept(t *testing.T) {
	forEachVersion(t, allAlgorithms, func(t *testing.T, vid string, signed bool) {
		r, root := newRoom(t, vid, signed)
		root.send("topicBob", bob, "m.room.topic", "", `{"topic":"bob's"}`)
		root.send("joinE", erin, "m.room.member", erin, `{"membership":"join"}`)
		a, b := root.fork(), root.fork()
		a.send("demote", alice, "m.room.power_levels", "", r.levels(nil))
		b.send("nickC", carol, "m.room.member", carol, `{"membership":"join","displayname":"C"}`)
		got := r.resolve(a.state, b.state)
		for t2, id := range root.state {
			if a.state[t2] == id && b.state[t2] == id && got[t2] != id {
				t.Errorf("unconflicted %v: got %s, want %s", t2, r.name(got[t2]), r.name(id))
			}
		}
		r.expect(got, map[pdu.StateTuple]string{plT: "demote", memberT(carol): "nickC", topicT: "topicBob"})
		if len(got) != len(root.state) {
			t.Errorf("resolved state has %d tuples, want %d: %s", len(got), len(root.state), r.dump(got))
		}
	})
}

// MSC4297 problem A: both sets agree that alice left, and one of them holds
// a stale join rules event. v2 replays both join rules on top of "alice has
// left" and loses them; v2.1 replays them from an empty state, where each
// is checked against its own auth events, and keeps the newest.
func TestStaleJoinRulesV21(t *testing.T) {
	forEachVersion(t, v2Versions, func(t *testing.T, vid string, signed bool) {
		r, b := newRoom(t, vid, signed)
		b.send("jr1", alice, "m.room.join_rules", "", `{"join_rule":"invite"}`)
		b.send("leaveA", alice, "m.room.member", alice, `{"membership":"leave"}`)
		stale := r.with(b.state, map[pdu.StateTuple]string{jrT: "jr0"})
		want := ""
		if vid == "12" {
			want = "jr1"
		}
		got := r.resolve(b.state, stale)
		r.expect(got, map[pdu.StateTuple]string{jrT: want, memberT(alice): "leaveA"})

		// A rejected auth event is no fallback: without alice's join
		// neither join rules event is allowed in v2.1 either.
		got, err := Resolve(r.v, []StateSet{b.state, stale}, r.fetch,
			WithRejected(func(id string) bool { return id == r.id("joinA") }))
		if err != nil {
			t.Fatal(err)
		}
		r.expect(got, map[pdu.StateTuple]string{jrT: ""})
	})
}

// MSC4297 problem B: alice promotes bob, who promotes carol; one set holds
// the original power levels. v2 replays only the two conflicted power
// levels, and bob's fails against the original: a state reset. v2.1 also
// replays alice's promotion, which lies between them in the auth graph.
func TestStalePowerLevelsV21(t *testing.T) {
	forEachVersion(t, v2Versions, func(t *testing.T, vid string, signed bool) {
		r, b := newRoom(t, vid, signed)
		b.send("pl1", alice, "m.room.power_levels", "", r.levels(map[string]int{bob: 100}))
		b.send("pl2", bob, "m.room.power_levels", "", r.levels(map[string]int{bob: 100, carol: 50}))
		b.send("topicC", carol, "m.room.topic", "", `{"topic":"carol's"}`)
		stale := r.with(b.state, map[pdu.StateTuple]string{plT: "pl0"})
		want := "pl0"
		if vid == "12" {
			want = "pl2"
		}
		r.expect(r.resolve(b.state, stale), map[pdu.StateTuple]string{plT: want, topicT: "topicC"})
	})
}

// Resolving more than two sets, one of them the common ancestor.
func TestThreeSets(t *testing.T) {
	forEachVersion(t, allAlgorithms, func(t *testing.T, vid string, signed bool) {
		r, root := newRoom(t, vid, signed)
		a, b := root.fork(), root.fork()
		b.send("ban", bob, "m.room.member", carol, `{"membership":"ban"}`)
		a.send("demote", alice, "m.room.power_levels", "", r.levels(nil))
		r.expect(r.resolve(a.state, b.state, root.state), map[pdu.StateTuple]string{plT: "demote", memberT(carol): "joinC"})
	})
}

func TestTrivialInputs(t *testing.T) {
	r, root := newRoom(t, "12", false)
	if got := r.resolve(); len(got) != 0 {
		t.Errorf("no sets: %v", got)
	}
	got := r.resolve(root.state)
	if !maps.Equal(got, root.state) {
		t.Errorf("one set: %v", got)
	}
	got[topicT] = "$x"
	if _, ok := root.state[topicT]; ok {
		t.Error("result shares the input map")
	}
	if got := r.resolve(root.state, root.fork().state); !maps.Equal(got, root.state) {
		t.Errorf("equal sets: %s", r.dump(got))
	}
	if r.fetches != 0 {
		t.Errorf("unconflicted sets fetched events %d times", r.fetches)
	}
}

func TestErrors(t *testing.T) {
	r, root := newRoom(t, "11", false)
	a := root.fork()
	a.send("topic", alice, "m.room.topic", "", `{"topic":"t"}`)
	unknown := r.with(root.state, nil)
	unknown[topicT] = "$nowhere"
	if _, err := Resolve(r.v, []StateSet{a.state, unknown}, r.fetch); !errors.Is(err, ErrMissingEvent) {
		t.Errorf("unknown conflicted event: %v", err)
	}
	misfiled := r.with(a.state, map[pdu.StateTuple]string{nameT: "topic"})
	if _, err := Resolve(r.v, []StateSet{misfiled, root.state}, r.fetch); err == nil {
		t.Error("an event filed under another tuple was accepted")
	}
	v2, _ := roomversion.Get("2")
	if _, err := Resolve(v2, []StateSet{a.state, root.state}, r.fetch); err == nil {
		t.Error("events of another room version were accepted")
	}
	failing := func([]string) (map[string]*pdu.Event, error) { return nil, errors.New("disk on fire") }
	if _, err := Resolve(r.v, []StateSet{a.state, root.state}, failing); err == nil {
		t.Error("a fetch error was swallowed")
	}

	// Room version 12 cannot authorise anything without the create event,
	// which no auth_events list names.
	r12, root12 := newRoom(t, "12", false)
	b12 := root12.fork()
	b12.send("topic", alice, "m.room.topic", "", `{"topic":"t"}`)
	noCreate := func(ids []string) (map[string]*pdu.Event, error) {
		got, err := r12.fetch(ids)
		delete(got, r12.id("create"))
		return got, err
	}
	if _, err := Resolve(r12.v, []StateSet{b12.state, root12.state}, noCreate); !errors.Is(err, ErrMissingEvent) {
		t.Errorf("v12 without its create event: %v", err)
	}
	if _, err := Resolve(nil, nil, r.fetch); err == nil {
		t.Error("no version accepted")
	}
}

// Auth chains are fetched one layer of the graph at a time, never one
// event at a time.
func TestFetchesInBatches(t *testing.T) {
	r, root := newRoom(t, "11", false)
	for _, u := range []string{dave, erin, "@f:f.test", "@g:g.test", "@h:h.test"} {
		root.send("join"+u, u, "m.room.member", u, `{"membership":"join"}`)
	}
	a, b := root.fork(), root.fork()
	a.send("demote", alice, "m.room.power_levels", "", r.levels(nil))
	b.send("ban", bob, "m.room.member", carol, `{"membership":"ban"}`)
	r.fetches = 0
	r.resolve(a.state, b.state)
	// State events, then up to three layers of auth events (member → power
	// levels → alice's join → create), and nothing else.
	if r.fetches > 5 {
		t.Errorf("%d fetch calls for %d events", r.fetches, len(r.events))
	}
}
