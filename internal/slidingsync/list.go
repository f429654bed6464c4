package slidingsync

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	gosync "sync"

	"luxchat/internal/store"
)

// entry is one room of a user's room list.
type entry struct {
	m     *store.Membership // the rooms service's cached list: read only
	order int64             // recent activity: the newest event's position (the membership's when not joined)
}

// roomList is the user's rooms as lists see them, most recently active
// first: joined, invited and knocked rooms, rooms the user was kicked or
// banned from, and rooms they left that this connection showed before.
// Ordering takes each room's newest position from memory (the rooms
// service knows every room written to since the process started, and
// this package the others, read once for all rooms in one statement).
func (s *Service) roomList(ctx context.Context, userID string, st *connState, data *userData, ignored map[string]bool) ([]entry, error) {
	ms, err := s.rooms.Memberships(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := make([]entry, 0, len(ms))
	var leaves []*store.Membership
	for i := range ms {
		m := &ms[i]
		switch m.Membership {
		case "join":
			out = append(out, entry{m: m})
		case "invite":
			shown, ok := data.inviteShown(m.EventID)
			if !ok {
				if shown, err = s.sync.InviteShown(ctx, *m, ignored); err != nil {
					return nil, err
				}
				data.setShown(m.EventID, shown)
			}
			if shown {
				out = append(out, entry{m: m, order: m.Pos})
			}
		case "knock":
			out = append(out, entry{m: m, order: m.Pos})
		case "leave", "ban":
			if _, sent := st.rooms[m.RoomID]; sent {
				out = append(out, entry{m: m, order: m.Pos})
			} else {
				leaves = append(leaves, m)
			}
		}
	}
	// Rooms the user was removed from are listed (they may not know);
	// rooms they left themselves only once shown on this connection.
	if len(leaves) > 0 {
		removed, err := s.removed(ctx, userID, leaves)
		if err != nil {
			return nil, err
		}
		for _, m := range leaves {
			if removed[m.EventID] {
				out = append(out, entry{m: m, order: m.Pos})
			}
		}
	}
	if err := s.fillOrder(ctx, out); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b entry) int {
		if c := cmp.Compare(b.order, a.order); c != 0 {
			return c
		}
		return cmp.Compare(a.m.RoomID, b.m.RoomID)
	})
	return out, nil
}

// fillOrder sets the order of joined rooms: their newest position.
func (s *Service) fillOrder(ctx context.Context, es []entry) error {
	var unknown []string
	s.latestMu.Lock()
	for i := range es {
		if es[i].m.Membership != "join" {
			continue
		}
		id := es[i].m.RoomID
		if p := s.rooms.LatestPos(id); p >= 0 {
			es[i].order = p
		} else if p, ok := s.latest[id]; ok {
			es[i].order = p
		} else {
			unknown = append(unknown, id)
		}
	}
	s.latestMu.Unlock()
	if len(unknown) == 0 {
		return nil
	}
	// Rooms without events since the process started: their newest
	// position cannot move without the rooms service knowing it, so it is
	// read once.
	got, err := s.store.RoomsLatestPos(ctx, unknown)
	if err != nil {
		return err
	}
	s.latestMu.Lock()
	defer s.latestMu.Unlock()
	if len(s.latest)+len(got) > maxRemembered {
		clear(s.latest)
	}
	for _, id := range unknown {
		s.latest[id] = got[id] // 0 for a room without events here
	}
	for i := range es {
		if p, ok := got[es[i].m.RoomID]; ok && es[i].m.Membership == "join" && s.rooms.LatestPos(es[i].m.RoomID) < 0 {
			es[i].order = p
		}
	}
	for i := range es {
		if es[i].order == 0 {
			es[i].order = es[i].m.Pos
		}
	}
	return nil
}

// maxRemembered bounds each of the service's per-room caches.
const maxRemembered = 200_000

// removed reports which leave events (by id) were sent by someone else:
// a kick or a ban. Senders are cached by event id (an event never
// changes sender); those not cached are read in one statement.
func (s *Service) removed(ctx context.Context, userID string, leaves []*store.Membership) (map[string]bool, error) {
	out := make(map[string]bool, len(leaves))
	var unknown []string
	s.sendersMu.Lock()
	for _, m := range leaves {
		if sender, ok := s.senders[m.EventID]; ok {
			out[m.EventID] = sender != userID && sender != ""
		} else {
			unknown = append(unknown, m.EventID)
		}
	}
	s.sendersMu.Unlock()
	if len(unknown) == 0 {
		return out, nil
	}
	rows, err := s.store.GetEvents(ctx, unknown)
	if err != nil {
		return nil, err
	}
	s.sendersMu.Lock()
	defer s.sendersMu.Unlock()
	if len(s.senders)+len(unknown) > maxRemembered {
		clear(s.senders)
	}
	for _, id := range unknown {
		s.senders[id] = "" // not stored here: a remote invite declined
	}
	for _, r := range rows {
		s.senders[r.EventID] = r.Sender
		out[r.EventID] = r.Sender != userID
	}
	return out, nil
}

