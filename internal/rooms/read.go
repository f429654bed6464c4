package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"

	"luxchat/internal/filter"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
	"luxchat/internal/streamtoken"
)

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
	key := strconv.FormatInt(group, 10) + "\x00" + t.Type + "\x00" + t.StateKey
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

// Viewer answers history visibility questions for one user in one room.
type Viewer struct {
	s        *Service
	userID   string
	current  string // the user's current membership
	sincePos int64  // the position of the user's current membership
	byGroup  map[int64]bool
	memberAt map[int64]string // see MembershipAt
	bf       *backfillView    // see canSeeBackfilled; loaded on first use
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
		_ = json.Unmarshal(row.PDU, &e)
		return e.Content.Membership
	}
	if v.current != "" && v.sincePos > 0 && row.Pos > v.sincePos {
		return v.current // sent after the user's latest membership change
	}
	if m, ok := v.memberAt[row.StateGroup]; ok {
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

// canSee applies the history visibility rules to one event, using the
// state before it.
func (v *Viewer) CanSee(ctx context.Context, row *store.EventRow) (bool, error) {
	if row.Type == "m.room.member" && row.StateKey.Valid && row.StateKey.String == v.userID {
		return true, nil // users always see their own membership changes
	}
	if store.IsBackfilled(row.Pos) {
		return v.canSeeBackfilled(ctx, row)
	}
	if ok, seen := v.byGroup[row.StateGroup]; seen {
		return ok, nil
	}
	hvEv, err := v.s.StateEntry(ctx, row.RoomID, row.StateGroup, pdu.StateTuple{Type: "m.room.history_visibility"})
	if err != nil {
		return false, err
	}
	hv := HistoryVisibility(hvEv)
	// The membership at the event matters unless the history is readable
	// anyway (its lookup is per user, the visibility's per state group).
	ok := hv == "world_readable" || hv == "shared" && v.current == "join"
	if !ok {
		memEv, err := v.s.StateEntry(ctx, row.RoomID, row.StateGroup, pdu.StateTuple{Type: "m.room.member", StateKey: v.userID})
		if err != nil {
			return false, err
		}
		membership := ""
		if memEv != nil {
			membership = MembershipOf(memEv)
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

// Page is a page of /messages.
type Page struct {
	// Chunk holds the events without their bundled aggregations, which
	// JSON and Events splice in (so that a page is copied once).
	Chunk []json.RawMessage `json:"chunk"`
	Start string            `json:"start"`
	End   string            `json:"end,omitempty"`
	State []json.RawMessage `json:"state,omitempty"`
	// relations[i], when not nil, is the m.relations object of Chunk[i].
	relations [][]byte
}

// Events returns the page's events with their bundled aggregations.
func (p *Page) Events() []json.RawMessage {
	if p.relations == nil {
		return p.Chunk
	}
	out := make([]json.RawMessage, len(p.Chunk))
	for i, e := range p.Chunk {
		out[i] = p.appendEvent(nil, i, e)
	}
	return out
}

// appendEvent appends Chunk[i] (e) with its bundled aggregations.
func (p *Page) appendEvent(dst []byte, i int, e json.RawMessage) []byte {
	if p.relations == nil || p.relations[i] == nil {
		return append(dst, e...)
	}
	// A rendered event ends with its unsigned object: "…}}".
	dst = append(dst, e[:len(e)-2]...)
	dst = append(dst, `,"m.relations":`...)
	dst = append(dst, p.relations[i]...)
	return append(dst, "}}"...)
}

// MessagesRequest is a /messages query.
type MessagesRequest struct {
	RoomID   string
	UserID   string
	DeviceID string
	From     string // token; "" = the end (dir b) or the start (dir f)
	To       string
	Backward bool
	Limit    int
	Filter   *filter.RoomEventFilter
}

// TokenPos reads the events position of a pagination (or sync) token
// passed as the query parameter name. A position this server has not
// reached cannot come from it: M_INVALID_PARAM rather than a page of
// nothing, or of events the token's holder was never shown.
func (s *Service) TokenPos(token, name string) (int64, error) {
	pos, err := streamtoken.EventsPos(token)
	if err != nil {
		return 0, errcode.InvalidParam("invalid %s token", name)
	}
	if pos > s.store.Streams.Events.Current() {
		return 0, errcode.InvalidParam("%s token is ahead of this server", name)
	}
	return pos, nil
}

// Messages paginates a room's timeline as the user may see it.
func (s *Service) Messages(ctx context.Context, q MessagesRequest) (*Page, error) {
	v, err := s.mayRead(ctx, q.RoomID, q.UserID)
	if err != nil {
		return nil, err
	}
	var from int64
	switch {
	case q.From != "":
		if from, err = s.TokenPos(q.From, "from"); err != nil {
			return nil, err
		}
	case q.Backward:
		from = s.store.Streams.Events.Current()
	default:
		from = math.MinInt64 // backfilled history sorts below zero
	}
	var to int64 = -1
	hasTo := q.To != ""
	if hasTo {
		if to, err = s.TokenPos(q.To, "to"); err != nil {
			return nil, err
		}
	}
	// A user who left sees nothing after their leave.
	if v.current == "leave" || v.current == "ban" {
		if m, err := s.store.GetMembership(ctx, q.RoomID, q.UserID); err == nil {
			if q.Backward {
				from = min(from, m.Pos)
			} else if !hasTo || to > m.Pos {
				to, hasTo = m.Pos, true
			}
		}
	}
	ignored, err := s.IgnoredUsers(ctx, q.UserID)
	if err != nil {
		return nil, err
	}
	page := &Page{Chunk: []json.RawMessage{}, Start: streamtoken.Pagination(from)}
	cursor := from
	senders := map[string]bool{}
	var shown []*store.EventRow // rows of page.Chunk, for bundled aggregations
	const maxRounds = 8
	var history historyFetch
	for round := 0; round < maxRounds && len(page.Chunk) < q.Limit; round++ {
		var rows []*store.EventRow
		fetch := max(q.Limit*2, 20)
		if q.Backward {
			lo := int64(math.MinInt64)
			if hasTo {
				lo = to
			}
			rows, err = s.store.RoomEvents(ctx, q.RoomID, lo, cursor, true, fetch)
		} else {
			hi := s.store.Streams.Events.Current()
			if hasTo {
				hi = min(hi, to)
			}
			rows, err = s.store.RoomEvents(ctx, q.RoomID, cursor, hi, false, fetch)
		}
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			if q.Backward {
				cursor = row.Pos - 1
			} else {
				cursor = row.Pos
			}
			ok, err := v.CanSee(ctx, row)
			if err != nil {
				return nil, err
			}
			if ok && q.Filter.FiltersRelations() {
				ok = q.Filter.AllowsRelation(relTypeOf(row))
			}
			if ok && !ignored[row.Sender] && q.Filter.AllowsEvent(row.Type, row.Sender, q.Filter != nil && q.Filter.ContainsURL != nil && row.HasURL()) {
				page.Chunk = append(page.Chunk, s.ClientEvent(row, Format{Viewer: q.UserID, DeviceID: q.DeviceID, Membership: v.MembershipAt(ctx, row)}))
				shown = append(shown, row)
				senders[row.Sender] = true
				if len(page.Chunk) == q.Limit {
					break
				}
			}
		}
		if len(rows) < fetch && len(page.Chunk) < q.Limit {
			if q.Backward && !hasTo && s.moreHistory(ctx, q.RoomID, v, &history, q.Limit-len(page.Chunk)) {
				continue // older events were fetched from other servers
			}
			// Reached the end of the room: no end token.
			return s.finishPage(ctx, q, v, page, shown, senders)
		}
	}
	page.End = streamtoken.Pagination(cursor)
	return s.finishPage(ctx, q, v, page, shown, senders)
}

func (s *Service) withLazyMembers(ctx context.Context, q MessagesRequest, page *Page, senders map[string]bool) (*Page, error) {
	if q.Filter == nil || !q.Filter.LazyLoadMembers || len(senders) == 0 {
		return page, nil
	}
	for u := range senders {
		row, err := s.currentStateRow(ctx, q.RoomID, "m.room.member", u)
		if err != nil || row == nil {
			continue
		}
		page.State = append(page.State, s.ClientEvent(row, Format{Viewer: q.UserID}))
	}
	return page, nil
}

// CurrentStateEvent returns a piece of current state (or store.ErrNotFound).
func (s *Service) CurrentStateEvent(ctx context.Context, roomID, typ, key string) (*pdu.Event, error) {
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	ev := r.state[pdu.StateTuple{Type: typ, StateKey: key}]
	r.mu.Unlock()
	if ev == nil {
		return nil, store.ErrNotFound
	}
	return ev, nil
}

func (s *Service) currentStateRow(ctx context.Context, roomID, typ, key string) (*store.EventRow, error) {
	ev, err := s.CurrentStateEvent(ctx, roomID, typ, key)
	if err != nil {
		return nil, err
	}
	return s.store.GetEvent(ctx, ev.ID)
}

// stateAfter is the state after an event.
func (s *Service) stateAfter(ctx context.Context, eventID string) (store.StateMap, error) {
	return s.StateAfterStored(ctx, eventID)
}

// StateAfterStored is the state after a stored event; store.ErrNotFound
// when it is not stored (unlike StateAfter, which answers nothing then).
func (s *Service) StateAfterStored(ctx context.Context, eventID string) (store.StateMap, error) {
	row, err := s.store.GetEvent(ctx, eventID)
	if err != nil {
		return nil, err
	}
	st := store.StateMap{}
	if row.StateGroup != 0 {
		if st, err = s.store.StateGroup(ctx, row.StateGroup); err != nil {
			return nil, err
		}
	}
	if row.StateKey.Valid {
		st[store.StateKey{Type: row.Type, StateKey: row.StateKey.String}] = row.EventID
	}
	return st, nil
}

func (s *Service) renderState(ctx context.Context, st store.StateMap, userID string) ([]json.RawMessage, error) {
	ids := make([]string, 0, len(st))
	for _, id := range st {
		ids = append(ids, id)
	}
	rows, err := s.store.GetEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(rows))
	for _, row := range rows {
		out = append(out, s.ClientEvent(row, Format{Viewer: userID}))
	}
	return out, nil
}

// Visible returns the rows (all of one room) that a user may see under
// history visibility, in order.
func (s *Service) Visible(ctx context.Context, roomID, userID, membership string, rows []*store.EventRow) ([]*store.EventRow, error) {
	v := &Viewer{s: s, userID: userID, current: membership, byGroup: map[int64]bool{}}
	out := rows[:0:0]
	for _, row := range rows {
		ok, err := v.CanSee(ctx, row)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, row)
		}
	}
	return out, nil
}

