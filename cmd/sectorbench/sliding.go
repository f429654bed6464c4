package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"time"
)

// phaseSliding: simplified sliding sync (MSC4186) beside /sync, for
// users in 100, 1,000 and 5,000 rooms: a /sync initial sync shaped like
// the sliding request (one event per room, lazy members), a new sliding
// connection's first request for the 0–19 window as Element X starts,
// and a connection's next request after one new event in its window.
func (b *bench) phaseSliding(ctx context.Context) error {
	sec := b.sec
	p := sec.plan
	if p.sliders[1] == 0 {
		return fmt.Errorf("the sliding phase's rooms were not built")
	}
	type lister struct {
		user   int
		rooms  int
		sender func() (int, string) // a member who can post into a room of the window, and the room
	}
	// The most recently active room of each list is its newest: the
	// sender posts there, so the event is in the window.
	newestSlider := func() (int, string) { r := sec.sliders[len(sec.sliders)-1]; return r.members[0], r.id }
	firstSlider := func() (int, string) { r := sec.sliders[p.sliders[0]-1]; return r.members[0], r.id }
	heavyRoom := func() (int, string) {
		// The heavy user 1's last group: made after its DMs, its rooms'
		// setup messages went out in creation order.
		for i := len(sec.groups) - 1; i >= 0; i-- {
			if g := sec.groups[i]; g.members[1] == p.heavyUser(1) {
				return g.members[0], g.id
			}
		}
		return -1, ""
	}
	listers := []lister{
		{p.sliderUser(0), p.sliders[0], firstSlider},
		{p.heavyUser(1), p.heavyRoom / 2 * 2, heavyRoom},
		{p.sliderUser(1), p.sliders[1], newestSlider},
	}
	for _, l := range listers {
		if err := b.slidingFor(ctx, l.user, l.rooms, l.sender); err != nil {
			return err
		}
	}
	return nil
}

// elementXList is the room list request Element X makes at start: the
// 20 most recent rooms, their last event and what the list shows.
func elementXList(connID string) map[string]any {
	return map[string]any{
		"conn_id": connID,
		"lists": map[string]any{"all_rooms": map[string]any{
			"ranges":         [][2]int{{0, 19}},
			"timeline_limit": 1,
			"required_state": [][2]string{
				{"m.room.encryption", ""}, {"m.room.member", "$LAZY"}, {"m.room.member", "$ME"},
				{"m.room.name", ""}, {"m.room.avatar", ""}, {"m.room.canonical_alias", ""},
				{"m.room.topic", ""}, {"m.room.join_rules", ""}, {"m.room.power_levels", ""},
				{"m.room.create", ""}, {"m.room.history_visibility", ""}, {"m.room.tombstone", ""},
			},
		}},
		"extensions": map[string]any{
			"to_device": map[string]any{"enabled": true}, "e2ee": map[string]any{"enabled": true},
			"account_data": map[string]any{"enabled": true}, "receipts": map[string]any{"enabled": true},
			"typing": map[string]any{"enabled": true},
		},
	}
}

type slidingAnswer struct {
	Pos   string `json:"pos"`
	Lists map[string]struct {
		Count int `json:"count"`
	} `json:"lists"`
	Rooms map[string]struct {
		Timeline []struct {
			EventID string `json:"event_id"`
		} `json:"timeline"`
	} `json:"rooms"`
}

const slidingPath = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