// roomMeta is what list filters read of a room's state: its type (from
// its create event, which never changes) and whether it is encrypted
// (which, once on, stays on), as of the events position asOf.
type roomMeta struct {
	typ       *string
	encrypted bool
	asOf      int64
}

// metaCache holds roomMeta of rooms; shared by every connection.
type metaCache struct {
	mu gosync.Mutex
	m  map[string]roomMeta
}

// metas returns the meta of rooms, reading those not known (or possibly
// changed: an unencrypted room with events since) in one statement.
func (s *Service) metas(ctx context.Context, roomIDs []string) (map[string]roomMeta, error) {
	out := make(map[string]roomMeta, len(roomIDs))
	var stale []string
	s.meta.mu.Lock()
	for _, id := range roomIDs {
		if m, ok := s.meta.m[id]; ok && (m.encrypted || s.rooms.LatestPos(id) <= m.asOf) {
			out[id] = m
		} else {
			stale = append(stale, id)
		}
	}
	s.meta.mu.Unlock()
	if len(stale) == 0 {
		return out, nil
	}
	asOf := s.sync.Current().Events
	rows, err := s.store.CurrentStateOfTypes(ctx, stale, []string{"m.room.create", "m.room.encryption"})
	if err != nil {
		return nil, err
	}
	read := make(map[string]roomMeta, len(stale))
	for _, id := range stale {
		read[id] = roomMeta{asOf: asOf}
	}
	for _, r := range rows {
		m := read[r.RoomID]
		switch r.Type {
		case "m.room.encryption":
			m.encrypted = true
		case "m.room.create":
			var ev struct {
				Content struct {
					Type *string `json:"type"`
				} `json:"content"`
			}
			if json.Unmarshal(r.JSON(), &ev) == nil {
				m.typ = ev.Content.Type
			}
		}
		read[r.RoomID] = m
	}
	s.meta.mu.Lock()
	defer s.meta.mu.Unlock()
	if len(s.meta.m)+len(read) > maxRemembered {
		clear(s.meta.m)
	}
	for id, m := range read {
		s.meta.m[id] = m
		out[id] = m
	}
	return out, nil
}

// spaceChildren returns the rooms the m.space.child events of the given
// spaces name (only spaces the user is joined to; subspaces are not
// followed, as the MSC says).
func (s *Service) spaceChildren(ctx context.Context, spaces []string, joined map[string]bool) (map[string]bool, error) {
	out := map[string]bool{}
	for _, sp := range spaces {
		if !joined[sp] {
			continue
		}
		ids, err := s.rooms.CurrentStateIDs(ctx, sp)
		if err != nil {
			return nil, err
		}
		for k := range ids {
			if k.Type != "m.space.child" {
				continue
			}
			ev, err := s.rooms.CurrentStateEvent(ctx, sp, k.Type, k.StateKey)
			if err != nil {
				continue
			}
			var c struct {
				Via []string `json:"via"`
			}
			if json.Unmarshal(ev.Content, &c) == nil && len(c.Via) > 0 {
				out[k.StateKey] = true
			}
		}
	}
	return out, nil
}

// filterList returns the entries a list's filters keep, in order.
func (s *Service) filterList(ctx context.Context, es []entry, f Filters, data *userData, joined map[string]bool) ([]entry, error) {
	var metas map[string]roomMeta
	if f.IsEncrypted != nil || f.HasRoomTypes || len(f.NotRoomTypes) > 0 {
		ids := make([]string, len(es))
		for i, e := range es {
			ids[i] = e.m.RoomID
		}
		var err error
		if metas, err = s.metas(ctx, ids); err != nil {
			return nil, err
		}
	}
	var children map[string]bool
	if len(f.Spaces) > 0 {
		var err error
		if children, err = s.spaceChildren(ctx, f.Spaces, joined); err != nil {
			return nil, err
		}
	}
	typeIn := func(t *string, list []*string) bool {
		for _, x := range list {
			if (x == nil && t == nil) || (x != nil && t != nil && *x == *t) {
				return true
			}
		}
		return false
	}
	out := make([]entry, 0, len(es))
	for _, e := range es {
		id := e.m.RoomID
		if f.IsInvite != nil && (e.m.Membership == "invite") != *f.IsInvite {
			continue
		}
		if f.IsDM != nil && data.isDM(id) != *f.IsDM {
			continue
		}
		if f.IsEncrypted != nil && metas[id].encrypted != *f.IsEncrypted {
			continue
		}
		if f.HasRoomTypes && !typeIn(metas[id].typ, f.RoomTypes) {
			continue
		}
		if len(f.NotRoomTypes) > 0 && typeIn(metas[id].typ, f.NotRoomTypes) {
			continue
		}
		if children != nil && !children[id] || len(f.Spaces) > 0 && children == nil {
			continue
		}
		if len(f.Tags) > 0 || len(f.NotTags) > 0 {
			tags := data.tagsOf(id)
			if slices.ContainsFunc(tags, func(t string) bool { return slices.Contains(f.NotTags, t) }) {
				continue
			}
			if len(f.Tags) > 0 && !slices.ContainsFunc(tags, func(t string) bool { return slices.Contains(f.Tags, t) }) {
				continue
			}
		}
		out = append(out, e)
	}
	return out, nil
}
