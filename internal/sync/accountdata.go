package sync

import (
	"context"
	"encoding/json"
	"errors"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// AccountData returns an item of a user's account data, global (roomID
// "") or of a room; M_NOT_FOUND when there is none or it was deleted.
func (s *Service) AccountData(ctx context.Context, userID, roomID, typ string) (json.RawMessage, error) {
	c, err := s.store.GetAccountData(ctx, userID, roomID, typ)
	if errors.Is(err, store.ErrNotFound) || (err == nil && store.AccountDataDeleted(c)) {
		return nil, errcode.NotFound("no account data of that type")
	}
	if err != nil {
		return nil, err
	}
	return json.RawMessage(c), nil
}

// PutAccountData stores an item of a user's account data, global (roomID
// "") or of a room; an empty object deletes it (MSC3391). Those concerned
// hear of it: Hooks.AccountData in the same transaction, the rooms'
// copies of the ignore list and invite policy, and the user's syncs.
func (s *Service) PutAccountData(ctx context.Context, userID, roomID, typ string, content json.RawMessage) error {
	var members map[string]json.RawMessage
	if json.Unmarshal(content, &members) == nil && len(members) == 0 {
		// Stored as the deletion mark, which syncs send on.
		content = json.RawMessage(store.DeletedAccountData)
	}
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.PutAccountData(ctx, userID, roomID, typ, content); err != nil {
			return err
		}
		if s.hooks.AccountData != nil {
			return s.hooks.AccountData(ctx, tx, userID, roomID, typ, content)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if typ == "m.ignored_user_list" && roomID == "" {
		s.read.ForgetIgnoredUsers(userID)
	}
	if (typ == rooms.InvitePermissionType || typ == rooms.InvitePermissionUnstableType) && roomID == "" {
		s.rooms.ForgetInvitePolicy(userID)
	}
	s.notifier.Wake(userID)
	return nil
}

// DeleteAccountData deletes an item of a user's account data (MSC3391):
// incremental syncs see it with empty content, reads and initial syncs no
// longer see it. Deleting what is not there changes nothing.
func (s *Service) DeleteAccountData(ctx context.Context, userID, roomID, typ string) error {
	c, err := s.store.GetAccountData(ctx, userID, roomID, typ)
	if errors.Is(err, store.ErrNotFound) || (err == nil && store.AccountDataDeleted(c)) {
		return nil
	}
	if err != nil {
		return err
	}
	return s.PutAccountData(ctx, userID, roomID, typ, json.RawMessage(store.DeletedAccountData))
}

// Tags is the content of a room's m.tag account data.
type Tags struct {
	Tags map[string]json.RawMessage `json:"tags"`
}

// RoomTags returns a user's tags of a room (none when never set).
func (s *Service) RoomTags(ctx context.Context, userID, roomID string) (*Tags, error) {
	t := &Tags{Tags: map[string]json.RawMessage{}}
	c, err := s.store.GetAccountData(ctx, userID, roomID, "m.tag")
	if err == nil {
		_ = json.Unmarshal(c, t)
		if t.Tags == nil {
			t.Tags = map[string]json.RawMessage{}
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, err
	}
	return t, nil
}

// PutTag sets a user's tag of a room, its content an object (order).
func (s *Service) PutTag(ctx context.Context, userID, roomID, tag string, content json.RawMessage) error {
	t, err := s.RoomTags(ctx, userID, roomID)
	if err != nil {
		return err
	}
	t.Tags[tag] = content
	c, _ := json.Marshal(t)
	return s.PutAccountData(ctx, userID, roomID, "m.tag", c)
}

// DeleteTag removes a user's tag of a room.
func (s *Service) DeleteTag(ctx context.Context, userID, roomID, tag string) error {
	t, err := s.RoomTags(ctx, userID, roomID)
	if err != nil {
		return err
	}
	delete(t.Tags, tag)
	c, _ := json.Marshal(t)
	return s.PutAccountData(ctx, userID, roomID, "m.tag", c)
}
