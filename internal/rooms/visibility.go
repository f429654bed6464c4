package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// History visibility: which events a user may see (Viewer). It is the
// read side's, but stays with the pipeline because the pipeline's users
// need it too: roomfed (the jump to a date, what other servers may read),
// sync and search as well as package roomread. StateEntry reads the
// room's cached state under its lock, and MoreHistory makes a Viewer
// forget what it knew of backfilled history.

// StateEntry reads one state entry of a group of roomID: from the room
// cache when the group is the room's current state (as it is for the
// events since the last state change, most of a timeline), else through a
// cache of entries (groups are immutable, so entries never go stale).
func (s *Service) StateEntry(ctx context.Context, roomID string, group int64, t pdu.StateTuple) (*pdu.Event, error) {
	if group == 0 {
		return nil, nil
	}
	s.mu.Lock()
	r := s.rooms[roomID]
	s.mu.Unlock()
	if r != nil && r.mu.TryLock() { // never wait for a commit
		current := r.loaded && r.group == group
		ev := r.state[t]
		r.mu.Unlock()
		if current {
			return ev, nil
		}
	}
	key := entryKey(group, t)
	id, ok := s.entries.get(key)
	if !ok {
		var err error
		if id, err = s.store.StateGroupEntry(ctx, group, store.StateKey{Type: t.Type, StateKey: t.StateKey}); err != nil {
			return nil, err
		}
		s.entries.put(key, id)
	}
	if id == "" {
		return nil, nil
	}
	return s.Event(ctx, id)
}

// HistoryVisibility is the visibility an m.room.history_visibility event
// sets ("shared" for none or an unknown value).
func HistoryVisibility(ev *pdu.Event) string {
	if ev == nil {
		return "shared"
	}
	var c struct {
		V string `json:"history_visibility"`
	}
	_ = json.Unmarshal(ev.Content, &c)
	switch c.V {
	case "world_readable", "shared", "invited", "joined":
		return c.V
	}
	return "shared"
}

// Membership is the viewer's current membership of the room.
func (v *Viewer) Membership() string { return v.current }

// UserID is the viewer.
func (v *Viewer) UserID() string { return v.userID }

// Viewer answers history visibility questions for one user in one room.
type Viewer struct {
	s        *Service
	userID   string
	current  string // the user's current membership
	sincePos int64  // the position of the user's current membership
	byGroup  map[int64]bool
	memberAt map[int64]string // see MembershipAt
	bf       *backfillView    // see canSeeBackfilled; loaded on first use
	all      bool             // a server administrator's view: every event (AdminViewer)
}

// MembershipAt is the user's membership when row was sent (MSC4115): the
// one it sets for their own member events, the one before it otherwise,
// "leave" for none. Lookups are per state group, mostly the room's
// current one, answered from the room cache.
func (v *Viewer) MembershipAt(ctx context.Context, row *store.EventRow) string {
	if row.Type == "m.room.member" && row.StateKey.Valid && row.StateKey.String == v.userID {
		var e struct {
			Content struct {
				Membership string `json:"membership"`
			} `json:"content"`
		}
		_ = json.Unmarshal(row.JSON(), &e)
		return e.Content.Membership
	}
	if v.current != "" && v.sincePos > 0 && row.Pos > v.sincePos {
		return v.current // sent after the user's latest membership change
	}
	if m, ok := v.memberAt[row.StateGroup]; ok {
		return m
	}
	if m, ok := v.s.memberAt.get(entryKey(row.StateGroup, pdu.StateTuple{Type: "m.room.member", StateKey: v.userID})); ok {
		return m
	}
	m := "leave"
	if ev, err := v.s.StateEntry(ctx, row.RoomID, row.StateGroup, pdu.StateTuple{Type: "m.room.member", StateKey: v.userID}); err == nil && ev != nil {
		m = MembershipOf(ev)
	}
	if v.memberAt == nil {
		v.memberAt = map[int64]string{}
	}
	v.memberAt[row.StateGroup] = m
	return m
}

// MembershipLookup returns MembershipAt for one user in one room (rows
// of that room only), remembering its answers; m is the user's membership
// row there, which answers for the events after it without a lookup.
func (s *Service) MembershipLookup(m store.Membership) func(ctx context.Context, row *store.EventRow) string {
	v := &Viewer{s: s, userID: m.UserID, current: m.Membership, sincePos: m.Pos}
	return v.MembershipAt
}

