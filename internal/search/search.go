package search

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"

	"luxchat/internal/filter"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/roomread"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
	"luxchat/internal/streamtoken"
)

// Service answers searches. It is safe for concurrent use.
type Service struct {
	store *store.Store
	rooms *rooms.Service
	read  *roomread.Service
}

// New returns the search service.
func New(st *store.Store, rs *rooms.Service, read *roomread.Service) *Service {
	return &Service{store: st, rooms: rs, read: read}
}

// Criteria is search_categories.room_events of a request.
type Criteria struct {
	SearchTerm   *string                 `json:"search_term"`
	Keys         []string                `json:"keys"`
	Filter       *filter.RoomEventFilter `json:"filter"`
	OrderBy      string                  `json:"order_by"`
	EventContext *EventContext           `json:"event_context"`
	IncludeState bool                    `json:"include_state"`
	Groupings    *struct {
		GroupBy []struct {
			Key string `json:"key"`
		} `json:"group_by"`
	} `json:"groupings"`
}

// EventContext asks for the events around each result.
type EventContext struct {
	BeforeLimit    *int `json:"before_limit"`
	AfterLimit     *int `json:"after_limit"`
	IncludeProfile bool `json:"include_profile"`
}

// Request is one search by one user.
type Request struct {
	UserID, DeviceID string
	NextBatch        string
	Criteria         Criteria
}

// Result is one search result.
type Result struct {
	Rank    float64         `json:"rank"`
	Result  json.RawMessage `json:"result"`
	Context *ResultContext  `json:"context,omitempty"`
}

// ResultContext is the context of a result.
type ResultContext struct {
	Start        string                       `json:"start"`
	End          string                       `json:"end"`
	ProfileInfo  map[string]*roomread.Profile `json:"profile_info,omitempty"`
	EventsBefore []json.RawMessage            `json:"events_before"`
	EventsAfter  []json.RawMessage            `json:"events_after"`
}

// Group is one value of a grouping.
type Group struct {
	NextBatch string   `json:"next_batch,omitempty"`
	Order     int      `json:"order"`
	Results   []string `json:"results"`
}

// RoomEvents is search_categories.room_events of a response.
type RoomEvents struct {
	Count      int64                        `json:"count"`
	Highlights []string                     `json:"highlights"`
	Results    []Result                     `json:"results"`
	State      map[string][]json.RawMessage `json:"state,omitempty"`
	Groups     map[string]map[string]*Group `json:"groups,omitempty"`
	NextBatch  string                       `json:"next_batch,omitempty"`
}

// Limits of one request.
const (
	defaultLimit   = 10
	maxLimit       = 50
	defaultContext = 5
	maxContext     = 20
	maxRounds      = 8
)

// cursor is the content of a next_batch token: where the previous page
// stopped, and the group it is narrowed to. Narrowing can only take
// results away, so a forged token reveals nothing more.
type cursor struct {
	Order  string  `json:"o"`
	Before int64   `json:"b,omitempty"` // the last position returned
	Score  float64 `json:"k,omitempty"` // rank: the last score returned
	Room   string  `json:"r,omitempty"`
	Sender string  `json:"s,omitempty"`
}

func (c cursor) encode() string {
	data, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(data)
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	data, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(s) > 4096 || json.Unmarshal(data, &c) != nil || c.Before < 0 {
		return c, errcode.InvalidParam("invalid next_batch token")
	}
	return c, nil
}

