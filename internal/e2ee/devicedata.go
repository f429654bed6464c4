package e2ee

import (
	"context"
	"encoding/json"
	"slices"

	"luxchat/internal/streamtoken"
)

// This file implements sync.DeviceData.

// ToDevice returns the device's to-device messages with from < pos <= to,
// oldest first, at most limit, and the position of the last one returned
// (to when none remain). Messages at or before from were delivered by the
// sync that produced from: they are deleted now.
func (s *Service) ToDevice(ctx context.Context, userID, deviceID string, from, to int64, limit int) ([]json.RawMessage, int64, error) {
	if err := s.ack(ctx, userID, deviceID, from); err != nil {
		return nil, 0, err
	}
	// An initial sync (from 0) that finds nothing learns that nothing
	// waits: the device's next syncs need not look in the database.
	if to <= from {
		if from == 0 {
			s.acks.storeIfAbsent(deviceKey{userID, deviceID}, 0)
		}
		return nil, to, nil
	}
	msgs, err := s.store.ToDeviceMessages(ctx, userID, deviceID, from, to, limit+1)
	if err != nil {
		return nil, 0, err
	}
	if len(msgs) == 0 && from == 0 {
		s.acks.storeIfAbsent(deviceKey{userID, deviceID}, 0)
	}
	last := to
	if len(msgs) > limit {
		msgs = msgs[:limit]
		last = msgs[len(msgs)-1].Pos
	}
	if len(msgs) == 0 {
		return nil, to, nil
	}
	out := make([]json.RawMessage, len(msgs))
	for i, m := range msgs {
		out[i] = toDeviceEvent(m.Sender, m.Type, m.Content)
	}
	s.acks.store(deviceKey{userID, deviceID}, msgs[len(msgs)-1].Pos)
	return out, last, nil
}

// ack deletes the device's messages at or before pos, when it has some.
func (s *Service) ack(ctx context.Context, userID, deviceID string, pos int64) error {
	if pos <= 0 {
		return nil
	}
	key := deviceKey{userID, deviceID}
	v, known := s.acks.load(key)
	if known && v == 0 {
		return nil // nothing delivered and waiting
	}
	if !known {
		// Unknown since this process started: look once.
		has, err := s.store.HasToDeviceUpTo(ctx, userID, deviceID, pos)
		if err != nil {
			return err
		}
		if !has {
			s.acks.storeIfAbsent(key, 0)
			return nil
		}
	}
	if err := s.store.AckToDevice(ctx, userID, deviceID, pos); err != nil {
		return err
	}
	// Everything delivered up to pos is gone. A delivery made meanwhile by
	// a concurrent sync, or one after pos (an older token), stays
	// remembered.
	if !known {
		s.acks.storeIfAbsent(key, 0)
	} else if v <= pos {
		s.acks.clearIf(key, v)
	}
	return nil
}

// toDeviceEvent renders {"content":…,"sender":…,"type":…}.
func toDeviceEvent(sender, typ, content string) json.RawMessage {
	senderJSON, _ := json.Marshal(sender)
	typeJSON, _ := json.Marshal(typ)
	b := make([]byte, 0, len(content)+len(senderJSON)+len(typeJSON)+32)
	b = append(b, `{"content":`...)
	b = append(b, content...)
	b = append(b, `,"sender":`...)
	b = append(b, senderJSON...)
	b = append(b, `,"type":`...)
	b = append(b, typeJSON...)
	b = append(b, '}')
	return b
}

// DeviceListChanges returns the users whose devices or cross-signing keys
// changed in the window and who share a room with userID (userID itself
// included), or who came to share one (changed), and those who no longer
// share any room with it (left). An initial sync (from nil) gets nothing:
// clients query the keys of every member after one.
func (s *Service) DeviceListChanges(ctx context.Context, userID string, from *streamtoken.Token, to streamtoken.Token) (changed, left []string, err error) {
	if from == nil {
		return nil, nil, nil
	}
	set := map[string]bool{}
	if to.DeviceLists > from.DeviceLists {
		users, err := s.store.DeviceListChangesFor(ctx, userID, from.DeviceLists, to.DeviceLists)
		if err != nil {
			return nil, nil, err
		}
		for _, u := range users {
			set[u] = true
		}
	}
	leftSet := map[string]bool{}
	if to.Events > from.Events && (s.hooks.LastMembershipChange == nil || s.hooks.LastMembershipChange() > from.Events) {
		mcs, err := s.store.MembershipChangesFor(ctx, userID, from.Events, to.Events)
		if err != nil {
			return nil, nil, err
		}
		inWindow := func(p int64) bool { return p > from.Events && p <= to.Events }
		gone := func(m string) bool { return m == "leave" || m == "ban" }
		for _, c := range mcs {
			switch {
			case c.Own == "join" && c.Membership == "join":
				// One of the two joined (or a member event changed): they
				// share the room now.
				set[c.UserID] = true
				if inWindow(c.OwnPos) && !s.isLocal(c.UserID) {
					// The user joined a room with users of another server,
					// which now hears of their devices: their own other
					// devices are told too, as Synapse does.
					set[userID] = true
				}
			case c.Own == "join" && gone(c.Membership) && inWindow(c.Pos),
				gone(c.Own) && inWindow(c.OwnPos) && c.Membership == "join":
				leftSet[c.UserID] = true
			}
		}
		if len(leftSet) > 0 {
			mates, err := s.store.Roommates(ctx, userID)
			if err != nil {
				return nil, nil, err
			}
			for _, u := range mates {
				delete(leftSet, u)
			}
		}
	}
	for u := range leftSet {
		delete(set, u)
		left = append(left, u)
	}
	for u := range set {
		changed = append(changed, u)
	}
	slices.Sort(changed)
	slices.Sort(left)
	return changed, left, nil
}
