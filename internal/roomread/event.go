package roomread

import (
	"context"
	"encoding/json"
	"errors"

	"luxchat/internal/filter"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
	"luxchat/internal/streamtoken"
)

// GetEvent returns one event a user may see; M_NOT_FOUND otherwise (also
// when the user may not read the room, which must not be told apart from
// a missing event).
func (s *Service) GetEvent(ctx context.Context, roomID, eventID, userID, deviceID string) (json.RawMessage, error) {
	v, err := s.rooms.Viewer(ctx, roomID, userID)
	if errors.Is(err, rooms.ErrMayNotRead) {
		return nil, errcode.NotFound("event not found")
	}
	if err != nil {
		return nil, err
	}
	row, err := s.store.GetEvent(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && row.RoomID != roomID) {
		return nil, errcode.NotFound("event not found")
	}
	if err != nil {
		return nil, err
	}
	if ok, err := v.CanSee(ctx, row); err != nil {
		return nil, err
	} else if !ok {
		return nil, errcode.NotFound("event not found")
	}
	if row, err = v.Shown(ctx, row); err != nil {
		return nil, err
	}
	evs, err := s.WithBundles(ctx, roomID, v, []*store.EventRow{row}, Format{Viewer: userID, DeviceID: deviceID, Membership: v.MembershipAt(ctx, row)})
	if err != nil {
		return nil, err
	}
	return evs[0], nil
}

// ContextResult is the answer of /context.
type ContextResult struct {
	Event        json.RawMessage   `json:"event"`
	EventsBefore []json.RawMessage `json:"events_before"`
	EventsAfter  []json.RawMessage `json:"events_after"`
	Start        string            `json:"start"`
	End          string            `json:"end"`
	State        []json.RawMessage `json:"state"`
}

// pageToken is the pagination token of a position next to an event. The
// positions of events outside the timeline (outliers and soft-failed
// events, from store.BackfillBand up to 0) have no token: they are
// clamped to 0, the lowest position of the live timeline, just above
// backfilled history.
func pageToken(pos int64) string {
	if pos < 0 && !store.IsBackfilled(pos) {
		pos = 0
	}
	return streamtoken.Pagination(pos)
}

// Context returns an event with the events around it.
func (s *Service) Context(ctx context.Context, roomID, eventID, userID, deviceID string, limit int, f *filter.RoomEventFilter) (*ContextResult, error) {
	ev, err := s.GetEvent(ctx, roomID, eventID, userID, deviceID)
	if err != nil {
		return nil, err
	}
	row, err := s.store.GetEvent(ctx, eventID)
	if err != nil {
		return nil, err
	}
	before := limit / 2
	after := limit - before
	res := &ContextResult{Event: ev, EventsBefore: []json.RawMessage{}, EventsAfter: []json.RawMessage{}}
	b, err := s.Messages(ctx, MessagesRequest{RoomID: roomID, UserID: userID, DeviceID: deviceID, From: pageToken(row.Pos - 1), Backward: true, Limit: max(before, 1), Filter: f})
	if err != nil {
		return nil, err
	}
	res.Start = b.End
	if before > 0 {
		res.EventsBefore = b.Events()
	} else {
		res.Start = pageToken(row.Pos - 1) // just before the event
	}
	if res.Start == "" {
		res.Start = streamtoken.Pagination(0)
	}
	a, err := s.Messages(ctx, MessagesRequest{RoomID: roomID, UserID: userID, DeviceID: deviceID, From: pageToken(row.Pos), Limit: max(after, 1), Filter: f})
	if err != nil {
		return nil, err
	}
	res.End = a.End
	if after > 0 {
		res.EventsAfter = a.Events()
	} else {
		res.End = pageToken(row.Pos) // just after the event
	}
	if res.End == "" {
		res.End = streamtoken.Pagination(s.store.Streams.Events.Current())
	}
	st, err := s.StateAfter(ctx, eventID)
	if err != nil {
		return nil, err
	}
	if res.State, err = s.RenderState(ctx, st, userID, nil); err != nil {
		return nil, err
	}
	return res, nil
}
