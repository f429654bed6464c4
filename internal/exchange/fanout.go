package exchange

import (
	"context"
	"fmt"
	"slices"
	"time"

	"luxchat/internal/federation"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// Durable fan-out of PDUs.
//
// IndexFanout runs inside the transaction that persists an event and
// records it in federation_fanout when other servers may have to hear of
// it; OnCommitted then queues it and the queue's persister clears the row
// in the transaction that writes the outbox rows. A crash in between
// leaves the row, and Recover queues the event at the next start. Rooms
// known to have no member of another server record nothing, so purely
// local rooms pay no extra write.

// IndexFanout is the rooms indexer. It writes only through tx, so a
// retried commit just writes the row again.
func (s *Service) IndexFanout(ctx context.Context, tx *store.Tx, ev *pdu.Event, pos int64) error {
	if pos <= 0 {
		return nil // outliers and soft-failed events are not sent on
	}
	roomID := pdu.RoomIDForCreate(ev) // a version 12 create event has none on it
	if ev.Type == "m.room.create" && s.isLocal(ev.Sender) {
		// A room created here has no other server yet: its first events
		// record nothing (a retried commit stores the same again).
		s.remoteRooms.Store(roomID, false)
	}
	if ev.Type == "m.room.member" && ev.StateKey != nil && !s.isLocal(*ev.StateKey) && isJoin(ev.Content) {
		// The kept list of a remote user who joins is stale: while they
		// shared no room with us their server told us nothing. It is news
		// to local users until someone fetches it, in this same
		// transaction so that their server's announcement cannot come
		// first.
		if err := tx.NoteRemoteJoin(ctx, *ev.StateKey); err != nil {
			return err
		}
	}
	builtHere, alsoTo, ok := s.fanoutOf(ev)
	if !ok {
		return nil
	}
	return tx.AddFanout(ctx, store.Fanout{EventID: ev.ID, RoomID: roomID, Pos: pos, BuiltHere: builtHere, AlsoTo: alsoTo, CreatedTS: time.Now().UnixMilli()})
}

// fanoutOf tells whether an event is recorded for fan-out, whether it was
// built here, and alsoTo: for an event built here the server of a
// membership target that must hear of it, for a received one the
// sender's server (which is not sent its own event).
// OnCommitted asks it too, before it updates remoteRooms, so both see the
// same answer (the room's writer runs the indexers and the listener of a
// batch in a row).
func (s *Service) fanoutOf(ev *pdu.Event) (builtHere bool, alsoTo string, ok bool) {
	builtHere = s.isLocal(ev.Sender)
	member := ev.Type == "m.room.member" && ev.StateKey != nil
	if !builtHere && !member {
		return false, "", false // received events other than memberships stay here
	}
	if !builtHere {
		return false, serverOf(ev.Sender), true
	}
	if member && !isInvite(ev.Content) {
		if srv := serverOf(*ev.StateKey); srv != "" && srv != s.self {
			alsoTo = srv
		}
	}
	if alsoTo == "" {
		if remote, known := s.remoteRooms.Load(pdu.RoomIDForCreate(ev)); known && !remote.(bool) {
			return false, "", false
		}
	}
	return builtHere, alsoTo, true
}

// Recover queues the events whose fan-out rows were left by an earlier
// run (it stopped between an event's commit and its queueing), for the
// servers in the room now. Call before the queue starts.
func (s *Service) Recover(ctx context.Context) error {
	for {
		rows, err := s.store.PendingFanout(ctx, s.bootTS, 500)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		servers := map[string][]string{}
		var sends []federation.PDUSend
		done := make([]string, 0, len(rows))
		for _, f := range rows {
			done = append(done, f.EventID)
			joined, ok := servers[f.RoomID]
			if !ok {
				users, err := s.rooms.JoinedUsers(ctx, f.RoomID)
				if err != nil {
					s.log.Warn("federation: recover fan-out", "room", f.RoomID, "err", err)
				}
				joined = s.servers(users)
				servers[f.RoomID] = joined
			}
			dests := slices.Clone(joined)
			if f.BuiltHere {
				if f.AlsoTo != "" && !slices.Contains(dests, f.AlsoTo) {
					dests = append(dests, f.AlsoTo)
				}
			} else {
				// The origin is not known any more; the sender's server is
				// left out, others that already have it ignore a repeat.
				dests = slices.DeleteFunc(dests, func(d string) bool { return d == f.AlsoTo })
			}
			if len(dests) > 0 {
				sends = append(sends, federation.PDUSend{Destinations: dests, EventIDs: []string{f.EventID}})
			}
		}
		if err := s.queue.PersistFanout(ctx, sends, done); err != nil {
			return fmt.Errorf("recover fan-out: %w", err)
		}
		s.log.Info("federation: queued events left by the last run", "events", len(rows))
	}
}
