package notifications

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/push"
	"luxchat/internal/rooms"
)

// CarryRulesOnJoin is a rooms listener: when a local user joins a room
// that replaces another (its m.room.create names a predecessor), the
// user's push rules for the old room are copied to the new one, so that a
// muted room stays muted after an upgrade. The copy runs off the
// listener's goroutine, which holds the room's lock.
func (s *Service) CarryRulesOnJoin(c rooms.Committed) {
	var joins []*pdu.Event
	for _, ce := range c.Events {
		ev := ce.Event
		if ev.Type == "m.room.member" && ev.StateKey != nil && *ev.StateKey == ev.Sender &&
			s.isLocal(ev.Sender) && membership(ev.Content) == "join" && c.JoinedAfter(ev.Sender) {
			joins = append(joins, ev)
		}
	}
	if len(joins) == 0 {
		return
	}
	s.carrying.Add(1)
	go func() {
		defer s.carrying.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, join := range joins {
			if err := s.carryRules(ctx, join); err != nil {
				s.log.Warn("push: carry rules to an upgraded room", "room", join.RoomID, "user", join.Sender, "err", err)
			}
		}
	}()
}

// Settle waits until the rules carried to upgraded rooms by the joins
// committed so far are written (tests wait on it instead of sleeping).
func (s *Service) Settle() { s.carrying.Wait() }

// carryRules copies the joiner's rules of the room's predecessor, unless
// the join only changed a profile (the user was joined before) or the
// user already has rules for the room.
func (s *Service) carryRules(ctx context.Context, join *pdu.Event) error {
	create, err := s.rooms.CurrentStateEvent(ctx, join.RoomID, "m.room.create", "")
	if err != nil {
		return err
	}
	var cc struct {
		Predecessor struct {
			RoomID string `json:"room_id"`
		} `json:"predecessor"`
	}
	if json.Unmarshal(create.Content, &cc) != nil || cc.Predecessor.RoomID == "" || cc.Predecessor.RoomID == join.RoomID {
		return nil
	}
	if wasJoined, err := s.rooms.JoinedBefore(ctx, join); err != nil || wasJoined {
		return err
	}
	old, room := cc.Predecessor.RoomID, join.RoomID
	rs, err := s.Rules(ctx, join.Sender)
	if err != nil {
		return err
	}
	if !hasRulesFor(rs, old) || hasRulesFor(rs, room) {
		return nil
	}
	return s.EditRules(ctx, join.Sender, func(rs *push.Ruleset) error {
		if hasRulesFor(rs, room) {
			return nil
		}
		for _, kind := range []string{"override", "room", "underride"} {
			rules := rs.Kind(kind)
			var copies []push.Rule
			for _, r := range *rules {
				if !r.Default && r.RuleID == old {
					copies = append(copies, copyRule(r, old, room))
				}
			}
			// A copy goes right after its original, so it keeps its rank.
			for _, cp := range copies {
				at := slices.IndexFunc(*rules, func(r push.Rule) bool { return r.RuleID == old }) + 1
				*rules = slices.Insert(*rules, at, cp)
			}
		}
		return nil
	})
}

// hasRulesFor reports whether a user-defined override, room or underride
// rule is named for roomID.
func hasRulesFor(rs *push.Ruleset, roomID string) bool {
	for _, kind := range []string{"override", "room", "underride"} {
		for _, r := range *rs.Kind(kind) {
			if !r.Default && r.RuleID == roomID {
				return true
			}
		}
	}
	return false
}

// copyRule returns r for the room newID: its id and the room ids its
// conditions match become the new room's.
func copyRule(r push.Rule, oldID, newID string) push.Rule {
	cp := r
	cp.RuleID = newID
	cp.Actions = slices.Clone(r.Actions)
	cp.Conditions = nil
	for _, c := range r.Conditions {
		var cond map[string]any
		if json.Unmarshal(c, &cond) == nil && cond["key"] == "room_id" && cond["pattern"] == oldID {
			cond["pattern"] = newID
			if b, err := json.Marshal(cond); err == nil {
				c = b
			}
		}
		cp.Conditions = append(cp.Conditions, c)
	}
	if r.Conditions != nil && cp.Conditions == nil {
		cp.Conditions = []json.RawMessage{}
	}
	return cp
}
