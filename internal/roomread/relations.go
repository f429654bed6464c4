package roomread

import (
	"context"
	"encoding/json"
	"errors"
	"math"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
	"luxchat/internal/streamtoken"
)

// relationsRecursionDepth is how deep /relations follows children of
// children when asked to recurse (the spec asks for at least 3).
const relationsRecursionDepth = 3

// RelationsRequest is a /relations query.
type RelationsRequest struct {
	RoomID, EventID    string
	UserID, DeviceID   string
	RelType, EventType string // "" for any
	From, To           string
	Forward            bool
	Limit              int
	Recurse            bool
	RecurseGiven       bool // the client sent recurse (then the depth is answered)
}

// RelationsPage is the answer of /relations.
type RelationsPage struct {
	Chunk          []json.RawMessage `json:"chunk"`
	NextBatch      string            `json:"next_batch,omitempty"`
	PrevBatch      string            `json:"prev_batch,omitempty"`
	RecursionDepth *int              `json:"recursion_depth,omitempty"`
}

// VisibleEvent returns a room event the user may see, as the Viewer that
// decided it; M_NOT_FOUND otherwise (also when the user may not read the
// room, which must not be told apart from a missing event).
func (s *Service) VisibleEvent(ctx context.Context, roomID, eventID, userID string) (*rooms.Viewer, *store.EventRow, error) {
	v, err := s.rooms.Viewer(ctx, roomID, userID)
	if err != nil {
		if _, ok := errcode.As(err); ok {
			return nil, nil, errcode.NotFound("event not found")
		}
		return nil, nil, err
	}
	row, err := s.store.GetEvent(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && row.RoomID != roomID) {
		return nil, nil, errcode.NotFound("event not found")
	}
	if err != nil {
		return nil, nil, err
	}
	if ok, err := v.CanSee(ctx, row); err != nil {
		return nil, nil, err
	} else if !ok {
		return nil, nil, errcode.NotFound("event not found")
	}
	if row, err = v.Shown(ctx, row); err != nil {
		return nil, nil, err
	}
	return v, row, nil
}

// Relations pages through the children of an event that the user may see,
// newest first unless Forward.
func (s *Service) Relations(ctx context.Context, q RelationsRequest) (*RelationsPage, error) {
	v, _, err := s.VisibleEvent(ctx, q.RoomID, q.EventID, q.UserID)
	if err != nil {
		return nil, err
	}
	upTo, err := s.ReaderUpTo(ctx, q.RoomID, v)
	if err != nil {
		return nil, err
	}
	sq := store.RelationsQuery{
		RoomID: q.RoomID, Parent: q.EventID, Depth: 1, RelType: q.RelType, EventType: q.EventType,
		UpTo: min(upTo, s.store.Streams.Events.Current()), Forward: q.Forward, Limit: q.Limit,
	}
	if q.Recurse {
		sq.Depth = relationsRecursionDepth
	}
	var from, to int64 = -1, -1
	if q.From != "" {
		if from, err = s.TokenPos(q.From, "from"); err != nil {
			return nil, err
		}
	}
	if q.To != "" {
		if to, err = s.TokenPos(q.To, "to"); err != nil {
			return nil, err
		}
	}
	// Tokens are positions as in /messages: backwards covers to < pos <=
	// from, forwards from < pos <= to.
	if q.Forward {
		sq.After = max(from, 0)
		if to >= 0 {
			sq.UpTo = min(sq.UpTo, to)
		}
	} else {
		if from >= 0 {
			sq.UpTo = min(sq.UpTo, from)
		}
		sq.After = max(to, 0)
	}
	page := &RelationsPage{Chunk: []json.RawMessage{}, PrevBatch: q.From}
	if q.RecurseGiven {
		depth := sq.Depth
		page.RecursionDepth = &depth
	}
	rows, err := s.store.Relations(ctx, sq)
	if err != nil {
		return nil, err
	}
	if len(rows) == q.Limit {
		last := rows[len(rows)-1].Pos
		if q.Forward {
			page.NextBatch = streamtoken.Pagination(last)
		} else {
			page.NextBatch = streamtoken.Pagination(last - 1)
		}
	}
	ignored, err := s.IgnoredUsers(ctx, q.UserID)
	if err != nil {
		return nil, err
	}
	visible := rows[:0]
	for _, row := range rows {
		ok, err := v.CanSee(ctx, row)
		if err != nil {
			return nil, err
		}
		if ok && !ignored[row.Sender] {
			if row, err = v.Shown(ctx, row); err != nil {
				return nil, err
			}
			visible = append(visible, row)
		}
	}
	if page.Chunk, err = s.WithBundles(ctx, q.RoomID, v, visible, Format{Viewer: q.UserID, DeviceID: q.DeviceID}); err != nil {
		return nil, err
	}
	return page, nil
}

