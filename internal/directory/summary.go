package directory

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/store"
)

// maxSummaryServers bounds the servers one summary request asks.
const maxSummaryServers = 5

// RoomSummary is the answer of GET /room_summary/{roomIdOrAlias}.
type RoomSummary struct {
	PublicRoom
	AllowedRoomIDs []string `json:"allowed_room_ids,omitempty"`
	Encryption     string   `json:"encryption,omitempty"`
	RoomVersion    string   `json:"room_version,omitempty"`
	// Membership is the caller's membership ("leave" when they have
	// none); absent for anonymous callers.
	Membership string `json:"membership,omitempty"`
}

// SummaryRequest asks for one room's summary. UserID is "" for an
// anonymous caller; Via are servers to ask when the room is not known
// here.
type SummaryRequest struct {
	UserID string
	RoomID string
	Via    []string
}

// Summary describes a room to a user who could see it in a space
// hierarchy: a member or invitee, or anyone when the room is world
// readable, public or knockable, or a member of an allowed room of a
// restricted one. Anonymous callers see only public, knockable and world
// readable rooms. Rooms not known here are asked of other servers through
// their /hierarchy; any room the caller may not see is "not found", so
// that its existence is not revealed.
func (s *Service) Summary(ctx context.Context, req SummaryRequest) (*RoomSummary, error) {
	if _, err := id.ParseRoomID(req.RoomID); err != nil {
		return nil, errcode.InvalidParam("invalid room id")
	}
	acc := &access{membership: map[string]string{}}
	if req.UserID != "" {
		var err error
		if acc, err = s.userAccess(ctx, req.UserID); err != nil {
			return nil, err
		}
	}
	nodes := map[string]*node{}
	if err := s.loadLocal(ctx, []string{req.RoomID}, nodes); err != nil {
		return nil, err
	}
	n := nodes[req.RoomID]
	if n == nil {
		if req.UserID == "" {
			// Anonymous callers do not get to make us contact other servers.
			return nil, errcode.NotFound("room not found")
		}
		// An invite or knock to a room not known here names servers in
		// the room and carries some of its state.
		var rm *store.RemoteMembership
		if m, err := s.store.GetRemoteMembership(ctx, req.RoomID, req.UserID); err == nil {
			rm = m
			var servers []string
			_ = json.Unmarshal(m.Servers, &servers)
			req.Via = append(slices.Clone(req.Via), servers...)
		} else if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		n = s.remoteSummary(ctx, req.RoomID, req.Via)
		if n == nil && rm != nil {
			n = strippedSummary(req.RoomID, rm.Stripped)
		}
	}
	if n == nil || !acc.mayView(&n.room) || (req.UserID == "" && !openToAnyone(&n.room)) {
		return nil, errcode.NotFound("room not found")
	}
	out := &RoomSummary{PublicRoom: n.room.PublicRoom, Encryption: n.room.Encryption, RoomVersion: n.room.RoomVersion}
	if out.JoinRule == "restricted" || out.JoinRule == "knock_restricted" {
		out.AllowedRoomIDs = n.room.AllowedRoomIDs
	}
	if req.UserID != "" {
		out.Membership = acc.membership[req.RoomID]
		if out.Membership == "" {
			out.Membership = "leave"
		}
	}
	return out, nil
}

// openToAnyone: rooms whose summary the spec lets anonymous callers see.
func openToAnyone(r *HierarchyRoom) bool {
	switch r.JoinRule {
	case "public", "knock", "knock_restricted":
		return true
	}
	return r.WorldReadable
}

// remoteSummary asks the via servers (or the server of the room id) for
// the room's hierarchy and returns the room, or nil.
func (s *Service) remoteSummary(ctx context.Context, roomID string, via []string) *node {
	if s.remote == nil {
		return nil
	}
	if len(via) == 0 {
		if i := strings.IndexByte(roomID, ':'); i > 0 {
			via = []string{roomID[i+1:]}
		}
	}
	asked := 0
	for _, server := range via {
		if asked >= maxSummaryServers {
			break
		}
		if id.ValidServerName(server) != nil || server == s.cfg.ServerName {
			continue
		}
		asked++
		h, err := s.fetchRemoteHierarchy(ctx, server, roomID, false)
		if err != nil {
			s.log.Info("remote room summary failed", "server", server, "room", roomID, "err", err)
			continue
		}
		if h.Room.RoomID == roomID {
			return remoteNode(&h.Room)
		}
	}
	return nil
}

// strippedSummary describes a room from the stripped state of an invite
// or knock (its member count unknown), or returns nil.
func strippedSummary(roomID string, stripped []byte) *node {
	var evs []json.RawMessage
	if json.Unmarshal(stripped, &evs) != nil {
		return nil
	}
	st := map[string][]byte{}
	for _, raw := range evs {
		var e struct {
			Type     string  `json:"type"`
			StateKey *string `json:"state_key"`
		}
		if json.Unmarshal(raw, &e) == nil && e.StateKey != nil && *e.StateKey == "" && e.Type != "" {
			st[e.Type] = raw
		}
	}
	if len(st) == 0 {
		return nil
	}
	sum := buildSummary(roomID, st)
	return &node{room: summaryRoom(&sum)}
}
