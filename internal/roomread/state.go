package roomread

import (
	"context"
	"encoding/json"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// StateAfter is the state after a stored event (rooms.Service's
// StateAfterEvent), store.ErrNotFound when it is not stored. An outlier,
// whose state is not known here, has itself for state when it is a state
// event.
func (s *Service) StateAfter(ctx context.Context, eventID string) (store.StateMap, error) {
	st, ok, err := s.rooms.StateAfterEvent(ctx, eventID)
	if ok || err != nil {
		return st, err
	}
	row, err := s.store.GetEvent(ctx, eventID)
	if err != nil {
		return nil, err
	}
	st = store.StateMap{}
	if row.StateKey.Valid {
		st[store.StateKey{Type: row.Type, StateKey: row.StateKey.String}] = row.EventID
	}
	return st, nil
}

// stateForReader returns the state a user may see: the current state for
// members and world-readable rooms, the state when they left otherwise.
func (s *Service) stateForReader(ctx context.Context, roomID, userID string) (store.StateMap, error) {
	v, err := s.rooms.Viewer(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	if v.Membership() == "leave" || v.Membership() == "ban" {
		m, err := s.store.GetMembership(ctx, roomID, userID)
		if err != nil {
			return nil, err
		}
		return s.StateAfter(ctx, m.EventID)
	}
	if v.Membership() == "invite" || v.Membership() == "knock" {
		return nil, errcode.Forbidden("you are not joined to this room")
	}
	if !s.rooms.StateLoaded(roomID) {
		// Not loaded for this: loading parses every state event, and a
		// reader of a room of 10,000 needs their ids only (the forms
		// come from the forms cache or one statement).
		return s.store.CurrentState(ctx, roomID)
	}
	r, err := s.rooms.LockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer r.Unlock()
	return r.StateIDs(), nil
}

// State returns the room state a user may see, in client format.
func (s *Service) State(ctx context.Context, roomID, userID string) ([]json.RawMessage, error) {
	st, err := s.stateForReader(ctx, roomID, userID)
	if err != nil {
		return nil, err
	}
	return s.RenderState(ctx, st, userID, nil)
}

// StateContent returns the content of one state event a user may see.
func (s *Service) StateContent(ctx context.Context, roomID, userID, typ, key string) (json.RawMessage, *store.EventRow, error) {
	st, err := s.stateForReader(ctx, roomID, userID)
	if err != nil {
		return nil, nil, err
	}
	id, ok := st[store.StateKey{Type: typ, StateKey: key}]
	if !ok {
		return nil, nil, errcode.NotFound("no such state event")
	}
	row, err := s.store.GetEvent(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	var f struct {
		Content json.RawMessage `json:"content"`
	}
	_ = json.Unmarshal(row.JSON(), &f)
	if f.Content == nil {
		f.Content = json.RawMessage("{}")
	}
	return f.Content, row, nil
}

// MembersRequest is a /members query.
type MembersRequest struct {
	RoomID, UserID            string
	At                        string
	Membership, NotMembership string
}

// Members returns the member events of a room as the user may see them,
// as the JSON array /members answers in its chunk: spliced from the
// events' state forms, so that a list of thousands decodes nothing.
func (s *Service) Members(ctx context.Context, q MembersRequest) (json.RawMessage, error) {
	// The member list of a partial-state room is incomplete: wait for it.
	if err := s.rooms.WaitFullState(ctx, q.RoomID); err != nil {
		return nil, err
	}
	st, err := s.stateForReader(ctx, q.RoomID, q.UserID)
	if err != nil {
		return nil, err
	}
	if q.At != "" {
		pos, err := s.TokenPos(q.At, "at")
		if err != nil {
			return nil, err
		}
		rows, err := s.store.RoomEvents(ctx, q.RoomID, 0, pos, true, 1)
		if err != nil {
			return nil, err
		}
		if len(rows) == 0 {
			// No point of the room at or before the token: not the
			// members of now.
			return nil, errcode.NotFound("no event of the room at or before the at token")
		}
		if st, err = s.StateAfter(ctx, rows[0].EventID); err != nil {
			return nil, err
		}
	}
	ids := make([]string, 0, len(st))
	for k, id := range st {
		if k.Type == "m.room.member" {
			ids = append(ids, id)
		}
	}
	forms, err := s.stateForms(ctx, ids, nil)
	if err != nil {
		return nil, err
	}
	size := 2
	for _, f := range forms {
		size += len(f.Head) + 64
	}
	out := make([]byte, 0, size)
	out = append(out, '[')
	for _, f := range forms {
		m := f.Membership
		if (q.Membership != "" && m != q.Membership) || (q.NotMembership != "" && m == q.NotMembership) {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = renderForm(out, f, q.UserID)
	}
	return append(out, ']'), nil
}

// JoinedMembers maps joined users to their profile, for members of the room.
func (s *Service) JoinedMembers(ctx context.Context, roomID, userID string) (map[string]any, error) {
	if err := s.rooms.WaitFullState(ctx, roomID); err != nil {
		return nil, err
	}
	r, err := s.rooms.LockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer r.Unlock()
	if !r.HasJoined(userID) {
		return nil, errcode.Forbidden("you are not joined to this room")
	}
	out := make(map[string]any)
	for u := range r.JoinedUsers() {
		var c struct {
			DisplayName *string `json:"displayname"`
			AvatarURL   *string `json:"avatar_url"`
		}
		_ = json.Unmarshal(r.State(pdu.StateTuple{Type: "m.room.member", StateKey: u}).Content, &c)
		out[u] = map[string]any{"display_name": c.DisplayName, "avatar_url": c.AvatarURL}
	}
	return out, nil
}

// LocalAliases lists the local aliases of a room, for a user who may see
// its state.
func (s *Service) LocalAliases(ctx context.Context, roomID, userID string) ([]string, error) {
	if _, err := s.State(ctx, roomID, userID); err != nil {
		return nil, err
	}
	al, err := s.store.RoomAliases(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if al == nil {
		al = []string{}
	}
	return al, nil
}
