package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// Account data types with which a user chooses whom they accept invites
// from: the spec's (v1.18) and MSC4155's, from which it came.
const (
	InvitePermissionType         = "m.invite_permission_config"
	InvitePermissionUnstableType = "org.matrix.msc4155.invite_permission_config"
)

// InviteAction is what becomes of an invite for a user.
type InviteAction int

// Invite actions: delivered, accepted but never shown to the user, or
// refused with M_INVITE_BLOCKED.
const (
	InviteAllow InviteAction = iota
	InviteIgnore
	InviteBlock
)

// invitePolicy is a user's parsed choice. blockAll is the spec's
// default_action "block"; the lists are MSC4155's globs.
type invitePolicy struct {
	blockAll                                       bool
	allowedUsers, ignoredUsers, blockedUsers       []string
	allowedServers, ignoredServers, blockedServers []string
}

// parseInvitePolicy reads both account data contents (nil when absent);
// it returns nil when neither restricts anything. Invalid parts count as
// absent, as the spec asks of default_action.
func parseInvitePolicy(stable, unstable []byte) *invitePolicy {
	p := &invitePolicy{}
	var s struct {
		DefaultAction any `json:"default_action"`
	}
	if stable != nil && json.Unmarshal(stable, &s) == nil {
		p.blockAll = s.DefaultAction == "block"
	}
	var u struct {
		AllowedUsers   any `json:"allowed_users"`
		IgnoredUsers   any `json:"ignored_users"`
		BlockedUsers   any `json:"blocked_users"`
		AllowedServers any `json:"allowed_servers"`
		IgnoredServers any `json:"ignored_servers"`
		BlockedServers any `json:"blocked_servers"`
	}
	if unstable != nil && json.Unmarshal(unstable, &u) == nil {
		p.allowedUsers, p.ignoredUsers, p.blockedUsers = globs(u.AllowedUsers), globs(u.IgnoredUsers), globs(u.BlockedUsers)
		p.allowedServers, p.ignoredServers, p.blockedServers = globs(u.AllowedServers), globs(u.IgnoredServers), globs(u.BlockedServers)
	}
	if !p.blockAll && len(p.ignoredUsers)+len(p.blockedUsers)+len(p.ignoredServers)+len(p.blockedServers) == 0 {
		return nil
	}
	return p
}

// globs keeps the strings of a JSON array (null or another type: none).
func globs(v any) []string {
	arr, _ := v.([]any)
	var out []string
	for _, e := range arr {
		if s, ok := e.(string); ok && s != "" && len(out) < 1000 {
			out = append(out, s)
		}
	}
	return out
}

// decide applies the policy to an inviter: default_action "block" refuses
// every invite; otherwise the first MSC4155 list that matches decides, in
// its order (users before servers; allow, then ignore, then block).
func (p *invitePolicy) decide(inviter string) InviteAction {
	if p == nil {
		return InviteAllow
	}
	if p.blockAll {
		return InviteBlock
	}
	server := serverOf(inviter)
	for _, step := range []struct {
		patterns []string
		subject  string
		action   InviteAction
	}{
		{p.allowedUsers, inviter, InviteAllow},
		{p.ignoredUsers, inviter, InviteIgnore},
		{p.blockedUsers, inviter, InviteBlock},
		{p.allowedServers, server, InviteAllow},
		{p.ignoredServers, server, InviteIgnore},
		{p.blockedServers, server, InviteBlock},
	} {
		for _, g := range step.patterns {
			if globMatch(g, step.subject) {
				return step.action
			}
		}
	}
	return InviteAllow
}

// InviteAction tells what becomes of an invite of invitee (a local user)
// by inviter under invitee's invite permission choices. Choices are
// cached until ForgetInvitePolicy.
func (s *Service) InviteAction(ctx context.Context, invitee, inviter string) (InviteAction, error) {
	if invitee == inviter {
		return InviteAllow, nil
	}
	if v, ok := s.invitePolicies.Load(invitee); ok {
		return v.(*invitePolicy).decide(inviter), nil
	}
	// A change committed while we read must not leave the old choice
	// cached: keep what we read only if no ForgetInvitePolicy ran since.
	gen := s.invitePolicyGen(invitee)
	before := gen.Load()
	read := func(typ string) ([]byte, error) {
		c, err := s.store.GetAccountData(ctx, invitee, "", typ)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		return c, err
	}
	stable, err := read(InvitePermissionType)
	if err != nil {
		return InviteAllow, err
	}
	unstable, err := read(InvitePermissionUnstableType)
	if err != nil {
		return InviteAllow, err
	}
	p := parseInvitePolicy(stable, unstable)
	if gen.Load() == before {
		s.invitePolicies.Store(invitee, p)
	}
	return p.decide(inviter), nil
}

// ForgetInvitePolicy drops a user's cached invite permission choices
// after their account data changed.
func (s *Service) ForgetInvitePolicy(userID string) {
	s.invitePolicyGen(userID).Add(1)
	s.invitePolicies.Delete(userID)
}

func (s *Service) invitePolicyGen(userID string) *atomic.Int64 {
	v, _ := s.invitePolicyGens.LoadOrStore(userID, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// CheckInvite refuses an invite the invitee blocks (local invitees only).
func (s *Service) CheckInvite(ctx context.Context, invitee, inviter string) error {
	if serverOf(invitee) != s.serverName {
		return nil
	}
	a, err := s.InviteAction(ctx, invitee, inviter)
	if err != nil {
		return err
	}
	if a == InviteBlock {
		return errInviteBlocked(invitee)
	}
	return nil
}

func errInviteBlocked(invitee string) *errcode.Error {
	return &errcode.Error{Code: "M_INVITE_BLOCKED", Status: http.StatusForbidden, Message: invitee + " does not accept invites from you"}
}

// membershipOfContent reads the membership of member event content.
func membershipOfContent(content json.RawMessage) string {
	var c struct {
		Membership string `json:"membership"`
	}
	_ = json.Unmarshal(content, &c)
	return c.Membership
}
