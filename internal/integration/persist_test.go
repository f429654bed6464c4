package integration

import (
	"context"
	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// An event received from another server on a fork of the room's graph
// goes through the same persist step as one sent here: it is searchable,
// the local media it names is recorded as referenced (so that redacting
// it lets the media be purged), and it reaches the timeline.
func TestForkedFederatedEventIsPersistedLikeALocalOne(t *testing.T) {
	frEngines(t, func(t *testing.T, p *frPair) {
		ctx := context.Background()
		alice, bob := p.a.Register(t, "alice"), p.b.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+p.a.Config.ServerName, map[string]any{}, nil)
		var up struct {
			ContentURI string `json:"content_uri"`
		}
		alice.MustDo("POST", "/_matrix/media/v3/upload?filename=minutes.txt", []byte("minutes of the meeting"), &up)

		// Alice moves on while bob's server sends an event from the
		// state before: a fork.
		head := frLatest(t, p.a, room)
		alice.SendText(room, "meanwhile")
		fork := frBuild(t, p.b, room, bob.UserID, "m.room.message", nil,
			map[string]any{"msgtype": "m.file", "body": "forkedminutes.txt", "url": up.ContentURI},
			[]string{head}, frAuth(t, p.a, room, bob.UserID), frDepth(t, p.a, head)+1)
		if res, err := frSend(t, p.b, p.a, "", fork.JSON()); err != nil || res.PDUs[fork.ID].Error != "" {
			t.Fatalf("fork: %v %+v", err, res)
		}
		if ext, err := p.a.Store.Extremities(ctx, room); err != nil || len(ext) != 2 {
			t.Fatalf("the event did not fork the room: extremities %v %v", ext, err)
		}
		if got := bodies(messages(t, alice, room, "dir=b&limit=5").Chunk); !slices.Contains(got, "forkedminutes.txt") {
			t.Fatalf("alice's timeline: %v", got)
		}
		if got := resultBodies(searchFor(t, alice, "", map[string]any{"search_term": "forkedminutes"})); !slices.Equal(got, []string{"forkedminutes.txt"}) {
			t.Fatalf("search for the forked event: %v", got)
		}

		// Redacted, the event no longer references the media: purged.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(fork.ID)+"/r1", map[string]any{}, nil)
		n, err := p.a.Media.PurgeUnreferenced(ctx, time.Now().Add(time.Hour), nil)
		if err != nil || n != 1 {
			t.Fatalf("purged %d, %v; want the forked event's media", n, err)
		}
		if r := alice.Do("GET", "/_matrix/client/v1/media/download/"+strings.TrimPrefix(up.ContentURI, "mxc://"), nil); r.Status != http.StatusNotFound {
			t.Fatalf("the media after the purge: %d", r.Status)
		}
	})
}

// An event whose prev events and some auth events are both unknown here
// gets its gap filled first (get_missing_events): the events before it
// bring the auth events (here a new member's join), so the auth chain is
// not asked for.
func TestFedGapFilledBeforeAuthChain(t *testing.T) {
	for _, pg := range []bool{false, true} {
		name := map[bool]string{false: "sqlite", true: "postgres"}[pg]
		t.Run(name, func(t *testing.T) {
			a, b, log := observedPair(t, pg)
			alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
			room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
			bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+a.Config.ServerName, map[string]any{}, nil)
			// a keeps what follows to itself: carol joins and speaks.
			a.Exchange.HoldFanout.Store(true)
			carol := a.Register(t, "carol")
			carol.Join(room)
			msg := carol.SendText(room, "hello from carol")
			log.reset()
			row, err := a.Store.GetEvent(context.Background(), msg)
			if err != nil {
				t.Fatal(err)
			}
			if res, err := frSend(t, a, b, "", row.JSON()); err != nil || res.PDUs[msg].Error != "" {
				t.Fatalf("carol's message: %v %+v", err, res)
			}
			if got := bodies(messages(t, bob, room, "dir=b&limit=5").Chunk); !slices.Contains(got, "hello from carol") {
				t.Fatalf("bob's timeline: %v", got)
			}
			asked := log.paths()
			if !slices.ContainsFunc(asked, func(p string) bool { return strings.Contains(p, "/get_missing_events/") }) ||
				slices.ContainsFunc(asked, func(p string) bool { return strings.Contains(p, "/event_auth/") }) {
				t.Fatalf("b asked a for %v: want the gap filled, no auth chain", asked)
			}
		})
	}
}

