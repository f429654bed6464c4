package sync

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// Receipt is a read receipt: a user's m.read or m.read.private marker on
// an event of a room, per thread.
type Receipt = store.Receipt

// SetReceipt stores a local user's receipt (POST /receipt,
// /read_markers) on an event of a room they are joined to.
func (s *Service) SetReceipt(ctx context.Context, roomID, userID, typ, eventID, threadID string) error {
	if ok, err := s.rooms.IsJoined(ctx, roomID, userID); err != nil {
		return err
	} else if !ok {
		return errcode.Forbidden("you are not joined to this room")
	}
	row, err := s.store.GetEvent(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && row.RoomID != roomID) {
		return errcode.NotFound("unknown event")
	}
	if err != nil {
		return err
	}
	_, err = s.PutReceipt(ctx, Receipt{RoomID: roomID, Type: typ, UserID: userID, ThreadID: threadID, EventID: eventID, EventPos: row.Pos, TS: time.Now().UnixMilli()})
	return err
}

// SetFullyRead moves a local user's m.fully_read marker of a room they
// are joined to (stored as room account data).
func (s *Service) SetFullyRead(ctx context.Context, roomID, userID, eventID string) error {
	if ok, err := s.rooms.IsJoined(ctx, roomID, userID); err != nil {
		return err
	} else if !ok {
		return errcode.Forbidden("you are not joined to this room")
	}
	content, _ := json.Marshal(map[string]string{"event_id": eventID})
	return s.PutAccountData(ctx, userID, roomID, "m.fully_read", content)
}

// PutReceipt stores a receipt, set by a local user or received from
// another server, unless the user has one at a later event (EventPos; 0
// for an event not known here). The caller checked that the user may
// set it. When it moved, what follows is done here for both: a local
// reader's unread counts start again from it (before the receipt becomes
// visible) and the notifications it read that did not highlight go,
// other servers hear of a local public receipt, and the syncs
// that show it wake: the room's joined members', or only the reader's
// for a private receipt, which never leaves the server. It reports
// whether the receipt moved.
func (s *Service) PutReceipt(ctx context.Context, r Receipt) (bool, error) {
	local := s.rooms.IsLocal(r.UserID)
	changed := false
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		var err error
		changed, err = tx.PutReceipt(ctx, r)
		if err != nil || !changed || !local {
			return err
		}
		tx.OnCommitted(func() { s.rooms.ReadMoved(r.RoomID, r.UserID) })
		if r.Type != "m.read" && r.Type != "m.read.private" {
			return nil
		}
		return tx.DropReadNotifications(ctx, r.UserID, r.RoomID, r.ThreadID, r.EventPos)
	})
	if err != nil || !changed {
		return false, err
	}
	if local {
		s.receiptStored(ctx, r)
	}
	if r.Type == "m.read.private" {
		s.notifier.Wake(r.UserID)
	} else if users, err := s.rooms.JoinedUsers(ctx, r.RoomID); err == nil {
		s.notifier.Wake(users...)
	}
	return true, nil
}