// slidingFor measures one user's three rows.
func (b *bench) slidingFor(ctx context.Context, user, rooms int, sender func() (int, string)) error {
	acc := b.sec.users[user]
	label := "sliding sync beside /sync, user in " + thousands(int64(rooms)) + " rooms"

	// /sync, shaped like the sliding request but for every room.
	filter := `{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}`
	uses, size, cut, err := b.series(ctx, 4, func(ctx context.Context) (int, error) {
		var ans syncAnswer
		n, err := b.c.do(ctx, http.MethodGet, "/_matrix/client/v3/sync?timeout=0&filter="+url.QueryEscape(filter), acc.token, nil, &ans)
		if err == nil && len(ans.Rooms.Join) != rooms {
			err = fmt.Errorf("/sync of %s: %d rooms, want %d", acc.id, len(ans.Rooms.Join), rooms)
		}
		return n, err
	})
	if err != nil {
		return err
	}
	b.add(label, "/sync initial sync, timeline limit 1, lazy members: first; median of next 3 (CPU; size)", "—", firstAndNext(uses, size, b.cutNote(cut, len(uses))))

	// A new sliding connection each time: its first request.
	conn := 0
	uses, size, cut, err = b.series(ctx, 6, func(ctx context.Context) (int, error) {
		conn++
		var ans slidingAnswer
		n, err := b.c.do(ctx, http.MethodPost, slidingPath+"?timeout=0", acc.token, elementXList(fmt.Sprintf("bench-%d", conn)), &ans)
		if err == nil && (ans.Lists["all_rooms"].Count != rooms || len(ans.Rooms) != min(20, rooms)) {
			err = fmt.Errorf("sliding sync of %s: count %d, %d rooms; want %d, %d", acc.id, ans.Lists["all_rooms"].Count, len(ans.Rooms), rooms, min(20, rooms))
		}
		return n, err
	})
	if err != nil {
		return err
	}
	b.add(label, "sliding sync, new connection, window 0–19: first; median of next 5 (CPU; size)", "≤ 15 ms p50", firstAndNext(uses, size, b.cutNote(cut, len(uses))))

	// One connection: a member posts into a room of the window, then the
	// connection asks what is new (with the whole request: MSC4186's
	// parameters are not sticky). Only the sliding request is measured.
	var ans slidingAnswer
	if _, err := b.c.do(ctx, http.MethodPost, slidingPath+"?timeout=0", acc.token, elementXList("bench-live"), &ans); err != nil {
		return err
	}
	from, roomID := sender()
	if from < 0 {
		return fmt.Errorf("no room to post into for %s", acc.id)
	}
	const rounds = 50
	var total cpuUse
	var walls []time.Duration
	for i := range rounds {
		txn := fmt.Sprintf("slide-%d-%d-%d", user, time.Now().UnixNano(), i)
		var sent struct {
			EventID string `json:"event_id"`
		}
		body := map[string]string{"msgtype": "m.text", "body": "news " + txn}
		if _, err := b.c.do(ctx, http.MethodPut, "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/send/m.room.message/"+txn, b.sec.users[from].token, body, &sent); err != nil {
			return err
		}
		s0 := b.m.sample()
		var next slidingAnswer
		if _, err := b.c.do(ctx, http.MethodPost, slidingPath+"?timeout=0&pos="+url.QueryEscape(ans.Pos), acc.token, elementXList("bench-live"), &next); err != nil {
			return err
		}
		u := b.m.since(s0)
		total.lux, total.pg, total.withPG = total.lux+u.lux, total.pg+u.pg, u.withPG
		walls = append(walls, u.wall)
		got := next.Rooms[roomID].Timeline
		if len(got) != 1 || got[0].EventID != sent.EventID {
			return fmt.Errorf("sliding sync of %s after one message: timeline %v, want [%s]", acc.id, got, sent.EventID)
		}
		ans.Pos = next.Pos
	}
	b.add(label, fmt.Sprintf("sliding sync, next request after one new event: wall p50 / p99; CPU per request (%d)", rounds), "≤ 2 ms",
		fmt.Sprintf("%s / %s; %s", ms(median(walls)), ms(pct(sorted(walls), 99)), total.per(rounds)))
	return nil
}

// firstAndNext formats a series: the first request, then the median of
// the others, wall time and server CPU, and the answer's size.
func firstAndNext(uses []cpuUse, size int, note string) string {
	switch len(uses) {
	case 0:
		return note
	case 1:
		return fmt.Sprintf("%s (CPU %s)%s", ms(uses[0].wall), uses[0].per(1), note)
	}
	med := medianUse(uses[1:])
	return fmt.Sprintf("%s (CPU %s); %s (CPU %s; %s)%s", ms(uses[0].wall), uses[0].per(1), ms(med.wall), med.per(1), mib(int64(size)), note)
}

func sorted(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}