// Search runs a room_events search.
func (s *Service) Search(ctx context.Context, req Request) (*RoomEvents, error) {
	c := req.Criteria
	if c.SearchTerm == nil {
		return nil, errcode.MissingParam("search_term is required")
	}
	fields := slices.Clone(c.Keys)
	for _, k := range fields {
		if k != KeyBody && k != KeyName && k != KeyTopic {
			return nil, errcode.InvalidParam("unknown search key %q", k)
		}
	}
	order := c.OrderBy
	switch order {
	case "":
		order = "rank"
	case "rank", "recent":
	default:
		return nil, errcode.InvalidParam("order_by must be rank or recent")
	}
	var groupBy []string
	if c.Groupings != nil {
		for _, g := range c.Groupings.GroupBy {
			if g.Key != "room_id" && g.Key != "sender" {
				return nil, errcode.InvalidParam("unknown group key %q", g.Key)
			}
			if !slices.Contains(groupBy, g.Key) {
				groupBy = append(groupBy, g.Key)
			}
		}
	}
	limit := defaultLimit
	if c.Filter != nil && c.Filter.Limit != nil {
		if *c.Filter.Limit < 0 {
			return nil, errcode.InvalidParam("filter.limit must not be negative")
		}
		limit = min(max(*c.Filter.Limit, 1), maxLimit)
	}
	before, after := defaultContext, defaultContext
	if ec := c.EventContext; ec != nil {
		if ec.BeforeLimit != nil {
			before = *ec.BeforeLimit
		}
		if ec.AfterLimit != nil {
			after = *ec.AfterLimit
		}
		if before < 0 || after < 0 {
			return nil, errcode.InvalidParam("event_context limits must not be negative")
		}
		before, after = min(before, maxContext), min(after, maxContext)
	}
	cur := cursor{Order: order}
	if req.NextBatch != "" {
		var err error
		if cur, err = decodeCursor(req.NextBatch); err != nil {
			return nil, err
		}
		if cur.Order != order {
			return nil, errcode.InvalidParam("next_batch belongs to a search with another order_by")
		}
	}

	terms := Tokenize(*c.SearchTerm)
	out := &RoomEvents{Highlights: terms, Results: []Result{}}
	if out.Highlights == nil {
		out.Highlights = []string{}
	}
	ranges, memberships, err := s.searchableRooms(ctx, req.UserID, c.Filter, cur.Room)
	if err != nil {
		return nil, err
	}
	q := store.SearchQuery{Terms: terms, Rooms: ranges, Fields: fields, Sender: cur.Sender, Recent: order == "recent",
		Before: cur.Before, Score: cur.Score}
	if len(terms) == 0 || len(ranges) == 0 {
		return out, nil
	}
	if out.Count, err = s.store.SearchCount(ctx, q); err != nil {
		return nil, err
	}
	ignored, err := s.read.IgnoredUsers(ctx, req.UserID)
	if err != nil {
		return nil, err
	}

	type found struct {
		row  *store.EventRow
		rank float64
	}
	var results []found
	more := false
	q.Limit = max(limit*2, 20)
rounds:
	for round := 0; round < maxRounds; round++ {
		hits, err := s.store.Search(ctx, q)
		if err != nil {
			return nil, err
		}
		rows, err := s.visibleRows(ctx, req.UserID, hits, memberships)
		if err != nil {
			return nil, err
		}
		for _, h := range hits {
			q.Before, q.Score = h.Pos, h.Rank
			row := rows[h.EventID]
			if row == nil || ignored[row.Sender] || !c.Filter.AllowsEvent(row.Type, row.Sender, row.HasURL()) {
				continue
			}
			results = append(results, found{row, h.Rank})
			if len(results) == limit {
				// A full page always offers the next one, which may be
				// empty (as clients expect): finding out whether another
				// visible result follows could cost many more rounds.
				more = true
				break rounds
			}
		}
		if len(hits) < q.Limit {
			break
		}
		more = round == maxRounds-1 // stopped early: let the client go on
	}
	if !more && req.NextBatch == "" {
		// Everything was seen: the exact count, which also leaves out
		// matches that history visibility hides.
		out.Count = int64(len(results))
	}
	if more {
		next := cur
		next.Before, next.Score = q.Before, q.Score
		out.NextBatch = next.encode()
	}

	// Results, context and groups.
	if len(groupBy) > 0 {
		out.Groups = map[string]map[string]*Group{}
		for _, k := range groupBy {
			out.Groups[k] = map[string]*Group{}
		}
	}
	shown := make([]*store.EventRow, len(results))
	for i, f := range results {
		shown[i] = f.row
	}
	bundles, err := s.bundles(ctx, req.UserID, shown, ranges)
	if err != nil {
		return nil, err
	}
	states := map[string]bool{}
	for i, f := range results {
		res := Result{Rank: f.rank, Result: s.read.ClientEvent(f.row, roomread.Format{Viewer: req.UserID, DeviceID: req.DeviceID, Relations: bundles[f.row.EventID]})}
		if c.EventContext != nil {
			if res.Context, err = s.context(ctx, req, f.row, before, after, c.EventContext.IncludeProfile); err != nil {
				return nil, err
			}
		}
		out.Results = append(out.Results, res)
		states[f.row.RoomID] = true
		for _, k := range groupBy {
			v := f.row.RoomID
			if k == "sender" {
				v = f.row.Sender
			}
			g := out.Groups[k][v]
			if g == nil {
				g = &Group{Order: i + 1, Results: []string{}}
				if more {
					// The group's results are a subsequence of the
					// whole: the same cursor, narrowed to the group.
					next := cursor{Order: order, Room: cur.Room, Sender: cur.Sender, Before: q.Before, Score: q.Score}
					if k == "room_id" {
						next.Room = v
					} else {
						next.Sender = v
					}
					g.NextBatch = next.encode()
				}
				out.Groups[k][v] = g
			}
			g.Results = append(g.Results, f.row.EventID)
		}
	}
	if c.IncludeState && len(states) > 0 {
		out.State = map[string][]json.RawMessage{}
		for roomID := range states {
			st, err := s.read.State(ctx, roomID, req.UserID)
			if err != nil {
				return nil, err
			}
			out.State[roomID] = st
		}
	}
	return out, nil
}

