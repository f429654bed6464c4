// Package roomadmin is what server administrators do to rooms through
// Synapse's admin API: list and inspect rooms (details, members, state,
// every message), block them, make a user their admin, and delete them
// (every local member leaves, optionally into a new room with a notice,
// then every row of the room is purged) in background tasks that a
// restart resumes.
//
// It must not import httpapi; rooms and roomread do the work on rooms,
// the store keeps the tasks.
package roomadmin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/roomread"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Service answers the administrators' room endpoints. It is safe for
// concurrent use.
type Service struct {
	st         *store.Store
	rooms      *rooms.Service
	read       *roomread.Service
	serverName string
	log        *slog.Logger
	tasks      *taskRunner
}

// New returns the service; Resume starts the deletions a restart left.
func New(st *store.Store, rs *rooms.Service, read *roomread.Service, serverName string, log *slog.Logger) *Service {
	s := &Service{st: st, rooms: rs, read: read, serverName: serverName, log: log}
	s.tasks = newTaskRunner(s)
	return s
}

// Close stops the running deletions (they resume at the next start) and
// waits for them.
func (s *Service) Close() { s.tasks.close() }

// ListQuery is a page of the room list.
type ListQuery = store.AdminRoomsQuery

// Orders are the room list's order_by values.
var Orders = store.AdminRoomOrders

// Room is a room of the list (Synapse's field names).
type Room struct {
	RoomID             string  `json:"room_id"`
	Name               *string `json:"name"`
	CanonicalAlias     *string `json:"canonical_alias"`
	JoinedMembers      int64   `json:"joined_members"`
	JoinedLocalMembers int64   `json:"joined_local_members"`
	Version            string  `json:"version"`
	Creator            string  `json:"creator"`
	Encryption         *string `json:"encryption"`
	Federatable        bool    `json:"federatable"`
	Public             bool    `json:"public"`
	JoinRules          *string `json:"join_rules"`
	GuestAccess        *string `json:"guest_access"`
	HistoryVisibility  *string `json:"history_visibility"`
	StateEvents        int64   `json:"state_events"`
	RoomType           *string `json:"room_type"`
}

// Details is a room's details.
type Details struct {
	Room
	Topic              *string `json:"topic"`
	Avatar             *string `json:"avatar"`
	JoinedLocalDevices int64   `json:"joined_local_devices"`
	Forgotten          bool    `json:"forgotten"`
}

func orNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func roomOf(r *store.AdminRoom, create []byte) Room {
	out := Room{RoomID: r.RoomID, Name: orNull(r.Name), CanonicalAlias: orNull(r.CanonicalAlias), JoinedMembers: r.JoinedMembers,
		JoinedLocalMembers: r.JoinedLocal, Version: r.RoomVersion, Creator: r.Creator, Encryption: orNull(r.Encryption),
		Federatable: true, Public: r.Published, JoinRules: orNull(r.JoinRule), GuestAccess: orNull(r.GuestAccess),
		HistoryVisibility: orNull(r.HistoryVisibility), StateEvents: r.StateEvents, RoomType: orNull(r.RoomType)}
	var c struct {
		Content struct {
			Federate *bool `json:"m.federate"`
		} `json:"content"`
	}
	if json.Unmarshal(create, &c) == nil && c.Content.Federate != nil {
		out.Federatable = *c.Content.Federate
	}
	return out
}

// List returns a page of rooms and how many match.
func (s *Service) List(ctx context.Context, q ListQuery) ([]Room, int64, error) {
	q.Server = s.serverName
	rows, total, err := s.st.ListAdminRooms(ctx, q)
	if err != nil {
		return nil, 0, err
	}
	ids := make([]string, len(rows))
	for i := range rows {
		ids[i] = rows[i].RoomID
	}
	creates, err := s.st.CreateEventPDUs(ctx, ids)
	if err != nil {
		return nil, 0, err
	}
	out := make([]Room, len(rows))
	for i := range rows {
		out[i] = roomOf(&rows[i], creates[rows[i].RoomID])
	}
	return out, total, nil
}

// CheckRoomID refuses what is not a room id.
func CheckRoomID(roomID string) error {
	if _, err := id.ParseRoomID(roomID); err != nil {
		return errcode.InvalidParam("invalid room id")
	}
	return nil
}

var errUnknownRoom = errcode.NotFound("room not found")

// Details returns a room's details.
func (s *Service) Details(ctx context.Context, roomID string) (*Details, error) {
	if err := CheckRoomID(roomID); err != nil {
		return nil, err
	}
	d, err := s.st.GetAdminRoom(ctx, roomID, s.serverName)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errUnknownRoom
	}
	if err != nil {
		return nil, err
	}
	creates, err := s.st.CreateEventPDUs(ctx, []string{roomID})
	if err != nil {
		return nil, err
	}
	return &Details{Room: roomOf(&d.AdminRoom, creates[roomID]), Topic: orNull(d.Topic), Avatar: orNull(d.AvatarURL),
		JoinedLocalDevices: d.JoinedLocalDevices, Forgotten: d.Forgotten}, nil
}

