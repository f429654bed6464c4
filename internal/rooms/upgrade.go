package rooms

import (
	"context"
	"encoding/json"
	"errors"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/store"
)

// upgradeCopied is the state carried into the replacement room.
var upgradeCopied = []string{
	"m.room.server_acl", "m.room.encryption", "m.room.name", "m.room.avatar", "m.room.topic",
	"m.room.guest_access", "m.room.history_visibility", "m.room.join_rules",
}

// Upgrade replaces a room by a new one of another version ("Room
// upgrades"): the new room gets the old one's important state and a
// predecessor link, the old room gets a tombstone and its aliases move.
// additionalCreators become creators of a version 12 replacement.
func (s *Service) Upgrade(ctx context.Context, userID, roomID, newVersion string, additionalCreators []string) (string, error) {
	v, ok := roomversion.Get(newVersion)
	if !ok {
		return "", errcode.UnsupportedRoomVersion("room version %q is not supported", newVersion)
	}
	// Read what the new room needs under the old room's lock.
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	pl := eventauth.RoomPowerLevels(r.state[pdu.StateTuple{Type: "m.room.create"}], r.state[pdu.StateTuple{Type: "m.room.power_levels"}])
	if _, joined := r.joined[userID]; !joined {
		r.mu.Unlock()
		return "", errcode.Forbidden("you are not joined to this room")
	}
	if pl.UserLevel(userID) < pl.EventLevel("m.room.tombstone", true) {
		r.mu.Unlock()
		return "", errcode.Forbidden("you may not upgrade this room")
	}
	copied := map[string]json.RawMessage{}
	for _, t := range upgradeCopied {
		if ev := r.state[pdu.StateTuple{Type: t}]; ev != nil {
			copied[t] = ev.Content
		}
	}
	var oldPL map[string]json.RawMessage
	if ev := r.state[pdu.StateTuple{Type: "m.room.power_levels"}]; ev != nil {
		_ = json.Unmarshal(ev.Content, &oldPL)
	}
	var lastEvent string
	if len(r.extremities) > 0 {
		lastEvent = r.extremities[0]
	}
	r.mu.Unlock()

	// The new room: same state, the upgrading user temporarily at the top so
	// that every copied event is allowed.
	predecessor := map[string]string{"room_id": roomID}
	if !v.RoomIDFromCreate {
		// Version 12 drops the event id: the tombstone is sent after the
		// new room exists, so no earlier event could name the last one.
		predecessor["event_id"] = lastEvent
	}
	creation := map[string]any{"predecessor": predecessor}
	if v.RoomIDFromCreate && len(additionalCreators) > 0 {
		creation["additional_creators"] = additionalCreators
	}
	var initial []StateEvent
	for _, t := range upgradeCopied {
		if c, ok := copied[t]; ok {
			initial = append(initial, StateEvent{Type: t, Content: c})
		}
	}
	plOverride := json.RawMessage(nil)
	if oldPL != nil {
		users := map[string]json.RawMessage{}
		_ = json.Unmarshal(oldPL["users"], &users)
		if v.RoomIDFromCreate {
			// Creators of v12 rooms are above power levels.
			delete(users, userID)
			for _, c := range additionalCreators {
				delete(users, c)
			}
		} else if r.version.RoomIDFromCreate {
			// From a v12 room, whose creators hold no level, to an older
			// version: the upgrading user keeps the top level explicitly.
			level := pl.UserLevel(userID)
			if pl.IsCreator(userID) || level < 100 {
				level = 100
			}
			users[userID] = mustJSON(level)
		}
		oldPL["users"] = mustJSON(users)
		plOverride = mustJSON(oldPL)
	}
	newRoom, err := s.CreateRoom(ctx, userID, CreateRequest{
		RoomVersion: newVersion, CreationContent: mustJSON(creation), InitialState: initial,
		PowerLevelContentOverride: plOverride, Preset: "private_chat", upgrade: true,
	})
	if err != nil {
		return "", err
	}
	empty := ""
	if _, err := s.Send(ctx, roomID, Proto{Type: "m.room.tombstone", StateKey: &empty, Sender: userID,
		Content: mustJSON(map[string]string{"body": "This room has been replaced", "replacement_room": newRoom})}, nil); err != nil {
		return "", err
	}
	// Restrict the old room: only moderators may speak or invite.
	if oldPL != nil {
		restrict := map[string]json.RawMessage{}
		for k, val := range oldPL {
			restrict[k] = val
		}
		level := int64(50)
		var usersDefault int64
		_ = json.Unmarshal(oldPL["users_default"], &usersDefault)
		level = max(level, usersDefault+1)
		restrict["events_default"] = mustJSON(level)
		restrict["invite"] = mustJSON(level)
		if _, err := s.Send(ctx, roomID, Proto{Type: "m.room.power_levels", StateKey: &empty, Sender: userID, Content: mustJSON(restrict)}, nil); err != nil {
			s.log.Warn("could not restrict upgraded room", "room", roomID, "err", err)
		}
	}
	// Local aliases follow the room.
	aliases, err := s.store.RoomAliases(ctx, roomID)
	if err != nil {
		return "", err
	}
	if len(aliases) > 0 {
		err = s.store.InTx(ctx, func(tx *store.Tx) error {
			for _, a := range aliases {
				if err := tx.DeleteAlias(ctx, a); err != nil {
					return err
				}
				if err := tx.PutAlias(ctx, a, newRoom, userID); err != nil && !errors.Is(err, store.ErrExists) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return "", err
		}
		if ev, err := s.CurrentStateEvent(ctx, roomID, "m.room.canonical_alias", ""); err == nil {
			if _, err := s.Send(ctx, newRoom, Proto{Type: "m.room.canonical_alias", StateKey: &empty, Sender: userID, Content: ev.Content}, nil); err != nil {
				s.log.Warn("could not move canonical alias", "room", newRoom, "err", err)
			}
		}
	}
	return newRoom, nil
}
