package appservice

import (
	"encoding/json"
	"sync"

	"luxchat/internal/store"
)

// EventsCommitted is the event pipeline's after-commit step: events
// were committed in a room. The pushers read them from the stream, so
// this only wakes them (and forgets the room's interest when its members
// changed); it never waits.
func (s *Service) EventsCommitted(roomID string, membershipChanged bool) {
	if s == nil {
		return
	}
	if membershipChanged {
		s.interest.drop(roomID)
	}
	for _, p := range s.pushers {
		p.poke()
	}
}

// UsersWoken: the end-to-end encryption data of users changed (a
// to-device message for them, their keys, their roommates' devices).
// Services that take to-device messages or MSC3202 data are woken.
func (s *Service) UsersWoken(users ...string) {
	if s == nil {
		return
	}
	for _, p := range s.pushers {
		if p.r.Ephemeral || p.r.MSC3202 {
			p.poke()
		}
	}
}

// typingRooms mirrors who types where, for the m.typing events services
// get (the full list of a room's typing users, as /sync shows it).
type typingRooms struct {
	mu    sync.Mutex
	rooms map[string]map[string]struct{}
}

// Typing: a local user started or stopped typing in a room.
func (s *Service) Typing(roomID, userID string, typing bool) {
	if s == nil || !s.anyEphemeral() {
		return
	}
	s.typing.mu.Lock()
	users := s.typing.rooms[roomID]
	if typing {
		if users == nil {
			users = map[string]struct{}{}
			s.typing.rooms[roomID] = users
		}
		users[userID] = struct{}{}
	} else {
		delete(users, userID)
		if len(users) == 0 {
			delete(s.typing.rooms, roomID)
		}
	}
	ids := make([]string, 0, len(users))
	for u := range users {
		ids = append(ids, u)
	}
	s.typing.mu.Unlock()
	data, _ := json.Marshal(map[string]any{"type": "m.typing", "room_id": roomID, "content": map[string]any{"user_ids": ids}})
	s.addEphemeral(ephemeralItem{roomID: roomID, data: data})
}

// Receipt: a receipt was stored. A private one goes only to services
// whose namespace holds its user.
func (s *Service) Receipt(r store.Receipt) {
	if s == nil || !s.anyEphemeral() {
		return
	}
	rec := map[string]any{"ts": r.TS}
	if r.ThreadID != "" {
		rec["thread_id"] = r.ThreadID
	}
	data, _ := json.Marshal(map[string]any{"type": "m.receipt", "room_id": r.RoomID,
		"content": map[string]any{r.EventID: map[string]any{r.Type: map[string]any{r.UserID: rec}}}})
	s.addEphemeral(ephemeralItem{roomID: r.RoomID, userID: r.UserID, private: r.Type == "m.read.private", data: data})
}

// Presence: a user's presence changed. Services get the presence of
// their users and of the users sharing a room with them.
func (s *Service) Presence(p store.Presence) {
	if s == nil || !s.anyEphemeral() {
		return
	}
	content := map[string]any{"presence": p.State}
	if p.StatusMsg.Valid {
		content["status_msg"] = p.StatusMsg.String
	}
	data, _ := json.Marshal(map[string]any{"type": "m.presence", "sender": p.UserID, "content": content})
	s.addEphemeral(ephemeralItem{userID: p.UserID, data: data})
}

func (s *Service) anyEphemeral() bool {
	for _, p := range s.pushers {
		if p.r.Ephemeral && !p.r.Internal {
			return true
		}
	}
	return false
}

func (s *Service) addEphemeral(it ephemeralItem) {
	for _, p := range s.pushers {
		if p.r.Ephemeral && !p.r.Internal {
			p.addEphemeral(it)
		}
	}
}
