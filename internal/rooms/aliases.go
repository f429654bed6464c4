package rooms

import (
	"context"
	"encoding/json"
	"slices"
)

// DropCanonicalAlias removes a deleted alias from the room's
// m.room.canonical_alias (as alias or among alt_aliases), sent by the user
// who deleted it, so that clients stop showing an address that leads
// nowhere. A user who may not change the event leaves it as it is.
func (s *Service) DropCanonicalAlias(ctx context.Context, roomID, alias, userID string) {
	ev, err := s.CurrentStateEvent(ctx, roomID, "m.room.canonical_alias", "")
	if err != nil {
		return
	}
	var c map[string]json.RawMessage
	if json.Unmarshal(ev.Content, &c) != nil {
		return
	}
	changed := false
	var main string
	if json.Unmarshal(c["alias"], &main) == nil && main == alias {
		delete(c, "alias")
		changed = true
	}
	var alt []string
	if json.Unmarshal(c["alt_aliases"], &alt) == nil && slices.Contains(alt, alias) {
		alt = slices.DeleteFunc(alt, func(a string) bool { return a == alias })
		if len(alt) == 0 {
			delete(c, "alt_aliases")
		} else {
			c["alt_aliases"] = mustJSON(alt)
		}
		changed = true
	}
	if !changed {
		return
	}
	empty := ""
	if _, err := s.Send(ctx, roomID, Proto{Type: "m.room.canonical_alias", StateKey: &empty, Sender: userID, Content: mustJSON(c)}, nil); err != nil {
		s.log.Info("canonical alias kept after its deletion", "room_id", roomID, "alias", alias, "err", err)
	}
}
