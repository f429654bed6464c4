package integration

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/retention"
	"luxchat/internal/rooms"
	ts "luxchat/internal/testserver"
	"luxchat/internal/testutil/pgtest"
)

const day = 24 * time.Hour

// withRetention enables the retention job with an interval long enough
// that only the tests' own runs purge.
func withRetention(f func(r *config.Retention)) ts.Option {
	return ts.WithConfig(func(c *config.Config) {
		c.Retention.Enabled = true
		c.Retention.PurgeInterval = config.Duration{Duration: 1000 * time.Hour}
		if f != nil {
			f(&c.Retention)
		}
	})
}

// boundary returns a moment between the events sent before it and those
// sent after (origin_server_ts has millisecond resolution).
func boundary() time.Time {
	time.Sleep(3 * time.Millisecond)
	b := time.Now()
	time.Sleep(3 * time.Millisecond)
	return b
}

// runRetentionAt runs the purge job as if it were at (a day after) now.
func runRetentionAt(t *testing.T, s *ts.Server, at time.Time) retention.Report {
	t.Helper()
	s.Retention.SetClock(func() time.Time { return at })
	rep, err := s.Retention.RunOnce(context.Background())
	if err != nil {
		t.Fatalf("retention run: %v", err)
	}
	return rep
}

// allMessages pages /messages backwards to the start and returns every
// event.
func allMessages(t *testing.T, c *ts.Client, room string) []event {
	t.Helper()
	var out []event
	from := ""
	for i := 0; i < 100; i++ {
		q := "dir=b&limit=7"
		if from != "" {
			q += "&from=" + from
		}
		p := messages(t, c, room, q)
		out = append(out, p.Chunk...)
		if p.End == "" || len(p.Chunk) == 0 {
			return out
		}
		from = p.End
	}
	t.Fatal("/messages does not end")
	return nil
}

func eventIDs(evs []event) []string {
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.EventID)
	}
	return ids
}

// A room whose policy keeps messages a day loses, once the job ran a day
// later, its older messages with their media, search entries and
// relations, keeps its state, and goes on working: clients page past the
// gap, sync without the purged events, join, send and search.
func TestRetentionPurgesRoomHistory(t *testing.T) {
	forEachEngineWith(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": "archive"})
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.retention/", map[string]any{"max_lifetime": day.Milliseconds()}, nil)
		early := doSync(t, alice, "timeout=0")
		mediaID := upload(t, alice, "text/plain", "old.txt", []byte("old attachment"))
		keptMedia := upload(t, alice, "text/plain", "kept.txt", []byte("kept attachment"))
		var old []string
		for i := range 5 {
			old = append(old, alice.SendText(room, fmt.Sprintf("oldsecret number %d", i)))
		}
		withFile := alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.file", "body": "oldfile", "url": "mxc://localhost/" + mediaID})
		old = append(old, withFile)
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.topic/", map[string]any{"topic": "old topic"}, nil)
		cut := boundary()
		fresh := []string{alice.SendText(room, "freshword one")}
		// An edit of a purged message, sent after: kept, its parent gone.
		fresh = append(fresh, alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.text", "body": "* edited",
			"m.new_content": map[string]any{"msgtype": "m.text", "body": "edited"}, "m.relates_to": map[string]any{"rel_type": "m.replace", "event_id": old[0]}}))
		fresh = append(fresh, alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.file", "body": "keptfile", "url": "mxc://localhost/" + keptMedia}))
		before := doSync(t, alice, "timeout=0")

		rep := runRetentionAt(t, s, cut.Add(day))
		if rep.Events != int64(len(old)) {
			t.Fatalf("purged %d events, want %d (%+v)", rep.Events, len(old), rep)
		}
		// The events are gone for clients.
		for _, id := range old {
			if r := alice.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/context/"+esc(id), nil); r.Status != http.StatusNotFound {
				t.Errorf("/context of purged %s: %d %s", id, r.Status, r.Body)
			}
			if r := alice.Do("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/event/"+esc(id), nil); r.Status != http.StatusNotFound {
				t.Errorf("/event of purged %s: %d", id, r.Status)
			}
		}
		if r := alice.Do("GET", "/_matrix/client/v1/rooms/"+esc(room)+"/relations/"+esc(old[0]), nil); r.Status != http.StatusNotFound && r.Status != http.StatusOK {
			t.Errorf("/relations of a purged parent: %d %s", r.Status, r.Body)
		}
		history := allMessages(t, alice, room)
		got := bodies(history)
		if slices.ContainsFunc(got, func(b string) bool { return strings.Contains(b, "old") }) {
			t.Fatalf("history after purge still has old messages: %v", got)
		}
		for _, id := range fresh {
			if !slices.Contains(eventIDs(history), id) {
				t.Errorf("fresh event %s missing from history %v", id, got)
			}
		}
		// State stays: the name and topic set before the cut.
		var topic map[string]any
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.topic/", nil, &topic)
		if topic["topic"] != "old topic" {
			t.Fatalf("topic after purge: %v", topic)
		}
		// Search no longer finds purged text; media only a purged event
		// named is gone, media a kept event names stays.
		if re := searchFor(t, alice, "", term("oldsecret")); len(re.Results) != 0 {
			t.Fatalf("search finds purged text: %v", resultBodies(re))
		}
		if re := searchFor(t, alice, "", term("freshword")); len(re.Results) != 1 {
			t.Fatalf("search for kept text: %v", resultBodies(re))
		}
		if r := alice.Do("GET", "/_matrix/client/v1/media/download/localhost/"+mediaID, nil); r.Status != http.StatusNotFound {
			t.Fatalf("media of a purged event: %d", r.Status)
		}
		if r := alice.Do("GET", "/_matrix/client/v1/media/download/localhost/"+keptMedia, nil); r.Status != http.StatusOK {
			t.Fatalf("media of a kept event: %d", r.Status)
		}
		// Syncs: an initial sync, one since before the purged events were
		// sent and one since before the purge show no purged event.
		for _, q := range []string{"timeout=0", "timeout=0&since=" + early.NextBatch, "timeout=0&since=" + before.NextBatch} {
			sr := doSync(t, alice, q)
			for _, e := range sr.Rooms.Join[room].Timeline.Events {
				if slices.Contains(old, e.EventID) {
					t.Fatalf("sync %s shows purged %s", q, e.EventID)
				}
			}
		}
		// The room works: a new user joins, syncs, reads and sends.
		bob := s.Register(t, "bob")
		bob.Join(room)
		bobMsg := bob.SendText(room, "bob was here")
		alice.SendText(room, "welcome bob")
		sr := doSync(t, bob, "timeout=0")
		tl := sr.Rooms.Join[room].Timeline.Events
		if len(tl) == 0 || slices.ContainsFunc(tl, func(e event) bool { return slices.Contains(old, e.EventID) }) {
			t.Fatalf("bob's sync timeline %v", eventIDs(tl))
		}
		if b := bodies(allMessages(t, bob, room)); !slices.Contains(b, "bob was here") || !slices.Contains(b, "freshword one") || slices.Contains(b, "oldsecret number 1") {
			t.Fatalf("bob's history %v", b)
		}
		var ctx struct {
			Event event `json:"event"`
		}
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/context/"+esc(bobMsg), nil, &ctx)
		// A second run finds nothing left.
		if rep := runRetentionAt(t, s, cut.Add(day)); rep.Events != 0 {
			t.Fatalf("second run purged %d", rep.Events)
		}
	}, withRetention(nil))
}

