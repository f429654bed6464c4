package slidingsync

import (
	"context"
	"encoding/json"
	"maps"
	"slices"

	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// prefetched is what a request read at once for the joined rooms it sends
// in full: a new connection's window is mostly rooms the process has not
// touched for a while (a restart, or the rooms cache trimmed them), and
// reading each alone cost about ten statements a room (its state loaded
// into the rooms cache, its timeline, visibility, bundles). Here the
// timelines are one statement for all (or none: the recent-events ring and
// the rooms' views), their history visibility one, their bundles one, and
// the state they ask for two when the configs name the state they want
// (types and members, as Element X asks) and the rooms cache does not hold
// it; a config with wildcards reads the room's state through the rooms
// cache.
type prefetched struct {
	rows    map[string][]*store.EventRow                  // newest first, the config's limit + 1
	bundles map[string]json.RawMessage                    // by event id
	state   map[string]map[store.StateKey]*store.EventRow // rooms whose wanted state was read here
	lazy    map[string]map[string]bool                    // room → members the timeline needs
}

// explicit reports whether a config names every piece of state it wants
// (no "*" type, no "*" member): what can be read by key for many rooms.
func (c RoomConfig) explicit() bool {
	for _, st := range c.States {
		for _, p := range st.Include {
			if p.Type == wildcard || p.Type == "m.room.member" && p.StateKey == wildcard {
				return false
			}
		}
	}
	return true
}

// prefetch reads the timelines, visibility, bundles and state of the
// joined rooms sent in full.
func (b *builder) prefetch(ctx context.Context, send []*wanted, heroes map[string][]string) (*prefetched, error) {
	pre := &prefetched{rows: map[string][]*store.EventRow{}, state: map[string]map[store.StateKey]*store.EventRow{}, lazy: map[string]map[string]bool{}}
	var fresh []*wanted
	for _, w := range send {
		if b.initial[w.m.RoomID] && w.m.Membership == "join" {
			fresh = append(fresh, w)
		}
	}
	if len(fresh) < 2 {
		return pre, nil // one room: as cheap alone
	}
	cur := b.cur.Events
	var read []string
	maxLimit := 0
	for _, w := range fresh {
		id, n := w.m.RoomID, w.cfg.TimelineLimit+1
		if rows, ok := b.s.rooms.RecentEvents(id, 0, cur, n); ok {
			pre.rows[id] = slices.Clone(rows)
		} else if v := b.s.rooms.RoomView(id, cur); v != nil && v.Covers(n) {
			pre.rows[id] = slices.Clone(v.Rows[:min(n, len(v.Rows))])
		} else {
			read = append(read, id)
			maxLimit = max(maxLimit, n)
		}
	}
	if len(read) > 0 {
		gen := b.s.rooms.RoomViewGeneration()
		got, err := b.s.store.RoomTimelines(ctx, read, cur, maxLimit)
		if err != nil {
			return nil, err
		}
		for _, id := range read {
			rows := got[id]
			b.s.rooms.PutRoomView(id, &rooms.RoomView{UpTo: cur, Rows: rows, Complete: len(rows) < maxLimit}, gen)
		}
		for _, w := range fresh {
			if rows, ok := got[w.m.RoomID]; ok {
				pre.rows[w.m.RoomID] = rows[:min(len(rows), w.cfg.TimelineLimit+1)]
			}
		}
	}
	ms := make([]store.Membership, 0, len(fresh))
	for _, w := range fresh {
		ms = append(ms, w.m)
	}
	if err := b.s.rooms.PrefetchVisibility(ctx, ms, pre.rows); err != nil {
		return nil, err
	}
	// What each room shows: its visible timeline, whose senders (and
	// member events' targets) lazy loading needs; the bundles of limited
	// timelines, for all rooms at once.
	var limitedRows []*store.EventRow
	for _, w := range fresh {
		id := w.m.RoomID
		rows := pre.rows[id]
		limit := w.cfg.TimelineLimit
		shown := rows[:min(len(rows), limit)]
		visible, err := b.s.rooms.VisibleTo(ctx, w.m, shown)
		if err != nil {
			return nil, err
		}
		if len(rows) > limit {
			limitedRows = append(limitedRows, visible...)
		}
		lazy := map[string]bool{}
		for _, row := range visible {
			if b.ignored[row.Sender] {
				continue
			}
			lazy[row.Sender] = true
			if row.Type == "m.room.member" && row.StateKey.Valid {
				lazy[row.StateKey.String] = true
			}
		}
		pre.lazy[id] = lazy
	}
	if len(limitedRows) > 0 {
		var err error
		if pre.bundles, err = b.s.read.Bundles(ctx, b.req.UserID, cur, limitedRows); err != nil {
			return nil, err
		}
	}
	// The state: by type for the types named, by member for the members
	// wanted (named, $ME, lazy, heroes), for all explicit rooms at once.
	types := map[string]bool{"m.room.name": true, "m.room.avatar": true}
	var byKey []string
	var pairs [][2]string
	for _, w := range fresh {
		id := w.m.RoomID
		if !w.cfg.explicit() || b.s.rooms.StateLoaded(id) {
			continue // a wildcard, or in the rooms cache: read there
		}
		byKey = append(byKey, id)
		users := map[string]bool{b.req.UserID: true}
		for _, st := range w.cfg.States {
			for _, p := range st.Include {
				switch {
				case p.Type != "m.room.member":
					types[p.Type] = true
				case p.StateKey != "$ME":
					users[p.StateKey] = true
				}
			}
		}
		if w.cfg.lazy() {
			maps.Copy(users, pre.lazy[id])
		}
		for _, h := range heroes[id] {
			users[h] = true
		}
		for u := range users {
			pairs = append(pairs, [2]string{id, u})
		}
	}
	if len(byKey) < 2 {
		return pre, nil
	}
	typed, err := b.s.store.CurrentStateOfTypes(ctx, byKey, slices.Collect(maps.Keys(types)))
	if err != nil {
		return nil, err
	}
	members, err := b.s.store.CurrentMembersOf(ctx, pairs)
	if err != nil {
		return nil, err
	}
	for _, id := range byKey {
		pre.state[id] = map[store.StateKey]*store.EventRow{}
	}
	for _, r := range slices.Concat(typed, members) {
		if m := pre.state[r.RoomID]; m != nil && r.StateKey.Valid {
			m[store.StateKey{Type: r.Type, StateKey: r.StateKey.String}] = r
		}
	}
	return pre, nil
}

// contentString is a string field of a state event's content.
func contentString(row *store.EventRow, field string) string {
	if row == nil {
		return ""
	}
	var ev struct {
		Content map[string]any `json:"content"`
	}
	if json.Unmarshal(row.JSON(), &ev) != nil {
		return ""
	}
	v, _ := ev.Content[field].(string)
	return v
}