// known checks that a room id is valid and the room known here.
func (s *Service) known(ctx context.Context, roomID string) error {
	if err := CheckRoomID(roomID); err != nil {
		return err
	}
	if _, err := s.rooms.VersionOf(ctx, roomID); err != nil {
		if errors.Is(err, rooms.ErrUnknownRoom) {
			return errUnknownRoom
		}
		return err
	}
	return nil
}

// Members returns the users joined to a room.
func (s *Service) Members(ctx context.Context, roomID string) ([]string, error) {
	if err := s.known(ctx, roomID); err != nil {
		return nil, err
	}
	users, err := s.rooms.JoinedUsers(ctx, roomID)
	if errors.Is(err, rooms.ErrUnknownRoom) {
		return nil, errUnknownRoom
	}
	if users == nil {
		users = []string{}
	}
	return users, err
}

// State returns a room's current state events in the client format,
// those of one type when typ is not empty.
func (s *Service) State(ctx context.Context, roomID, typ string) ([]json.RawMessage, error) {
	if err := s.known(ctx, roomID); err != nil {
		return nil, err
	}
	st, err := s.rooms.CurrentStateIDs(ctx, roomID)
	if err != nil {
		return nil, err
	}
	if typ != "" {
		for k := range st {
			if k.Type != typ {
				delete(st, k)
			}
		}
	}
	out, err := s.read.RenderState(ctx, st, "", nil)
	if out == nil {
		out = []json.RawMessage{}
	}
	return out, err
}

// Messages pages a room's timeline as an administrator sees it: every
// event, whatever the history visibility.
func (s *Service) Messages(ctx context.Context, q roomread.MessagesRequest) (*roomread.Page, error) {
	if err := s.known(ctx, q.RoomID); err != nil {
		return nil, err
	}
	q.Admin = true
	return s.read.Messages(ctx, q)
}

// Block blocks (by: the administrator) or unblocks a room, known here or
// not.
func (s *Service) Block(ctx context.Context, roomID, by string, block bool) error {
	if err := CheckRoomID(roomID); err != nil {
		return err
	}
	return s.rooms.SetBlocked(ctx, roomID, by, block)
}

// BlockStatus reports whether a room is blocked and by whom.
func (s *Service) BlockStatus(ctx context.Context, roomID string) (string, bool, error) {
	if err := CheckRoomID(roomID); err != nil {
		return "", false, err
	}
	return s.rooms.Blocked(ctx, roomID)
}

// MakeRoomAdmin gives userID the highest power level a local member of
// the room has, joining them first (invited by that member when the room
// is not public). roomIDOrAlias may be a local alias.
func (s *Service) MakeRoomAdmin(ctx context.Context, roomIDOrAlias, userID string) error {
	roomID := roomIDOrAlias
	if strings.HasPrefix(roomIDOrAlias, "#") {
		if _, err := id.ParseRoomAlias(roomIDOrAlias); err != nil {
			return errcode.InvalidParam("invalid room alias")
		}
		r, err := s.rooms.LocalAlias(ctx, roomIDOrAlias)
		if err != nil {
			return err
		}
		roomID = r
	}
	if err := s.known(ctx, roomID); err != nil {
		return err
	}
	if _, err := id.ParseUserID(userID); err != nil || !s.rooms.IsLocal(userID) {
		return errcode.InvalidParam("user_id must be a local user")
	}
	if _, err := s.st.GetUser(ctx, userID); errors.Is(err, store.ErrNotFound) {
		return errcode.NotFound("user not found")
	} else if err != nil {
		return err
	}
	admin, level, err := s.rooms.HighestLocalPower(ctx, roomID)
	if err != nil {
		return err
	}
	if admin == "" {
		return errcode.InvalidParam("no local user of this room may change its power levels")
	}
	joined, err := s.rooms.IsJoined(ctx, roomID, userID)
	if err != nil {
		return err
	}
	if !joined {
		if _, err := s.rooms.ChangeMembership(ctx, rooms.MemberChange{RoomID: roomID, Sender: userID, Target: userID, Membership: "join"}); err != nil {
			if _, err := s.rooms.ChangeMembership(ctx, rooms.MemberChange{RoomID: roomID, Sender: admin, Target: userID, Membership: "invite"}); err != nil {
				return err
			}
			if _, err := s.rooms.ChangeMembership(ctx, rooms.MemberChange{RoomID: roomID, Sender: userID, Target: userID, Membership: "join"}); err != nil {
				return err
			}
		}
	}
	if admin == userID {
		return nil
	}
	pl, err := s.rooms.CurrentStateEvent(ctx, roomID, "m.room.power_levels", "")
	if err != nil {
		return err
	}
	var content map[string]json.RawMessage
	if err := json.Unmarshal(pl.Content, &content); err != nil {
		return err
	}
	users := map[string]json.RawMessage{}
	_ = json.Unmarshal(content["users"], &users)
	if level > 1<<52 { // the admin is a creator (room version 12): the highest level others hold
		level = 100
		for _, l := range users {
			var n int64
			if json.Unmarshal(l, &n) == nil && n > level {
				level = n
			}
		}
	}
	users[userID], _ = json.Marshal(level)
	content["users"], _ = json.Marshal(users)
	raw, _ := json.Marshal(content)
	empty := ""
	_, err = s.rooms.SendState(ctx, roomID, rooms.Proto{Type: "m.room.power_levels", StateKey: &empty, Sender: admin, Content: raw})
	return err
}
