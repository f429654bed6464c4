package rooms

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"strings"

	"luxchat/internal/matrix/id"
	"luxchat/internal/matrix/pdu"
)

// Which servers take part in a room: its server ACL, the servers with
// joined members.

// ServerACLAllows reports whether a room's m.room.server_acl lets server
// take part in it. Rooms without an ACL allow every server.
func (s *Service) ServerACLAllows(ctx context.Context, roomID, server string) (bool, error) {
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return false, err
	}
	acl := r.state[pdu.StateTuple{Type: "m.room.server_acl"}]
	r.mu.Unlock()
	if acl == nil {
		return true, nil
	}
	return aclAllows(acl.Content, server), nil
}

// aclAllows applies m.room.server_acl content to a server name (its port,
// if any, ignored).
func aclAllows(content json.RawMessage, server string) bool {
	var c struct {
		Allow           []any `json:"allow"`
		Deny            []any `json:"deny"`
		AllowIPLiterals *bool `json:"allow_ip_literals"`
	}
	if json.Unmarshal(content, &c) != nil {
		return true
	}
	host := server
	if port := id.ServerName(server).Port(); port != "" {
		host = strings.TrimSuffix(server, ":"+port)
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if c.AllowIPLiterals != nil && !*c.AllowIPLiterals {
		if _, err := netip.ParseAddr(host); err == nil {
			return false
		}
	}
	for _, d := range c.Deny {
		if p, ok := d.(string); ok && globMatch(p, host) {
			return false
		}
	}
	for _, a := range c.Allow {
		if p, ok := a.(string); ok && globMatch(p, host) {
			return true
		}
	}
	return false
}

// globMatch matches with '*' (any run) and '?' (one character), with no
// escapes (server ACLs, MSC4155 invite rules). It backtracks only to the
// last '*', so user-chosen patterns cost O(len(pattern)·len(s)) at worst.
func globMatch(pattern, s string) bool {
	p, t := []rune(pattern), []rune(s)
	pi, ti, star, mark := 0, 0, -1, 0
	for ti < len(t) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == t[ti]):
			pi++
			ti++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, ti
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			ti = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// ServerInRoom reports whether a user of server is joined to a room now.
func (s *Service) ServerInRoom(ctx context.Context, roomID, server string) (bool, error) {
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return false, err
	}
	defer r.mu.Unlock()
	return serverJoined(r.joined, server), nil
}

func serverJoined(joined map[string]struct{}, server string) bool {
	suffix := ":" + server
	for u := range joined {
		if strings.HasSuffix(u, suffix) {
			return true
		}
	}
	return false
}

// RoomServers lists the servers with joined members in a room, ours
// first.
func (s *Service) RoomServers(ctx context.Context, roomID string) ([]string, error) {
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	out := []string{s.serverName}
	for u := range r.joined {
		if sv := serverOf(u); !slices.Contains(out, sv) {
			out = append(out, sv)
		}
	}
	for _, sv := range s.partialServers(roomID) {
		if !slices.Contains(out, sv) {
			out = append(out, sv)
		}
	}
	return out, nil
}

// PDUs returns the stored PDUs of events by id (unknown ones skipped).
func (s *Service) PDUs(ctx context.Context, ids []string) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, 0, len(ids))
	var missing []string
	for _, id := range ids {
		if ev, ok := s.events.get(id); ok {
			out = append(out, ev.JSON())
		} else {
			missing = append(missing, id)
		}
	}
	// A stored PDU is the canonical JSON parsing would give back (redacted
	// when the event was): no need to parse it.
	rows, err := s.store.GetEvents(ctx, missing)
	if err != nil {
		return nil, err
	}
	for _, row := range rows {
		out = append(out, json.RawMessage(row.JSON()))
	}
	return out, nil
}