// The server's bounds override the rooms' policies and the default: a
// room asking for an hour keeps its messages allowed_lifetime_min, one
// asking for a month keeps them allowed_lifetime_max, rooms without a
// max_lifetime get the default's.
func TestRetentionBoundsClamp(t *testing.T) {
	forEachEngineWith(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		policy := func(content map[string]any) string {
			r := alice.CreateRoom(map[string]any{})
			if content != nil {
				alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(r)+"/state/m.room.retention/", content, nil)
			}
			return r
		}
		short := policy(map[string]any{"max_lifetime": time.Hour.Milliseconds()})
		long := policy(map[string]any{"max_lifetime": (30 * day).Milliseconds()})
		minOnly := policy(map[string]any{"min_lifetime": 1000})
		plain := policy(nil)
		all := []string{short, long, minOnly, plain}
		for _, r := range all {
			alice.SendText(r, "message")
		}
		cut := boundary()
		for _, r := range all {
			alice.SendText(r, "newest") // the newest event is always kept
		}
		kept := func(r string) bool { return slices.Contains(bodies(allMessages(t, alice, r)), "message") }
		for _, step := range []struct {
			at   time.Duration
			want int64
			gone []string
		}{
			{36 * time.Hour, 0, nil},               // nothing under two days
			{60 * time.Hour, 1, []string{short}},   // an hour, raised to two days
			{4 * day, 2, []string{minOnly, plain}}, // the default's three days
			{9 * day, 0, nil},
			{11 * day, 1, []string{long}}, // a month, lowered to ten days
		} {
			if rep := runRetentionAt(t, s, cut.Add(step.at)); rep.Events != step.want {
				t.Fatalf("at %v: purged %d, want %d", step.at, rep.Events, step.want)
			}
			for _, r := range step.gone {
				if kept(r) {
					t.Fatalf("at %v: room %s kept its message", step.at, r)
				}
			}
		}
		for _, r := range all {
			if b := bodies(allMessages(t, alice, r)); !slices.Equal(b, []string{"newest"}) {
				t.Fatalf("room %s at the end: %v", r, b)
			}
		}
	}, withRetention(func(r *config.Retention) {
		r.AllowedLifetimeMin = config.Lifetime{Duration: 2 * day}
		r.AllowedLifetimeMax = config.Lifetime{Duration: 10 * day}
		r.DefaultPolicy.MaxLifetime = config.Lifetime{Duration: 3 * day}
	}))
}