// IgnoredUsers returns the users a user ignores (m.ignored_user_list),
// cached until ForgetIgnoredUsers.
func (s *Service) IgnoredUsers(ctx context.Context, userID string) (map[string]bool, error) {
	if v, ok := s.ignored.Load(userID); ok {
		return v.(map[string]bool), nil
	}
	raw, err := s.store.GetAccountData(ctx, userID, "", "m.ignored_user_list")
	if errors.Is(err, store.ErrNotFound) {
		s.ignored.Store(userID, map[string]bool(nil))
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c struct {
		IgnoredUsers map[string]json.RawMessage `json:"ignored_users"`
	}
	_ = json.Unmarshal(raw, &c)
	out := make(map[string]bool, len(c.IgnoredUsers))
	for u := range c.IgnoredUsers {
		out[u] = true
	}
	s.ignored.Store(userID, out)
	return out, nil
}

// ForgetIgnoredUsers drops the cached ignore list after it changed.
func (s *Service) ForgetIgnoredUsers(userID string) { s.ignored.Delete(userID) }

// JSON renders the page directly: encoding/json would re-validate and
// re-compact every event, which costs more than building them.
func (p *Page) JSON() []byte {
	n := 64
	for i, e := range p.Chunk {
		n += len(e) + 1
		if p.relations != nil {
			n += len(p.relations[i]) + 16
		}
	}
	out := make([]byte, 0, n)
	out = append(out, `{"chunk":[`...)
	for i, e := range p.Chunk {
		if i > 0 {
			out = append(out, ',')
		}
		out = p.appendEvent(out, i, e)
	}
	out = append(out, ']')
	out = append(out, `,"start":`...)
	out = appendJSONString(out, p.Start)
	if p.End != "" {
		out = append(out, `,"end":`...)
		out = appendJSONString(out, p.End)
	}
	if len(p.State) > 0 {
		out = append(out, `,"state":`...)
		out = appendRawList(out, p.State)
	}
	return append(out, '}')
}

func appendRawList(out []byte, items []json.RawMessage) []byte {
	out = append(out, '[')
	for i, e := range items {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, e...)
	}
	return append(out, ']')
}

// relTypeOf is the rel_type of an event's m.relates_to, "" for none.
func relTypeOf(row *store.EventRow) string {
	var e struct {
		Content struct {
			RelatesTo struct {
				RelType string `json:"rel_type"`
			} `json:"m.relates_to"`
		} `json:"content"`
	}
	_ = json.Unmarshal(row.PDU, &e)
	return e.Content.RelatesTo.RelType
}
