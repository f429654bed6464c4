package rooms

import (
	"context"
	"encoding/json"
	"errors"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/store"
)

// Memberships of local users in rooms not known here (invites, knocks and
// their ends), and the stripped state shown with them.

// StrippedTypes is the state shown to invited and knocking users.
var StrippedTypes = []string{"m.room.create", "m.room.name", "m.room.avatar", "m.room.topic", "m.room.join_rules", "m.room.canonical_alias", "m.room.encryption"}

// StrippedEvent is an event in the stripped state shown to clients, with
// its timestamp, which clients show as the invite's time.
func StrippedEvent(ev *pdu.Event) json.RawMessage {
	sk := ""
	if ev.StateKey != nil {
		sk = *ev.StateKey
	}
	return mustJSON(strippedState{Content: ev.Content, Sender: ev.Sender, StateKey: sk, Type: ev.Type, OriginServerTS: ev.OriginServerTS})
}

type strippedState struct {
	Content        json.RawMessage `json:"content"`
	Sender         string          `json:"sender"`
	StateKey       string          `json:"state_key"`
	Type           string          `json:"type"`
	OriginServerTS int64           `json:"origin_server_ts,omitempty"`
}

// PruneStripped keeps the stripped state keys of each entry received over
// federation (full PDUs since v1.16): clients never see what another
// server sent as is. Entries that are not state events are dropped.
func PruneStripped(in []json.RawMessage) []json.RawMessage {
	out := make([]json.RawMessage, 0, len(in))
	for _, raw := range in {
		var e struct {
			Content        json.RawMessage `json:"content"`
			Sender         string          `json:"sender"`
			StateKey       *string         `json:"state_key"`
			Type           string          `json:"type"`
			OriginServerTS int64           `json:"origin_server_ts"`
		}
		if json.Unmarshal(raw, &e) != nil || e.StateKey == nil || e.Type == "" || len(e.Content) == 0 || e.Content[0] != '{' {
			continue
		}
		out = append(out, mustJSON(strippedState{Content: e.Content, Sender: e.Sender, StateKey: *e.StateKey, Type: e.Type, OriginServerTS: e.OriginServerTS}))
	}
	return out
}

// PutRemoteMembership records a user's invite, knock or leave for a room
// not known here and wakes the user's syncs.
func (s *Service) PutRemoteMembership(ctx context.Context, m store.RemoteMembership) error {
	var pos int64
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		pos = tx.Alloc(s.store.Streams.Events)
		s.membershipsChanged(tx, m.UserID)
		s.noteMembershipChange(pos)
		if m.Membership == "leave" && len(m.PDU) == 0 {
			if err := tx.DeleteRemoteMembership(ctx, m.RoomID, m.UserID); err != nil {
				return err
			}
			return tx.SetMembership(ctx, store.Membership{RoomID: m.RoomID, UserID: m.UserID, Membership: "leave", EventID: m.EventID, Pos: pos})
		}
		// A leave with its event is kept so that the user's syncs can show
		// it: the room's events are not stored here.
		return tx.PutRemoteMembership(ctx, m, pos)
	})
	if err != nil {
		return err
	}
	if s.notifier != nil {
		s.notifier.RoomEvent(m.RoomID, nil, []string{m.UserID}, pos)
	}
	return nil
}

// RemoteStrippedState returns the stripped state kept with a remote
// invite or knock, or nil.
func (s *Service) RemoteStrippedState(ctx context.Context, roomID, userID string) []json.RawMessage {
	m, err := s.store.GetRemoteMembership(ctx, roomID, userID)
	if err != nil {
		return nil
	}
	var out []json.RawMessage
	_ = json.Unmarshal(m.Stripped, &out)
	return out
}

// inviteRemoteUsers invites users of other servers to a room just created
// (createRoom's invite list): each needs its server's countersignature,
// so each is a membership change of its own. A failure is logged; the
// room exists either way.
func (s *Service) inviteRemoteUsers(ctx context.Context, roomID, sender string, users []string, isDirect bool) {
	for _, u := range users {
		if _, err := s.ChangeMembership(ctx, MemberChange{RoomID: roomID, Sender: sender, Target: u, Membership: "invite", IsDirect: isDirect}); err != nil {
			s.log.Warn("invite at room creation failed", "room_id", roomID, "user_id", u, "err", err)
		}
	}
}

// RemoteLeave returns, as an event row, the leave a user sent (or was
// sent) for a room not known here, or nil: the only event of that room a
// sync can show them.
func (s *Service) RemoteLeave(ctx context.Context, roomID, userID string) (*store.EventRow, error) {
	m, err := s.store.GetRemoteMembership(ctx, roomID, userID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	v, ok := roomversion.Get(m.RoomVersion)
	if m.Membership != "leave" || len(m.PDU) == 0 || !ok {
		return nil, nil
	}
	ev, err := pdu.Parse(m.PDU, v)
	if err != nil {
		return nil, nil
	}
	// Not stored: the client format is built from it.
	return eventRow(ev, roomID, 0, 0, []byte("{}")), nil
}
