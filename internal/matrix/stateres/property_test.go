package stateres

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"

	"luxchat/internal/matrix/pdu"
)

// randomStep sends one random state event that is allowed on the branch,
// if the dice find one.
func randomStep(b *branch, rng *rand.Rand, users []string, n *int) {
	r := b.r
	u := users[rng.IntN(len(users))]
	target := users[rng.IntN(len(users))]
	*n++
	name := fmt.Sprintf("r%d", *n)
	switch rng.IntN(8) {
	case 0:
		lvl := map[string]int{bob: 50}
		for _, x := range users[2:] {
			if rng.IntN(3) == 0 {
				lvl[x] = 50
			}
		}
		b.send(name, []string{alice, bob}[rng.IntN(2)], "m.room.power_levels", "", r.levels(lvl), optional())
	case 1:
		b.send(name, u, "m.room.topic", "", fmt.Sprintf(`{"topic":"%s"}`, name), optional())
	case 2:
		b.send(name, u, "m.room.member", u, `{"membership":"join"}`, optional())
	case 3:
		b.send(name, u, "m.room.member", u, `{"membership":"leave"}`, optional())
	case 4:
		b.send(name, u, "m.room.member", target, `{"membership":"ban"}`, optional())
	case 5:
		b.send(name, u, "m.room.member", target, `{"membership":"leave"}`, optional())
	case 6:
		b.send(name, u, "m.room.member", target, `{"membership":"invite"}`, optional())
	case 7:
		rule := []string{"public", "invite"}[rng.IntN(2)]
		b.send(name, u, "m.room.join_rules", "", fmt.Sprintf(`{"join_rule":"%s"}`, rule), optional())
	}
}

// Random forks: the result does not depend on the order of the sets, keeps
// the unconflicted state, and files every event under its own tuple.
// (Resolving a state with its own descendant need not give the descendant:
// two join rules events sent one after the other do not cite each other,
// and v2 replays the one of the more powerful sender first.)
func TestRandomForks(t *testing.T) {
	for _, vid := range []string{"1", "2", "11", "12"} {
		t.Run("v"+vid, func(t *testing.T) {
			for seed := range uint64(60) {
				rng := rand.New(rand.NewPCG(seed, 7))
				r, root := newRoom(t, vid, false)
				users := []string{alice, bob, carol, dave, erin}
				n := 0
				for range 6 {
					randomStep(root, rng, users, &n)
				}
				forks := []*branch{root.fork(), root.fork(), root.fork()}
				for _, f := range forks {
					for range 1 + rng.IntN(6) {
						randomStep(f, rng, users, &n)
					}
				}
				sets := []StateSet{forks[0].state, forks[1].state, forks[2].state}
				got := r.resolve(sets...)
				rev := r.resolve(sets[2], sets[0], sets[1])
				if !maps.Equal(got, rev) {
					t.Fatalf("seed %d: order matters:\n%s\n%s", seed, r.dump(got), r.dump(rev))
				}
				for tup, id := range sets[0] {
					if sets[1][tup] == id && sets[2][tup] == id && got[tup] != id {
						t.Fatalf("seed %d: unconflicted %v lost", seed, tup)
					}
				}
				for tup, id := range got {
					ev := r.events[id]
					if ev == nil || ev.Tuple() != tup {
						t.Fatalf("seed %d: %v resolved to %s", seed, tup, id)
					}
				}
			}
		})
	}
}

// A forged auth_events cycle (possible only where event ids are not
// hashes) must neither hang nor crash resolution.
func TestAuthCycle(t *testing.T) {
	r, root := newRoom(t, "2", false)
	a, b := root.fork(), root.fork()
	x := a.send("x", alice, "m.room.topic", "", `{"topic":"x"}`)
	y := b.send("y", alice, "m.room.topic", "", `{"topic":"y"}`)
	x.AuthEvents = append(x.AuthEvents, y.ID)
	y.AuthEvents = append(y.AuthEvents, x.ID)
	pl := a.send("pl", alice, "m.room.power_levels", "", r.levels(nil))
	pl.AuthEvents = append(pl.AuthEvents, x.ID)
	got := r.resolve(a.state, b.state)
	if got[topicT] != x.ID && got[topicT] != y.ID {
		t.Errorf("topic resolved to %q", got[topicT])
	}
	if got[pdu.StateTuple{Type: "m.room.power_levels"}] != pl.ID {
		t.Errorf("power levels resolved to %q", r.name(got[plT]))
	}
}

// A long auth chain (thousands of power levels changes) is walked without
// recursion, and the mainline positions are found once per chain.
func TestDeepAuthChain(t *testing.T) {
	r, root := newRoom(t, "12", false)
	for i := range 3000 {
		root.send(fmt.Sprintf("pl-%d", i), alice, "m.room.power_levels", "", r.levels(map[string]int{bob: 50, carol: i % 7}))
	}
	a, b := root.fork(), root.fork()
	b.send("topicB", bob, "m.room.topic", "", `{"topic":"b"}`)
	a.send("topicA", alice, "m.room.topic", "", `{"topic":"a"}`)
	a.send("demote", alice, "m.room.power_levels", "", r.levels(nil))
	r.expect(r.resolve(a.state, b.state), map[pdu.StateTuple]string{topicT: "topicA", plT: "demote"})
}
