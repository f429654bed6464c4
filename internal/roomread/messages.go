package roomread

import (
	"context"
	"encoding/json"
	"math"

	"luxchat/internal/filter"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
	"luxchat/internal/streamtoken"
)

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
	// Admin: a server administrator's view, every event whatever the
	// history visibility (UserID is the administrator).
	Admin bool
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
	viewer := s.rooms.Viewer
	if q.Admin {
		viewer = func(ctx context.Context, roomID, _ string) (*rooms.Viewer, error) {
			return s.rooms.AdminViewer(ctx, roomID)
		}
	}
	v, err := viewer(ctx, q.RoomID, q.UserID)
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
	if v.Membership() == "leave" || v.Membership() == "ban" {
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
	var history rooms.HistoryFetch
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
				if row, err = v.Shown(ctx, row); err != nil {
					return nil, err
				}
				page.Chunk = append(page.Chunk, s.ClientEvent(row, Format{Viewer: q.UserID, DeviceID: q.DeviceID, Membership: v.MembershipAt(ctx, row)}))
				shown = append(shown, row)
				senders[row.Sender] = true
				if len(page.Chunk) == q.Limit {
					break
				}
			}
		}
		if len(rows) < fetch && len(page.Chunk) < q.Limit {
			if q.Backward && !hasTo && s.rooms.MoreHistory(ctx, q.RoomID, v, &history, q.Limit-len(page.Chunk)) {
				continue // older events were fetched from other servers
			}
			// Reached the end of the room: no end token.
			return s.finishPage(ctx, q, v, page, shown, senders)
		}
	}
	page.End = streamtoken.Pagination(cursor)
	return s.finishPage(ctx, q, v, page, shown, senders)
}

// finishPage adds bundled aggregations to a /messages page (splicing them
// into the events already rendered) and then its lazy-loaded members.
func (s *Service) finishPage(ctx context.Context, q MessagesRequest, v *rooms.Viewer, page *Page, shown []*store.EventRow, senders map[string]bool) (*Page, error) {
	if len(shown) > 0 && !s.bundlesOff.Load() {
		upTo, err := s.ReaderUpTo(ctx, q.RoomID, v)
		if err != nil {
			return nil, err
		}
		ignored, err := s.ignoredList(ctx, q.UserID)
		if err != nil {
			return nil, err
		}
		pb, err := s.collectBundles(ctx, q.UserID, upTo, ignored, shown, true, true)
		if err != nil {
			return nil, err
		}
		if pb != nil {
			// The page's m.relations objects, in one buffer.
			size := 0
			for _, e := range pb.entries {
				if e != nil {
					size += e.size()
				}
			}
			buf := make([]byte, 0, size)
			for i, row := range shown {
				if row.Pruned {
					continue
				}
				start := len(buf)
				var ok bool
				if buf, ok = pb.appendBundle(buf, s, row); ok {
					if page.relations == nil {
						page.relations = make([][]byte, len(shown))
					}
					page.relations[i] = buf[start:len(buf):len(buf)]
				}
			}
		}
	}
	return s.withLazyMembers(ctx, q, page, senders)
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

func (s *Service) currentStateRow(ctx context.Context, roomID, typ, key string) (*store.EventRow, error) {
	ev, err := s.rooms.CurrentStateEvent(ctx, roomID, typ, key)
	if err != nil {
		return nil, err
	}
	return s.store.GetEvent(ctx, ev.ID)
}

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
	out = rooms.AppendJSONString(out, p.Start)
	if p.End != "" {
		out = append(out, `,"end":`...)
		out = rooms.AppendJSONString(out, p.End)
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
	_ = json.Unmarshal(row.JSON(), &e)
	return e.Content.RelatesTo.RelType
}
