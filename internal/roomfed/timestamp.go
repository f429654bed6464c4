package roomfed

import (
	"context"
	"errors"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// Jumping to a date (timestamp_to_event): the event of a room closest to
// a time in one direction. A server that joined a room late holds only
// its recent history, so in a room shared with other servers they are
// asked too, and an older event they name is backfilled, so that clients
// can read around it with /context and /messages.

const (
	tsRemoteServers  = 3               // servers asked
	tsRemoteTimeout  = 5 * time.Second // for all of them
	tsBackfillRounds = 5               // backfills spent reaching the event
)

// NearEvent is the answer of timestamp_to_event.
type NearEvent struct {
	EventID        string `json:"event_id"`
	OriginServerTS int64  `json:"origin_server_ts"`
}

// closer reports whether a is closer to ts than b in the direction
// (b nil: a is).
func closer(a, b *NearEvent, backwards bool) bool {
	if b == nil {
		return true
	}
	if backwards {
		return a.OriginServerTS > b.OriginServerTS
	}
	return a.OriginServerTS < b.OriginServerTS
}

// TimestampToEvent answers a client: the visible event closest to ts,
// before it (backwards) or after it.
func (s *Service) TimestampToEvent(ctx context.Context, roomID, userID string, ts int64, backwards bool) (*NearEvent, error) {
	v, err := s.rooms.Viewer(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	var best *NearEvent
	if row, err := s.store.EventNearTS(ctx, roomID, ts, backwards); err == nil {
		best = &NearEvent{EventID: row.EventID, OriginServerTS: row.OriginTS}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	if remote := s.remoteNearEvent(ctx, roomID, ts, backwards); remote != nil && closer(remote, best, backwards) {
		if !s.reachEvent(ctx, roomID, remote.EventID) {
			// Not here yet (a room still being joined, a server that
			// would not backfill): the other server vetted it for ours,
			// and a client may still ask /context for it later.
			return remote, nil
		}
		best = remote
	}
	if best == nil {
		return nil, errcode.NotFound("no event found")
	}
	row, err := s.store.GetEvent(ctx, best.EventID)
	if err != nil {
		return nil, errcode.NotFound("no event found")
	}
	if ok, err := v.CanSee(ctx, row); err != nil || !ok {
		return nil, errcode.NotFound("no event found")
	}
	return best, nil
}

// remoteNearEvent asks the room's other servers (a few) for the event
// closest to ts; nil when the room has none or none answers.
func (s *Service) remoteNearEvent(ctx context.Context, roomID string, ts int64, backwards bool) *NearEvent {
	if !s.federated() {
		return nil
	}
	servers, err := s.rooms.RoomServers(ctx, roomID)
	if err != nil {
		return nil
	}
	dir := "f"
	if backwards {
		dir = "b"
	}
	fctx, cancel := context.WithTimeout(ctx, tsRemoteTimeout)
	defer cancel()
	asked := 0
	for _, sv := range servers {
		if sv == s.serverName || asked == tsRemoteServers {
			continue
		}
		if s.f.Allowed != nil && s.f.Allowed(sv) != nil {
			continue
		}
		asked++
		near, err := s.f.Client.TimestampToEvent(fctx, sv, roomID, ts, dir)
		if err != nil {
			continue
		}
		if len(near.EventID) > 1 && near.EventID[0] == '$' {
			return &NearEvent{EventID: near.EventID, OriginServerTS: near.OriginServerTS}
		}
	}
	return nil
}

// reachEvent makes sure an event another server named is in the room's
// timeline here, backfilling towards it; it reports whether it is.
func (s *Service) reachEvent(ctx context.Context, roomID, eventID string) bool {
	inTimeline := func() bool {
		row, err := s.store.GetEvent(ctx, eventID)
		return err == nil && row.RoomID == roomID && row.StateGroup >= 0
	}
	if inTimeline() {
		return true
	}
	deadline := time.Now().Add(backfillBudget)
	for range tsBackfillRounds {
		n, err := s.backfillRoom(ctx, roomID, backfillMaxPDUs, deadline)
		if inTimeline() {
			return true
		}
		if err != nil || n == 0 || time.Now().After(deadline) {
			return false
		}
	}
	return false
}