// An event pushed in a transaction whose prev events its sender will not
// give (get_missing_events finds nothing) is refused, neither stored nor
// rejected, and neither the prev events nor the state after them are
// asked for; once its prev event arrives, it is accepted.
func TestFedPushedEventWithWithheldPrevRefused(t *testing.T) {
	for _, pg := range []bool{false, true} {
		name := map[bool]string{false: "sqlite", true: "postgres"}[pg]
		t.Run(name, func(t *testing.T) {
			a, b, log := observedPair(t, pg)
			alice, bob := a.Register(t, "alice"), b.Register(t, "bob")
			room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
			bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(a.Config.ServerName), map[string]any{}, nil)
			pjWaitFull(t, b, room) // the resync asks for state_ids too
			st, err := a.Store.CurrentState(context.Background(), room)
			if err != nil {
				t.Fatal(err)
			}
			auth := []string{st[store.StateKey{Type: "m.room.create"}], st[store.StateKey{Type: "m.room.power_levels"}],
				st[store.StateKey{Type: "m.room.member", StateKey: alice.UserID}]}
			head := frLatest(t, b, room)
			// a builds two messages but stores neither: the first is withheld.
			hidden := frBuild(t, a, room, alice.UserID, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "hidden"},
				[]string{head}, auth, frDepth(t, b, head)+1)
			next := frBuild(t, a, room, alice.UserID, "m.room.message", nil, map[string]any{"msgtype": "m.text", "body": "after the hidden one"},
				[]string{hidden.ID}, auth, hidden.Depth+1)
			log.reset()
			res, err := frSend(t, a, b, "", next.JSON())
			if err != nil || res.PDUs[next.ID].Error == "" {
				t.Fatalf("an event with a withheld prev event was taken: %v %+v", err, res)
			}
			asked := log.paths()
			if !slices.ContainsFunc(asked, func(p string) bool { return strings.Contains(p, "/get_missing_events/") }) ||
				slices.ContainsFunc(asked, func(p string) bool { return strings.Contains(p, "/state_ids/") || strings.Contains(p, "/v1/event/") }) {
				t.Fatalf("b asked a for %v: want get_missing_events only", asked)
			}
			if r := bob.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(next.ID), nil); r.Status != http.StatusNotFound {
				t.Fatalf("the refused event: %d", r.Status)
			}
			if rej, err := b.Store.RejectedEvents(context.Background(), []string{next.ID}); err != nil || rej[next.ID] {
				t.Fatalf("the refused event is recorded as rejected: %v", err)
			}
			// Both at once: accepted.
			res, err = frSend(t, a, b, "", hidden.JSON(), next.JSON())
			if err != nil || res.PDUs[hidden.ID].Error != "" || res.PDUs[next.ID].Error != "" {
				t.Fatalf("the two events together: %v %+v", err, res)
			}
			if got := bodies(messages(t, bob, room, "dir=b&limit=5").Chunk); !slices.Contains(got, "after the hidden one") || !slices.Contains(got, "hidden") {
				t.Fatalf("bob's timeline: %v", got)
			}
		})
	}
}

// requestLog records the paths of the requests a server received.
type requestLog struct {
	mu    sync.Mutex
	asked []string
}

func (l *requestLog) reset() { l.mu.Lock(); l.asked = nil; l.mu.Unlock() }

func (l *requestLog) paths() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.asked)
}

// observedPair starts two federating servers (on PostgreSQL when pg),
// a recording the requests it receives.
func observedPair(t *testing.T, pg bool) (a, b *ts.Server, log *requestLog) {
	fed := newFederation(t)
	log = &requestLog{}
	optsA := []ts.Option{fed.ServerNamed("police.test"), ts.ObserveInbound(func(r *http.Request, _ []byte) {
		log.mu.Lock()
		log.asked = append(log.asked, r.URL.Path)
		log.mu.Unlock()
	})}
	optsB := []ts.Option{fed.ServerNamed("gouv.test")}
	if pg {
		optsA, optsB = append(optsA, ts.WithPostgres(t)), append(optsB, ts.WithPostgres(t))
	}
	return ts.New(t, optsA...), ts.New(t, optsB...), log
}