func (s *Service) newViewer(ctx context.Context, roomID, userID string) (*Viewer, error) {
	v := &Viewer{s: s, userID: userID, byGroup: map[int64]bool{}}
	m, err := s.store.GetMembership(ctx, roomID, userID)
	if err == nil && !m.Forgotten {
		// A forgotten room is read as by someone never in it.
		v.current, v.sincePos = m.Membership, m.Pos
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return v, nil
}

// CanSee applies the history visibility rules to one event, using the
// state before it.
func (v *Viewer) CanSee(ctx context.Context, row *store.EventRow) (bool, error) {
	if v.all {
		return true, nil
	}
	if row.Type == "m.room.member" && row.StateKey.Valid && row.StateKey.String == v.userID {
		return true, nil // users always see their own membership changes
	}
	if store.IsBackfilled(row.Pos) {
		return v.canSeeBackfilled(ctx, row)
	}
	if v.joinedAt(row) {
		return true, nil // joined when it was sent: seen whatever the visibility
	}
	if ok, seen := v.byGroup[row.StateGroup]; seen {
		return ok, nil
	}
	hv, err := v.s.visibilityAt(ctx, row.RoomID, row.StateGroup)
	if err != nil {
		return false, err
	}
	// The membership at the event matters unless the history is readable
	// anyway (its lookup is per user, the visibility's per state group).
	ok := hv == "world_readable" || hv == "shared" && v.current == "join"
	if !ok {
		membership, known := v.s.memberAt.get(entryKey(row.StateGroup, pdu.StateTuple{Type: "m.room.member", StateKey: v.userID}))
		if !known {
			memEv, err := v.s.StateEntry(ctx, row.RoomID, row.StateGroup, pdu.StateTuple{Type: "m.room.member", StateKey: v.userID})
			if err != nil {
				return false, err
			}
			if memEv != nil {
				membership = MembershipOf(memEv)
			}
		}
		switch hv {
		case "shared", "joined":
			ok = membership == "join"
		case "invited":
			ok = membership == "join" || membership == "invite"
		}
	}
	v.byGroup[row.StateGroup] = ok
	return ok, nil
}

// ErrMayNotRead answers readers of rooms they may not see, and of rooms
// not known here (which must not be told apart).
var ErrMayNotRead = errcode.Forbidden("you are not allowed to view this room")

// MayRead checks that a user may read a room at all (see mayRead).
func (s *Service) MayRead(ctx context.Context, roomID, userID string) error {
	_, err := s.mayRead(ctx, roomID, userID)
	return err
}

// Viewer answers history visibility questions for a user who may read
// a room at all (see mayRead).
func (s *Service) Viewer(ctx context.Context, roomID, userID string) (*Viewer, error) {
	return s.mayRead(ctx, roomID, userID)
}

// mayRead checks that a user may read a room at all: a member now or
// before (and the room not forgotten), or a world-readable room.
func (s *Service) mayRead(ctx context.Context, roomID, userID string) (*Viewer, error) {
	if _, err := s.VersionOf(ctx, roomID); errors.Is(err, ErrUnknownRoom) {
		return nil, ErrMayNotRead
	} else if err != nil {
		return nil, err
	}
	v, err := s.newViewer(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if v.current != "" {
		return v, nil
	}
	if hv, err := s.CurrentStateEvent(ctx, roomID, "m.room.history_visibility", ""); err == nil && HistoryVisibility(hv) == "world_readable" {
		return v, nil
	}
	return nil, ErrMayNotRead
}

// joinedAt reports whether the viewer was joined when row was sent, known
// without a lookup: it came after the join that is their current
// membership (as MembershipAt reads it).
func (v *Viewer) joinedAt(row *store.EventRow) bool {
	return v.current == "join" && v.sincePos > 0 && row.Pos > v.sincePos
}

// Visible returns the rows (all of one room) that a user may see under
// history visibility, in order.
func (s *Service) Visible(ctx context.Context, roomID, userID, membership string, rows []*store.EventRow) ([]*store.EventRow, error) {
	return s.visible(ctx, &Viewer{s: s, userID: userID, current: membership, byGroup: map[int64]bool{}}, roomID, rows)
}

// VisibleTo is Visible for the user and room of a membership row: the
// events after it are seen without looking at their state when it is a
// join.
func (s *Service) VisibleTo(ctx context.Context, m store.Membership, rows []*store.EventRow) ([]*store.EventRow, error) {
	return s.visible(ctx, &Viewer{s: s, userID: m.UserID, current: m.Membership, sincePos: m.Pos, byGroup: map[int64]bool{}}, m.RoomID, rows)
}

func (s *Service) visible(ctx context.Context, v *Viewer, roomID string, rows []*store.EventRow) ([]*store.EventRow, error) {
	var unknown []*store.EventRow // rows whose group's visibility is not cached and matters
	for _, row := range rows {
		if _, ok := s.visibility.get(groupKey(row.StateGroup)); !ok && !v.joinedAt(row) {
			unknown = append(unknown, row)
		}
	}
	if err := s.prefetchEntries(ctx, roomID, unknown, pdu.StateTuple{Type: "m.room.history_visibility"}); err != nil {
		return nil, err
	}
	out := rows[:0:0]
	for _, row := range rows {
		ok, err := v.CanSee(ctx, row)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		if row, err = v.Shown(ctx, row); err != nil {
			return nil, err
		}
		out = append(out, row)
	}
	return out, nil
}

// prefetchEntries loads one state entry of the rows' state groups that
// are neither the room's current one nor cached, in one statement rather
// than one per group (a timeline of a new room has a group per event).
func (s *Service) prefetchEntries(ctx context.Context, roomID string, rows []*store.EventRow, t pdu.StateTuple) error {
	current := int64(-1)
	s.mu.Lock()
	r := s.rooms[roomID]
	s.mu.Unlock()
	if r != nil && r.mu.TryLock() {
		if r.loaded {
			current = r.group
		}
		r.mu.Unlock()
	}
	var groups []int64
	for _, row := range rows {
		g := row.StateGroup
		if g == 0 || g == current || store.IsBackfilled(row.Pos) || slices.Contains(groups, g) {
			continue
		}
		if _, ok := s.entries.get(entryKey(g, t)); !ok {
			groups = append(groups, g)
		}
	}
	if len(groups) < 2 {
		return nil // StateEntry's own lookup is as cheap
	}
	ids, err := s.store.StateGroupEntries(ctx, groups, store.StateKey{Type: t.Type, StateKey: t.StateKey})
	if err != nil {
		return err
	}
	for g, id := range ids {
		s.entries.put(entryKey(g, t), id)
	}
	return nil
}

// rememberVisibility caches the history visibility of the room's current
// state group as it becomes current: syncs later ask for it when the
// group's events are no longer the newest. Caller holds r.mu.
func (s *Service) rememberVisibility(r *Room) {
	t := pdu.StateTuple{Type: "m.room.history_visibility"}
	ek, gk := entryKey(r.group, t), groupKey(r.group)
	// A group's state never changes: after a message that left the state
	// as it was, both are cached already (the look-ups keep them young),
	// and the content need not be decoded again.
	if _, ok := s.visibility.get(gk); ok {
		if _, ok := s.entries.get(ek); ok {
			return
		}
	}
	id := ""
	if ev := r.state[t]; ev != nil {
		id = ev.ID
	}
	s.entries.put(ek, id)
	s.visibility.put(gk, HistoryVisibility(r.state[t]))
}

// PrefetchVisibility readies the history visibility of the rows of many
// rooms for their reader (one membership row per room): the visibility
// and the reader's membership in the state of the rows not after their
// join are loaded for all rooms in a few statements, not in some per
// room as Visible and MembershipAt would.
func (s *Service) PrefetchVisibility(ctx context.Context, ms []store.Membership, rows map[string][]*store.EventRow) error {
	if len(ms) == 0 {
		return nil
	}
	userID := ms[0].UserID
	tuples := []pdu.StateTuple{{Type: "m.room.history_visibility"}, {Type: "m.room.member", StateKey: userID}}
	var groups [2][]int64
	seen := map[int64]bool{}
	for _, m := range ms {
		v := &Viewer{current: m.Membership, sincePos: m.Pos}
		for _, row := range rows[m.RoomID] {
			g := row.StateGroup
			if g == 0 || seen[g] || store.IsBackfilled(row.Pos) || v.joinedAt(row) {
				continue
			}
			seen[g] = true
			for i, t := range tuples {
				if i == 0 {
					if _, ok := s.visibility.get(groupKey(g)); ok {
						continue // its visibility is known already (visibilityAt)
					}
				} else if _, ok := s.memberAt.get(entryKey(g, t)); ok {
					continue // the membership is known (a stored view's)
				}
				if _, ok := s.entries.get(entryKey(g, t)); !ok {
					groups[i] = append(groups[i], g)
				}
			}
		}
	}
	var ids []string
	have := map[string]bool{}
	for i, t := range tuples {
		if len(groups[i]) == 0 {
			continue
		}
		found, err := s.store.StateGroupEntries(ctx, groups[i], store.StateKey{Type: t.Type, StateKey: t.StateKey})
		if err != nil {
			return err
		}
		for g, id := range found {
			s.entries.put(entryKey(g, t), id)
			if id != "" && !have[id] {
				have[id] = true
				ids = append(ids, id)
			}
		}
	}
	_, err := s.Events(ctx, ids) // into the events cache, for StateEntry
	return err
}

// visibilityAt is the history visibility in force at a state group. A
// group's state never changes, so the answer is kept: every sync that
// shows an event asks it, and parsing the visibility event each time
// cost more than the rest of the check.
func (s *Service) visibilityAt(ctx context.Context, roomID string, group int64) (string, error) {
	key := groupKey(group)
	if hv, ok := s.visibility.get(key); ok {
		return hv, nil
	}
	ev, err := s.StateEntry(ctx, roomID, group, pdu.StateTuple{Type: "m.room.history_visibility"})
	if err != nil {
		return "", err
	}
	hv := HistoryVisibility(ev)
	s.visibility.put(key, hv)
	return hv, nil
}

func groupKey(group int64) string { return strconv.FormatInt(group, 10) }

func entryKey(group int64, t pdu.StateTuple) string {
	return strconv.FormatInt(group, 10) + "\x00" + t.Type + "\x00" + t.StateKey
}

// backfillView is what a Viewer needs to judge backfilled events, loaded
// once per Viewer.
type backfillView struct {
	hv      []store.BackfilledHistoryVisibility // newest first
	hasGaps bool                                // older history is still missing here
}

// canSeeBackfilled applies history visibility to a backfilled event,
// whose state is not known here. The rule is conservative:
//
//   - the visibility in force is that of the newest backfilled
//     m.room.history_visibility event older than it; failing that, that
//     of the state stored with it (the state before the earliest event
//     with known state, normally the join) when that state's visibility
//     event is not itself backfilled above it; failing that, "shared" when
//     the whole history is here (no visibility event precedes it), and
//     unknown (nothing visible) while older history is missing;
//   - no user of this server is taken to have been a member then (the
//     server was not in the room), so the event is visible only when
//     world_readable, or shared and the user is joined now. Under invited
//     or joined nobody here sees history from before the join.
func (v *Viewer) canSeeBackfilled(ctx context.Context, row *store.EventRow) (bool, error) {
	if v.bf == nil {
		hv, err := v.s.store.BackfilledHistoryVisibilities(ctx, row.RoomID)
		if err != nil {
			return false, err
		}
		gaps, err := v.s.store.HasBackwardExtremities(ctx, row.RoomID)
		if err != nil {
			return false, err
		}
		v.bf = &backfillView{hv: hv, hasGaps: gaps}
	}
	vis := ""
	for _, h := range v.bf.hv {
		if h.Pos < row.Pos {
			var e struct {
				Content json.RawMessage `json:"content"`
			}
			_ = json.Unmarshal(h.PDU, &e)
			vis = HistoryVisibility(&pdu.Event{Content: e.Content})
			break
		}
	}
	if vis == "" {
		anchor, err := v.s.StateEntry(ctx, row.RoomID, row.StateGroup, pdu.StateTuple{Type: "m.room.history_visibility"})
		if err != nil {
			return false, err
		}
		above := false
		if anchor != nil {
			for _, h := range v.bf.hv {
				above = above || h.EventID == anchor.ID
			}
		}
		switch {
		case anchor != nil && !above:
			vis = HistoryVisibility(anchor)
		case anchor == nil || !v.bf.hasGaps:
			vis = "shared"
		default:
			vis = "joined"
		}
	}
	switch vis {
	case "world_readable":
		return true, nil
	case "shared":
		return v.current == "join", nil
	}
	return false, nil
}
