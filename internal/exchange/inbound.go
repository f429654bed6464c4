package exchange

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"luxchat/internal/matrix/id"
	"time"

	"luxchat/internal/store"
	"luxchat/internal/sync"
)

// remoteTypingTimeout is how long a remote user shows as typing without
// news: typing EDUs carry no timeout, and the sending server repeats
// them while its user types.
const remoteTypingTimeout = 30 * time.Second

// toDeviceIDTTL is how long received to-device message ids are kept for
// deduplication.
const toDeviceIDTTL = 7 * 24 * time.Hour

// HandleEDU applies one EDU of an inbound transaction from origin (an
// authenticated server). Every user id it names must belong to origin;
// anything else in it is ignored, as are unknown EDU types. Failures are
// logged, never returned: a transaction's EDUs are not retried.
func (s *Service) HandleEDU(ctx context.Context, origin, eduType string, content json.RawMessage) {
	var err error
	switch eduType {
	case "m.typing":
		err = s.inboundTyping(ctx, origin, content)
	case "m.receipt":
		err = s.inboundReceipts(ctx, origin, content)
	case "m.presence":
		err = s.inboundPresence(ctx, origin, content)
	case "m.device_list_update", "m.signing_key_update":
		err = s.inboundDeviceList(ctx, origin, content)
	case "m.direct_to_device":
		err = s.inboundToDevice(ctx, origin, content)
	default:
		return
	}
	if err != nil {
		s.log.Info("federation: edu not applied", "origin", origin, "type", eduType, "err", err)
	}
}

// aclAllows reports whether a room's server ACL lets origin take part:
// the ACL covers a denied server's EDUs as well as its events.
func (s *Service) aclAllows(ctx context.Context, roomID, origin string) bool {
	ok, err := s.rooms.ServerACLAllows(ctx, roomID, origin)
	return err == nil && ok
}

// owned reports whether userID is a user of origin.
func owned(userID, origin string) bool {
	u, err := id.ParseUserID(userID) // from another server: checked in full
	return err == nil && string(u.Server()) == origin
}

func (s *Service) inboundTyping(ctx context.Context, origin string, content json.RawMessage) error {
	var c struct {
		RoomID string `json:"room_id"`
		UserID string `json:"user_id"`
		Typing bool   `json:"typing"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return err
	}
	if !owned(c.UserID, origin) || c.RoomID == "" || !s.aclAllows(ctx, c.RoomID, origin) {
		return nil
	}
	// SetTyping refuses users not joined to the room.
	return s.sync.SetTyping(ctx, c.RoomID, c.UserID, c.Typing, remoteTypingTimeout)
}

type receiptData struct {
	Data struct {
		TS       int64  `json:"ts"`
		ThreadID string `json:"thread_id"`
	} `json:"data"`
	EventIDs []string `json:"event_ids"`
}

func (s *Service) inboundReceipts(ctx context.Context, origin string, content json.RawMessage) error {
	var c map[string]map[string]map[string]receiptData // room → type → user → receipt
	if err := json.Unmarshal(content, &c); err != nil {
		return err
	}
	for roomID, types := range c {
		if !s.aclAllows(ctx, roomID, origin) {
			continue
		}
		for typ, users := range types {
			if typ != "m.read" {
				continue // private receipts never travel; others are unknown
			}
			for userID, r := range users {
				if !owned(userID, origin) || len(r.EventIDs) == 0 {
					continue
				}
				if ok, err := s.rooms.IsJoined(ctx, roomID, userID); err != nil || (!ok && !s.rooms.InPartialServers(roomID, userID)) {
					continue
				}
				// A receipt may arrive before its event (or name one we
				// never see): it is kept, with no position, so that it
				// is neither lost nor ahead of a known one.
				eventID, eventPos := r.EventIDs[0], int64(0)
				if len(eventID) > 255 {
					continue
				}
				row, err := s.store.GetEvent(ctx, eventID)
				switch {
				case err == nil && row.RoomID != roomID:
					continue
				case err == nil:
					eventPos = row.Pos
				case !errors.Is(err, store.ErrNotFound):
					return err
				}
				ts := r.Data.TS
				if ts <= 0 {
					ts = time.Now().UnixMilli()
				}
				// Stored, and its syncs woken, as a local user's is.
				if _, err := s.sync.PutReceipt(ctx, sync.Receipt{RoomID: roomID, Type: typ, UserID: userID, ThreadID: r.Data.ThreadID, EventID: eventID, EventPos: eventPos, TS: ts}); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (s *Service) inboundPresence(ctx context.Context, origin string, content json.RawMessage) error {
	var c struct {
		Push []struct {
			UserID    string  `json:"user_id"`
			Presence  string  `json:"presence"`
			StatusMsg *string `json:"status_msg"`
		} `json:"push"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return err
	}
	for _, p := range c.Push {
		if !owned(p.UserID, origin) {
			continue
		}
		switch p.Presence {
		case "online", "offline", "unavailable":
		default:
			continue
		}
		// Only for users someone here can see.
		mates, err := s.store.Roommates(ctx, p.UserID)
		if err != nil {
			return err
		}
		local := false
		for _, m := range mates {
			local = local || s.isLocal(m)
		}
		if !local {
			continue
		}
		var msg sql.NullString
		if p.StatusMsg != nil {
			msg = sql.NullString{String: *p.StatusMsg, Valid: true}
		}
		if err := s.sync.SetPresence(ctx, p.UserID, p.Presence, msg); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) inboundDeviceList(ctx context.Context, origin string, content json.RawMessage) error {
	var c struct {
		UserID string `json:"user_id"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return err
	}
	if !owned(c.UserID, origin) {
		return nil
	}
	// The kept list is refreshed by the next key query: clients query as
	// soon as they see the user in device_lists.changed.
	return s.e2ee.RemoteDeviceListChanged(ctx, c.UserID)
}

func (s *Service) inboundToDevice(ctx context.Context, origin string, content json.RawMessage) error {
	var c struct {
		Sender    string                                `json:"sender"`
		Type      string                                `json:"type"`
		MessageID string                                `json:"message_id"`
		Messages  map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := json.Unmarshal(content, &c); err != nil {
		return err
	}
	if !owned(c.Sender, origin) || c.Type == "" {
		return nil
	}
	if c.MessageID != "" {
		now := time.Now()
		fresh := false
		err := s.store.InTx(ctx, func(tx *store.Tx) error {
			var err error
			fresh, err = tx.RememberToDeviceMessage(ctx, origin, c.MessageID, now.UnixMilli())
			return err
		})
		if err != nil {
			return err
		}
		if !fresh {
			return nil
		}
		if s.lastSweep.Load() < now.Add(-time.Hour).UnixMilli() {
			s.lastSweep.Store(now.UnixMilli())
			_ = s.store.ForgetToDeviceMessages(ctx, now.Add(-toDeviceIDTTL).UnixMilli())
		}
	}
	return s.e2ee.DeliverToDevice(ctx, c.Sender, c.Type, c.Messages)
}