// A purge cut short (as by a crash) is recorded with its cutoff and
// resumed by the next start's run, which purges the rest even though, by
// then, the clock says nothing is expired.
func TestRetentionResumesAfterRestart(t *testing.T) {
	run := func(t *testing.T, opts ...ts.Option) {
		s1 := ts.New(t, opts...)
		alice := s1.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{})
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.retention/", map[string]any{"max_lifetime": day.Milliseconds()}, nil)
		const n = 400
		for i := range n {
			alice.SendText(room, fmt.Sprintf("old %d", i))
		}
		cut := boundary()
		alice.SendText(room, "fresh")
		// Cut short at the second batch: by then the search index's
		// merging is paused for the purge (and resumed on the way out).
		batches := 0
		s1.Retention.SetAfterBatch(func(string, rooms.HistoryBatch) error {
			if batches++; batches == 2 {
				return retention.ErrStop
			}
			return nil
		})
		s1.Retention.SetClock(func() time.Time { return cut.Add(day) })
		if _, err := s1.Retention.RunOnce(context.Background()); !errors.Is(err, retention.ErrStop) {
			t.Fatalf("cut short: %v", err)
		}
		purged, cutoff, err := s1.Store.RetentionPurged(context.Background(), room)
		if err != nil || purged == 0 || purged >= n || cutoff != cut.UnixMilli() {
			t.Fatalf("after the cut: purged %d, cutoff %d (want %d), %v", purged, cutoff, cut.UnixMilli(), err)
		}
		if paused, err := s1.Store.SearchMergePaused(context.Background()); err != nil || paused {
			t.Fatalf("search merging still paused after the purge stopped: %v %v", paused, err)
		}
		if err := s1.Stop(); err != nil {
			t.Fatal(err)
		}
		s2 := ts.New(t, opts...)
		alice.URL = s2.URL
		// The real clock: nothing is a day old, but the purge under way
		// continues with its cutoff (in the run at start, or in this one,
		// which waits for it).
		if _, err := s2.Retention.RunOnce(context.Background()); err != nil {
			t.Fatalf("resumed run: %v", err)
		}
		if total, _, err := s2.Store.RetentionPurged(context.Background(), room); err != nil || total != n {
			t.Fatalf("purged %d in all, %v; want %d", total, err, n)
		}
		if b := bodies(allMessages(t, alice, room)); !slices.Equal(b, []string{"fresh"}) {
			t.Fatalf("history after the resumed purge: %v", b)
		}
		// The resumed purge is no longer recorded (the start's own run may
		// be recording a purge of its own, under the real clock's cutoff).
		if _, cutoff, _ := s2.Store.RetentionPurged(context.Background(), room); cutoff == cut.UnixMilli() {
			t.Fatalf("the resumed purge still recorded as under way: %d", cutoff)
		}
	}
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		run(t, withRetention(nil), ts.WithConfig(func(c *config.Config) { c.DataDir = dir }))
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.NewDatabase(t)
		run(t, withRetention(nil), ts.WithConfig(func(c *config.Config) { c.Database = dsn }))
	})
}

// Messages sent while a purge runs in their room are all kept.
func TestRetentionPurgeWhileSending(t *testing.T) {
	forEachEngineWith(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"}) // unencrypted: searched
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.retention/", map[string]any{"max_lifetime": day.Milliseconds()}, nil)
		const n = 600
		for i := range n {
			alice.SendText(room, fmt.Sprintf("old %d", i))
		}
		cut := boundary()
		var sent []string
		var mu sync.Mutex
		batches := 0
		started := make(chan struct{})
		s.Retention.SetAfterBatch(func(string, rooms.HistoryBatch) error {
			mu.Lock()
			defer mu.Unlock()
			if batches++; batches == 1 {
				close(started)
			}
			return nil
		})
		done := make(chan struct{})
		go func() {
			defer close(done)
			<-started
			for i := range 30 {
				id := alice.SendText(room, fmt.Sprintf("new duringpurge %d", i))
				mu.Lock()
				sent = append(sent, id)
				mu.Unlock()
			}
		}()
		rep := runRetentionAt(t, s, cut.Add(day))
		<-done
		if rep.Events != n {
			t.Fatalf("purged %d, want %d", rep.Events, n)
		}
		history := eventIDs(allMessages(t, alice, room))
		for _, id := range sent {
			if !slices.Contains(history, id) {
				t.Fatalf("message %s sent during the purge is missing", id)
			}
		}
		if b := bodies(allMessages(t, alice, room)); len(b) != len(sent) {
			t.Fatalf("history has %d messages, want the %d new ones: %v", len(b), len(sent), b)
		}
		// The search index (whose merging the purge paused, then did in
		// steps) finds what was sent during the purge, not what it purged,
		// and merges on its own again.
		if re := searchFor(t, alice, "", term("duringpurge")); re.Count != len(sent) {
			t.Fatalf("search for the messages sent during the purge: %d %v", re.Count, resultBodies(re))
		}
		if re := searchFor(t, alice, "", term("old")); len(re.Results) != 0 {
			t.Fatalf("search finds purged messages: %v", resultBodies(re))
		}
		if paused, err := s.Store.SearchMergePaused(context.Background()); err != nil || paused {
			t.Fatalf("search merging still paused after the purge: %v %v", paused, err)
		}
	}, withRetention(nil))
}
