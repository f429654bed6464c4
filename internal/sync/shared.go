package sync

import (
	"context"
	"encoding/json"

	"luxchat/internal/rooms"
	"luxchat/internal/store"
	"luxchat/internal/streamtoken"
)

// What other sync flavours (simplified sliding sync, package slidingsync)
// share with /sync: the streams' positions, the notifier, presence, the
// rules for showing invites, unread counts, typing, receipts and the
// devices' data. Each is what /sync itself does, so both answer alike.

// Current is the token of everything committed now.
func (s *Service) Current() streamtoken.Token { return s.current() }

// NewsChan returns the channel that closes at the user's next news (taken
// before looking, as Sync does, so that nothing slips between the look and
// the wait).
func (s *Service) NewsChan(userID string) <-chan struct{} { return s.notifier.Chan(userID) }

// Closing is closed when the service stops: waiting polls answer at once.
func (s *Service) Closing() <-chan struct{} { return s.closing }

// MarkPresence applies a sync's set_presence ("" is online).
func (s *Service) MarkPresence(ctx context.Context, userID, state string) error {
	return s.setPresence(ctx, userID, state)
}

// InviteShown reports whether a user's invite is shown: not from an
// ignored user and allowed by the user's invite permission.
func (s *Service) InviteShown(ctx context.Context, m store.Membership, ignored map[string]bool) (bool, error) {
	inviter := s.inviter(ctx, m)
	if ignored[inviter] {
		return false, nil
	}
	a, err := s.rooms.InviteAction(ctx, m.UserID, inviter)
	return err == nil && a == rooms.InviteAllow, err
}

// UnreadCounts returns the unread notification counts (main timeline and
// threads together) of rooms for a user, up to an events position; nil
// when the server counts none.
func (s *Service) UnreadCounts(ctx context.Context, userID string, roomIDs []string, upTo int64) (map[string]Unread, error) {
	if len(roomIDs) == 0 {
		return map[string]Unread{}, nil
	}
	out := make(map[string]Unread, len(roomIDs))
	if s.hooks.NotificationCounts == nil {
		for _, id := range roomIDs {
			n, err := s.rooms.Unread(ctx, id, userID, upTo)
			if err != nil {
				return nil, err
			}
			out[id] = Unread{NotificationCount: n}
		}
		return out, nil
	}
	counts, err := s.hooks.NotificationCounts(ctx, userID, roomIDs, upTo)
	if err != nil {
		return nil, err
	}
	for _, c := range counts {
		u := out[c.RoomID]
		u.NotificationCount += c.Notify
		u.HighlightCount += c.Highlight
		out[c.RoomID] = u
	}
	return out, nil
}

// DefaultPushRules returns the m.push_rules content a user who never
// changed their rules (and so has no stored event) is shown; nil when
// the server has none.
func (s *Service) DefaultPushRules(ctx context.Context, userID string) (json.RawMessage, error) {
	if s.hooks.PushRules == nil {
		return nil, nil
	}
	return s.hooks.PushRules(ctx, userID)
}

// TypingSince returns the typing users of a room if they changed after
// the typing position pos.
func (s *Service) TypingSince(roomID string, pos int64) ([]string, bool) {
	return s.typing.Since(roomID, pos)
}

// ReceiptEvents groups receipts into one m.receipt event per room, as
// /sync shows them to userID.
func ReceiptEvents(rs []store.Receipt, userID string) map[string]json.RawMessage {
	return receiptEvents(rs, userID)
}

// Devices is the end-to-end encryption data of syncs (nil: none).
func (s *Service) Devices() DeviceData { return s.hooks.Devices }

// MaxToDevice bounds the to-device messages of one sync.
const MaxToDevice = maxToDevice