// ThreadsRequest is a /threads query.
type ThreadsRequest struct {
	RoomID, UserID, DeviceID string
	Participated             bool // only threads the user took part in
	From                     string
	Limit                    int
}

// ThreadsPage is the answer of /threads.
type ThreadsPage struct {
	Chunk     []json.RawMessage `json:"chunk"`
	NextBatch string            `json:"next_batch,omitempty"`
}

// Threads lists the thread roots of a room the user may see, by latest
// activity, each with its bundled thread summary.
func (s *Service) Threads(ctx context.Context, q ThreadsRequest) (*ThreadsPage, error) {
	v, err := s.rooms.Viewer(ctx, q.RoomID, q.UserID)
	if err != nil {
		return nil, err
	}
	upTo, err := s.ReaderUpTo(ctx, q.RoomID, v)
	if err != nil {
		return nil, err
	}
	before := int64(math.MaxInt64)
	if q.From != "" {
		if before, err = s.TokenPos(q.From, "from"); err != nil {
			return nil, err
		}
	}
	participant := ""
	if q.Participated {
		participant = q.UserID
	}
	roots, err := s.store.Threads(ctx, q.RoomID, upTo, participant, before, q.Limit)
	if err != nil {
		return nil, err
	}
	page := &ThreadsPage{Chunk: []json.RawMessage{}}
	if len(roots) == q.Limit {
		page.NextBatch = streamtoken.Pagination(roots[len(roots)-1].LatestPos - 1)
	}
	ids := make([]string, len(roots))
	for i, r := range roots {
		ids[i] = r.RootID
	}
	got, err := s.store.GetEvents(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]*store.EventRow, len(got))
	for _, row := range got {
		byID[row.EventID] = row
	}
	rows := make([]*store.EventRow, 0, len(roots))
	for _, r := range roots {
		row := byID[r.RootID]
		if row == nil {
			continue
		}
		if ok, err := v.CanSee(ctx, row); err != nil {
			return nil, err
		} else if ok {
			if row, err = v.Shown(ctx, row); err != nil {
				return nil, err
			}
			rows = append(rows, row)
		}
	}
	if page.Chunk, err = s.WithBundles(ctx, q.RoomID, v, rows, Format{Viewer: q.UserID, DeviceID: q.DeviceID}); err != nil {
		return nil, err
	}
	// Roots sent by ignored users are shown redacted, as a client
	// aggregating the thread itself would show them.
	ignored, err := s.IgnoredUsers(ctx, q.UserID)
	if err != nil {
		return nil, err
	}
	for i, row := range rows {
		if !ignored[row.Sender] || row.Redacted {
			continue
		}
		version, err := s.rooms.VersionOf(ctx, q.RoomID)
		if err != nil {
			return nil, err
		}
		redacted, err := pdu.Redact(row.JSON(), version)
		if err != nil {
			return nil, err
		}
		var shown struct {
			Unsigned map[string]json.RawMessage `json:"unsigned"`
		}
		_ = json.Unmarshal(page.Chunk[i], &shown)
		page.Chunk[i] = s.rooms.ClientJSON(redacted, row.EventID, row.RoomID, shown.Unsigned)
	}
	return page, nil
}
