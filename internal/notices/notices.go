package notices

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Service sends server notices. It is safe for concurrent use.
type Service struct {
	store       *store.Store
	rooms       *rooms.Service
	serverName  string
	localpart   string
	displayName string
	wake        func(users ...string) // tells a user's syncs that their account data changed

	mu sync.Mutex // serialises room creation: one room per recipient
}

// New returns the notices service for the system user
// @localpart:serverName; wake (nil: none) tells a user's syncs that their
// account data changed.
func New(st *store.Store, rs *rooms.Service, serverName, localpart, displayName string, wake func(users ...string)) *Service {
	return &Service{store: st, rooms: rs, serverName: serverName, localpart: localpart, displayName: displayName, wake: wake}
}

// SystemUser is the user that sends notices.
func (s *Service) SystemUser() string { return "@" + s.localpart + ":" + s.serverName }

// Send posts a notice to a local user, creating their notices room (and
// inviting them again if they left it) first. content is the message
// content; its msgtype is always m.server_notice and it needs a body.
// With a txn, a notice already sent under it is returned instead.
func (s *Service) Send(ctx context.Context, userID string, content json.RawMessage, txn *rooms.Txn) (string, error) {
	var c map[string]any
	if err := json.Unmarshal(content, &c); err != nil || c == nil {
		return "", errcode.BadJSON("content must be an object")
	}
	if b, ok := c["body"].(string); !ok || b == "" {
		return "", errcode.BadJSON("content.body must be a non-empty string")
	}
	c["msgtype"] = "m.server_notice"
	if userID == s.SystemUser() {
		return "", errcode.InvalidParam("the server notices user cannot receive notices")
	}
	u, err := s.store.GetUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return "", errcode.NotFound("no such local user")
	}
	if err != nil {
		return "", err
	}
	if u.Deactivated {
		return "", errcode.NotFound("the user is deactivated")
	}
	if txn != nil {
		id, err := s.rooms.LookupTxn(ctx, s.SystemUser(), txn)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return "", err
		}
	}
	roomID, err := s.roomFor(ctx, userID)
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(c)
	if err != nil {
		return "", errcode.BadJSON("content cannot be encoded")
	}
	id, err := s.rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.message", Sender: s.SystemUser(), Content: data}, txn)
	if err != nil {
		return "", err
	}
	if typ, _ := c["server_notice_type"].(string); typ != "" {
		if err := s.pin(ctx, roomID, id, typ); err != nil {
			return "", fmt.Errorf("pin server notice: %w", err)
		}
	}
	return id, nil
}

// pin makes a typed notice the active one of its type: clients show
// pinned server notices prominently (the spec's "active notices"), so the
// notice replaces earlier pinned notices of the same server_notice_type.
func (s *Service) pin(ctx context.Context, roomID, eventID, typ string) error {
	var pinned []string
	if ev, err := s.rooms.CurrentStateEvent(ctx, roomID, "m.room.pinned_events", ""); err == nil {
		var c struct {
			Pinned []string `json:"pinned"`
		}
		_ = json.Unmarshal(ev.Content, &c)
		for _, id := range c.Pinned {
			old, err := s.rooms.Event(ctx, id)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			var oc struct {
				Type string `json:"server_notice_type"`
			}
			if old != nil {
				_ = json.Unmarshal(old.Content, &oc)
			}
			if old == nil || oc.Type != typ {
				pinned = append(pinned, id)
			}
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	pinned = append(pinned, eventID)
	content, err := json.Marshal(map[string][]string{"pinned": pinned})
	if err != nil {
		return err
	}
	empty := ""
	_, err = s.rooms.Send(ctx, roomID, rooms.Proto{Type: "m.room.pinned_events", StateKey: &empty, Sender: s.SystemUser(), Content: content}, nil)
	return err
}

// roomFor returns the user's notices room, creating it on first use, with
// the user invited or joined.
func (s *Service) roomFor(ctx context.Context, userID string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	roomID, err := s.store.ServerNoticeRoom(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return s.createRoom(ctx, userID)
	}
	if err != nil {
		return "", err
	}
	m, err := s.store.GetMembership(ctx, roomID, userID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	if m == nil || (m.Membership != "join" && m.Membership != "invite") {
		if _, err := s.rooms.ChangeMembership(ctx, rooms.MemberChange{RoomID: roomID, Sender: s.SystemUser(), Target: userID, Membership: "invite"}); err != nil {
			return "", fmt.Errorf("invite to server notices room: %w", err)
		}
	}
	return roomID, nil
}

func (s *Service) createRoom(ctx context.Context, userID string) (string, error) {
	if err := s.ensureSystemUser(ctx); err != nil {
		return "", err
	}
	name := s.displayName
	empty := ""
	req := rooms.CreateRequest{
		// public_chat only to leave the room unencrypted (the system user
		// holds no keys); the join rule below makes it invite-only.
		Preset: "public_chat",
		Name:   &name,
		Invite: []string{userID},
		InitialState: []rooms.StateEvent{
			{Type: "m.room.join_rules", StateKey: empty, Content: json.RawMessage(`{"join_rule":"invite"}`)},
			{Type: "m.room.history_visibility", StateKey: empty, Content: json.RawMessage(`{"history_visibility":"invited"}`)},
		},
		// Only the system user may post or change anything.
		PowerLevelContentOverride: json.RawMessage(`{"events_default":100,"state_default":100,"invite":100,"kick":100,"ban":100,"redact":100,"users_default":0}`),
	}
	roomID, err := s.rooms.CreateRoom(ctx, s.SystemUser(), req)
	if err != nil {
		return "", fmt.Errorf("create server notices room: %w", err)
	}
	if err := s.store.SetServerNoticeRoom(ctx, userID, roomID); err != nil {
		return "", err
	}
	// The spec's marker for clients: the m.server_notice tag.
	tags := []byte(`{"tags":{"m.server_notice":{}}}`)
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.PutAccountData(ctx, userID, roomID, "m.tag", tags)
		return err
	})
	if err != nil {
		return "", err
	}
	if s.wake != nil {
		s.wake(userID)
	}
	return roomID, nil
}

// ensureSystemUser creates the system user's account on first use. It has
// no password, so nobody can log in as it.
func (s *Service) ensureSystemUser(ctx context.Context) error {
	id := s.SystemUser()
	if u, err := s.store.GetUser(ctx, id); err == nil {
		if u.PasswordHash != "" {
			// Someone could log in as the sender of official notices.
			return errcode.Unknown("the server notices user %s is an ordinary account: set another server_notices.localpart", id)
		}
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		return tx.CreateUser(ctx, store.User{UserID: id, DisplayName: sql.NullString{String: s.displayName, Valid: s.displayName != ""}})
	})
	if errors.Is(err, store.ErrExists) {
		return nil
	}
	return err
}

// CheckLeave refuses to let a user reject the invite to their notices
// room, as the spec requires; leaving after joining is allowed.
func (s *Service) CheckLeave(ctx context.Context, roomID, userID string) error {
	owner, ok, err := s.store.IsServerNoticeRoom(ctx, roomID)
	if err != nil || !ok || owner != userID {
		return err
	}
	m, err := s.store.GetMembership(ctx, roomID, userID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}
	if m.Membership == "invite" {
		return errcode.CannotLeaveServerNoticeRoom("the invite to the server notices room cannot be rejected")
	}
	return nil
}