// searchableRooms returns the rooms the user is or was joined to that the
// filter (and a group token) allow: joined rooms in full, rooms they left
// up to their leave. Rooms they were only invited to, knocked on or forgot
// are not searched.
func (s *Service) searchableRooms(ctx context.Context, userID string, f *filter.RoomEventFilter, only string) ([]store.SearchRange, map[string]string, error) {
	ms, err := s.rooms.Memberships(ctx, userID)
	if err != nil {
		return nil, nil, err
	}
	var out []store.SearchRange
	memberships := map[string]string{}
	for _, m := range ms {
		if m.Forgotten || (only != "" && m.RoomID != only) || !f.AllowsRoom(m.RoomID) {
			continue
		}
		switch m.Membership {
		case "join":
			out = append(out, store.SearchRange{RoomID: m.RoomID})
		case "leave", "ban":
			out = append(out, store.SearchRange{RoomID: m.RoomID, MaxPos: m.Pos})
		default:
			continue
		}
		memberships[m.RoomID] = m.Membership
	}
	return out, memberships, nil
}

// visibleRows loads the hits' events (one query) and keeps those the user
// may see under history visibility, by event id.
func (s *Service) visibleRows(ctx context.Context, userID string, hits []store.SearchHit, memberships map[string]string) (map[string]*store.EventRow, error) {
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.EventID
	}
	rows, err := s.store.GetEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	byRoom := map[string][]*store.EventRow{}
	for _, r := range rows {
		if !r.Redacted {
			byRoom[r.RoomID] = append(byRoom[r.RoomID], r)
		}
	}
	out := make(map[string]*store.EventRow, len(rows))
	for roomID, rs := range byRoom {
		slices.SortFunc(rs, func(a, b *store.EventRow) int { return cmp.Compare(a.Pos, b.Pos) })
		vis, err := s.rooms.Visible(ctx, roomID, userID, memberships[roomID], rs)
		if err != nil {
			return nil, err
		}
		for _, r := range vis {
			out[r.EventID] = r
		}
	}
	return out, nil
}

// context returns the events around a result as the user may see them.
func (s *Service) context(ctx context.Context, req Request, row *store.EventRow, before, after int, profiles bool) (*ResultContext, error) {
	rc := &ResultContext{EventsBefore: []json.RawMessage{}, EventsAfter: []json.RawMessage{}}
	b, err := s.read.Messages(ctx, roomread.MessagesRequest{RoomID: row.RoomID, UserID: req.UserID, DeviceID: req.DeviceID,
		From: streamtoken.Pagination(row.Pos - 1), Backward: true, Limit: max(before, 1)})
	if err != nil {
		return nil, err
	}
	if before > 0 {
		rc.EventsBefore = b.Events()
	}
	rc.Start = b.End
	if rc.Start == "" {
		rc.Start = streamtoken.Pagination(0)
	}
	a, err := s.read.Messages(ctx, roomread.MessagesRequest{RoomID: row.RoomID, UserID: req.UserID, DeviceID: req.DeviceID,
		From: streamtoken.Pagination(row.Pos), Limit: max(after, 1)})
	if err != nil {
		return nil, err
	}
	if after > 0 {
		rc.EventsAfter = a.Events()
	}
	rc.End = a.End
	if rc.End == "" {
		rc.End = streamtoken.Pagination(s.store.Streams.Events.Current())
	}
	if !profiles {
		return rc, nil
	}
	rc.ProfileInfo = map[string]*roomread.Profile{}
	senders := []string{row.Sender}
	for _, raw := range slices.Concat(rc.EventsBefore, rc.EventsAfter) {
		var e struct {
			Sender string `json:"sender"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Sender != "" && !slices.Contains(senders, e.Sender) {
			senders = append(senders, e.Sender)
		}
	}
	for _, u := range senders {
		p, err := s.read.ProfileAt(ctx, row, u)
		if err != nil {
			return nil, err
		}
		if p == nil {
			p = &roomread.Profile{}
		}
		rc.ProfileInfo[u] = p
	}
	return rc, nil
}
