package rooms

import (
	"context"
	"encoding/json"
	"errors"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// MemberChange is a membership event a user asks for.
type MemberChange struct {
	RoomID     string
	Sender     string
	Target     string
	Membership string // join | invite | leave | ban | knock
	Reason     string
	IsDirect   bool
	// Servers to ask when the room is not known here (join, knock).
	Servers []string
	// Extra is content the member adds to their own join or knock event
	// (clients and bridges set custom keys there); the keys the protocol
	// gives meaning to are not taken from it.
	Extra map[string]json.RawMessage
}

// reservedMemberKeys are the member-event keys a request's extra content
// may not set.
var reservedMemberKeys = map[string]bool{"membership": true, "reason": true, "join_authorised_via_users_server": true, "third_party_invite": true, "third_party_signed": true}

// AddExtra copies a change's extra content into an event's content.
func (c *MemberChange) AddExtra(content map[string]any) {
	for k, v := range c.Extra {
		if !reservedMemberKeys[k] {
			content[k] = v
		}
	}
}

// ChangeMembership sends a membership event. Joining a room one is already
// in, or leaving a room one has already left, changes nothing.
func (s *Service) ChangeMembership(ctx context.Context, c MemberChange) (string, error) {
	if c.Membership == "invite" {
		if err := s.CheckInvite(ctx, c.Target, c.Sender); err != nil {
			return "", err
		}
	}
	if err := s.checkBlocked(ctx, c); err != nil {
		return "", err
	}
	r, err := s.LockRoom(ctx, c.RoomID)
	if err != nil {
		if remote := s.remoteMembership(c); errors.Is(err, ErrUnknownRoom) && remote != nil {
			return remote(ctx, c)
		}
		if errors.Is(err, ErrUnknownRoom) && c.Membership == "join" {
			return "", errcode.NotFound("no known servers for room %s", c.RoomID)
		}
		return "", err
	}
	defer r.mu.Unlock()
	cur := r.state[pdu.StateTuple{Type: "m.room.member", StateKey: c.Target}]
	curMembership := ""
	if cur != nil {
		curMembership = MembershipOf(cur)
	}
	if c.Sender == c.Target && c.Reason == "" && curMembership == c.Membership && (c.Membership == "join" || c.Membership == "leave") {
		return cur.ID, nil
	}
	if c.Membership == "leave" && c.Sender == c.Target && (curMembership == "" || curMembership == "leave") {
		return "", errcode.Forbidden("you are not a member of this room")
	}
	content := map[string]any{"membership": c.Membership}
	if c.Reason != "" {
		content["reason"] = c.Reason
	}
	if c.IsDirect {
		content["is_direct"] = true
	}
	if c.Membership == "join" || c.Membership == "invite" || c.Membership == "knock" {
		// Member events carry the target's profile.
		if u, err := s.store.GetUser(ctx, c.Target); err == nil {
			if u.DisplayName.Valid {
				content["displayname"] = u.DisplayName.String
			}
			if u.AvatarURL.Valid {
				content["avatar_url"] = u.AvatarURL.String
			}
		}
	}
	c.AddExtra(content)
	if c.Membership == "join" && c.Sender == c.Target && curMembership != "join" && curMembership != "invite" {
		if via := s.RestrictedJoinAuthoriser(ctx, r, c.Target); via != "" {
			content["join_authorised_via_users_server"] = via
		}
	}
	target := c.Target
	b := s.newBatch(r)
	ev, err := s.add(ctx, b, Proto{Type: "m.room.member", StateKey: &target, Sender: c.Sender, Content: mustJSON(content)})
	if err != nil {
		return "", err
	}
	if c.Membership == "invite" && s.federated() && serverOf(c.Target) != s.serverName {
		// The invitee's server countersigns it; the room lock is released
		// during the request, since that server may call back about this
		// room (get_missing_events), and the event then goes through the
		// inbound pipeline, which copes with the room having moved on.
		stripped := inviteRoomState(b, ev)
		v := r.version
		r.mu.Unlock()
		defer r.mu.Lock()
		return s.remote.Invite(ctx, v, ev, stripped)
	}
	if err := s.Commit(ctx, b); err != nil {
		return "", err
	}
	return ev.ID, nil
}

// Forget hides a room the user has left from their room lists.
func (s *Service) Forget(ctx context.Context, roomID, userID string) error {
	m, err := s.store.GetMembership(ctx, roomID, userID)
	if errors.Is(err, store.ErrNotFound) {
		return errcode.NotFound("you have never been in this room")
	}
	if err != nil {
		return err
	}
	if m.Membership == "join" || m.Membership == "invite" || m.Membership == "knock" {
		return errcode.Unknown("you must leave the room before forgetting it")
	}
	return s.store.InTx(ctx, func(tx *store.Tx) error {
		s.membershipsChanged(tx, userID)
		return tx.ForgetRoom(ctx, roomID, userID)
	})
}

// UpdateProfile rewrites the user's member event in every joined room with
// a new display name and avatar.
func (s *Service) UpdateProfile(ctx context.Context, userID, displayName, avatarURL string) error {
	ms, err := s.store.UserMemberships(ctx, userID)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range ms {
		if m.Membership != "join" {
			continue
		}
		if err := s.updateMemberProfile(ctx, m.RoomID, userID, displayName, avatarURL); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Service) updateMemberProfile(ctx context.Context, roomID, userID, displayName, avatarURL string) error {
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return err
	}
	defer r.mu.Unlock()
	cur := r.state[pdu.StateTuple{Type: "m.room.member", StateKey: userID}]
	if cur == nil || MembershipOf(cur) != "join" {
		return nil
	}
	var content map[string]any
	if err := json.Unmarshal(cur.Content, &content); err != nil || content == nil {
		content = map[string]any{"membership": "join"}
	}
	delete(content, "displayname")
	delete(content, "avatar_url")
	if displayName != "" {
		content["displayname"] = displayName
	}
	if avatarURL != "" {
		content["avatar_url"] = avatarURL
	}
	delete(content, "reason")
	delete(content, "join_authorised_via_users_server")
	b := s.newBatch(r)
	if _, err := s.add(ctx, b, Proto{Type: "m.room.member", StateKey: &userID, Sender: userID, Content: mustJSON(content)}); err != nil {
		return err
	}
	return s.Commit(ctx, b)
}

// LeaveAll makes a user leave (or reject invites to) every room; used when
// an account is deactivated.
func (s *Service) LeaveAll(ctx context.Context, userID string) error {
	ms, err := s.store.UserMemberships(ctx, userID)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range ms {
		if m.Membership == "join" || m.Membership == "invite" || m.Membership == "knock" {
			if _, err := s.ChangeMembership(ctx, MemberChange{RoomID: m.RoomID, Sender: userID, Target: userID, Membership: "leave"}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// JoinedUsers returns the users joined to a room now.
func (s *Service) JoinedUsers(ctx context.Context, roomID string) ([]string, error) {
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.joined))
	for u := range r.joined {
		out = append(out, u)
	}
	return out, nil
}

// RestrictedJoinAuthoriser picks, for a join to a restricted room by a user
// who is in one of the rooms its join rules allow, a local member who may
// invite and so authorises the join ("Restricted rooms"). It returns "" when
// the room is not restricted or no allow condition holds. The caller holds
// r.mu.
func (s *Service) RestrictedJoinAuthoriser(ctx context.Context, r *Room, userID string) string {
	if !s.meetsJoinRules(ctx, r, userID) {
		return ""
	}
	return authoriserOn(r, s.serverName)
}

// authoriserOn picks the local member of a room who authorises restricted
// joins: the most powerful who may invite ("" when none). Caller holds
// r.mu.
func authoriserOn(r *Room, serverName string) string {
	pl := eventauth.RoomPowerLevels(r.state[pdu.StateTuple{Type: "m.room.create"}], r.state[pdu.StateTuple{Type: "m.room.power_levels"}])
	best, bestLevel := "", eventauth.Level(0)
	for u := range r.joined {
		if serverOf(u) != serverName {
			continue
		}
		if l := pl.UserLevel(u); l >= pl.Invite() && (best == "" || l > bestLevel || (l == bestLevel && u < best)) {
			best, bestLevel = u, l
		}
	}
	return best
}

// meetsJoinRules reports whether a room's join rules are restricted (or
// knock_restricted) in a version that has them, and the user is joined to
// one of the rooms they allow. Caller holds r.mu.
func (s *Service) meetsJoinRules(ctx context.Context, r *Room, userID string) bool {
	jr := r.state[pdu.StateTuple{Type: "m.room.join_rules"}]
	if jr == nil {
		return false
	}
	var rules struct {
		JoinRule string `json:"join_rule"`
		Allow    []struct {
			Type   string `json:"type"`
			RoomID string `json:"room_id"`
		} `json:"allow"`
	}
	if json.Unmarshal(jr.Content, &rules) != nil {
		return false
	}
	if rules.JoinRule != "restricted" && rules.JoinRule != "knock_restricted" {
		return false
	}
	if !(r.version.Restricted || (rules.JoinRule == "knock_restricted" && r.version.KnockRestricted)) {
		return false
	}
	for _, a := range rules.Allow {
		if a.Type != "m.room_membership" || a.RoomID == "" {
			continue
		}
		// What this server knows of a room it has left may be stale.
		if m, err := s.store.GetMembership(ctx, a.RoomID, userID); err == nil && m.Membership == "join" {
			if in, err := s.store.ServerHasMember(ctx, a.RoomID, s.serverName); err == nil && in {
				return true
			}
		}
	}
	return false
}
