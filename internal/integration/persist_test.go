package integration

import (
	"context"
	"net/http"
	"slices"
	"strings"
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
