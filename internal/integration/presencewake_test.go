package integration

import (
	"net/url"
	"slices"
	gosync "sync"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// Many roommates coming online at once: a waiting poll that shows
// presence gets each newcomer's, a poll whose filter leaves presence out
// gets none (and waits on to its timeout), and a user who shares no room
// gets none. With parked polls and with polls waiting in net/http.
func TestPresenceOfRoommatesComingOnline(t *testing.T) {
	for _, park := range []bool{true, false} {
		name := "parked"
		if !park {
			name = "in-handler"
		}
		t.Run(name, func(t *testing.T) {
			forEachEngineWith(t, func(t *testing.T, s *ts.Server) {
				alice := s.Register(t, "alice")
				room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
				quiet := s.Register(t, "quiet")
				quiet.Join(room)
				stranger := s.Register(t, "stranger")
				strangerSince := doSync(t, stranger, "timeout=0").NextBatch
				var mates []*ts.Client
				for range 24 {
					m := s.Register(t, "mate")
					m.Join(room)
					mates = append(mates, m)
				}
				aliceSince := doSync(t, alice, "timeout=0").NextBatch
				noPresence := url.QueryEscape(`{"presence":{"not_types":["*"]}}`)
				quietSince := doSync(t, quiet, "timeout=0&filter="+noPresence).NextBatch

				// Quiet waits for 3 s with presence filtered out while
				// the mates come online.
				var quietAnswer presenceSync
				var wg gosync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					quiet.MustDo("GET", "/_matrix/client/v3/sync?timeout=3000&filter="+noPresence+"&since="+url.QueryEscape(quietSince), nil, &quietAnswer)
				}()
				// Alice long-polls (45 s) until every mate's presence
				// arrived: the newcomers' presence must wake her polls.
				want := map[string]bool{}
				for _, m := range mates {
					want[m.UserID] = true
				}
				poll := func(since string) <-chan presenceSync {
					answered := make(chan presenceSync, 1)
					go func() {
						var r presenceSync
						alice.MustDo("GET", "/_matrix/client/v3/sync?timeout=45000&since="+url.QueryEscape(since), nil, &r)
						answered <- r
					}()
					return answered
				}
				answered := poll(aliceSince)
				time.Sleep(200 * time.Millisecond) // let the polls wait first (not a timing assertion)
				for _, m := range mates {
					wg.Add(1)
					go func() {
						defer wg.Done()
						doSync(t, m, "timeout=0")
					}()
				}
				deadline := time.After(30 * time.Second)
				for {
					var r presenceSync
					select {
					case r = <-answered:
					case <-deadline:
						t.Fatalf("alice's long poll was not woken by the presence of %d mates", len(want))
					}
					for _, e := range r.Presence.Events {
						if !slices.ContainsFunc(mates, func(m *ts.Client) bool { return m.UserID == e.Sender }) && e.Sender != quiet.UserID && e.Sender != alice.UserID {
							t.Fatalf("presence of %s, who shares no room with alice", e.Sender)
						}
						delete(want, e.Sender)
					}
					if len(want) == 0 {
						break
					}
					answered = poll(r.NextBatch)
				}
				wg.Wait()
				if n := len(quietAnswer.Presence.Events); n != 0 || quietAnswer.NextBatch == "" {
					t.Fatalf("quiet's poll without presence: %d presence events, next_batch %q", n, quietAnswer.NextBatch)
				}
				// The stranger shares no room with the mates.
				var sr presenceSync
				stranger.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&since="+url.QueryEscape(strangerSince), nil, &sr)
				for _, e := range sr.Presence.Events {
					if e.Sender != stranger.UserID {
						t.Fatalf("stranger got the presence of %s", e.Sender)
					}
				}
				// Quiet's next poll, presence wanted now, shows them.
				var qr presenceSync
				quiet.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&since="+url.QueryEscape(quietSince), nil, &qr)
				got := map[string]bool{}
				for _, e := range qr.Presence.Events {
					got[e.Sender] = true
				}
				for _, m := range mates {
					if !got[m.UserID] {
						t.Fatalf("quiet's sync with presence lacks %s's", m.UserID)
					}
				}
			}, ts.WithConfig(func(c *config.Config) { c.Limits.ParkLongPolls = park }))
		})
	}
}
