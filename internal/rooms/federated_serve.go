package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"sort"
	"strings"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// What other servers may read: events of rooms they have (or had, per
// history visibility) a member in, as the server-server API's history
// visibility rules for servers describe.

// maxServeAuthChain bounds the auth chain served for one request.
const maxServeAuthChain = 20000

// ServerACLAllows reports whether a room's m.room.server_acl lets server
// take part in it. Rooms without an ACL allow every server.
func (s *Service) ServerACLAllows(ctx context.Context, roomID, server string) (bool, error) {
	r, err := s.lockRoom(ctx, roomID)
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
	r, err := s.lockRoom(ctx, roomID)
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
	r, err := s.lockRoom(ctx, roomID)
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

// serverView answers history visibility questions for one server in one
// room; results are cached per state group.
type serverView struct {
	s       *Service
	server  string
	roomID  string
	joined  bool // the server has a joined member now
	byGroup map[int64]bool
}

func (s *Service) newServerView(ctx context.Context, roomID, server string) (*serverView, error) {
	in, err := s.ServerInRoom(ctx, roomID, server)
	if err != nil {
		return nil, err
	}
	return &serverView{s: s, server: server, roomID: roomID, joined: in, byGroup: map[int64]bool{}}, nil
}

// canSee applies the history visibility rules ("Server behaviour") with
// the server's users as the users: world_readable; a user of the server
// joined (or, for invited, invited) in the state before the event; for
// shared, a user of the server joined now (which approximates "joined at
// any point after the event").
func (v *serverView) canSee(ctx context.Context, row *store.EventRow) (bool, error) {
	if row.RoomID != v.roomID {
		return false, nil
	}
	if row.StateGroup < 0 {
		return v.joined, nil // an outlier: state unknown
	}
	if ok, seen := v.byGroup[row.StateGroup]; seen {
		return ok, nil
	}
	hv, err := v.s.stateEntry(ctx, row.RoomID, row.StateGroup, pdu.StateTuple{Type: "m.room.history_visibility"})
	if err != nil {
		return false, err
	}
	vis := historyVisibility(hv)
	ok := vis == "world_readable" || (vis == "shared" && v.joined)
	if !ok && row.StateGroup > 0 {
		st, err := v.s.store.StateGroup(ctx, row.StateGroup)
		if err != nil {
			return false, err
		}
		var ids []string
		for k, x := range st {
			if k.Type == "m.room.member" && serverOf(k.StateKey) == v.server {
				ids = append(ids, x)
			}
		}
		evs, err := v.s.Events(ctx, ids)
		if err != nil {
			return false, err
		}
		for _, ev := range evs {
			m := membershipOf(ev)
			if m == "join" || (m == "invite" && vis == "invited") {
				ok = true
				break
			}
		}
	}
	v.byGroup[row.StateGroup] = ok
	return ok, nil
}

var errNotVisible = errcode.Forbidden("this server may not see that event")

// eventForServer returns a stored event a server may see.
func (s *Service) eventForServer(ctx context.Context, server, roomID, eventID string) (*store.EventRow, *serverView, error) {
	row, err := s.store.GetEvent(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && roomID != "" && row.RoomID != roomID) {
		return nil, nil, errcode.NotFound("unknown event")
	}
	if err != nil {
		return nil, nil, err
	}
	v, err := s.newServerView(ctx, row.RoomID, server)
	if err != nil {
		return nil, nil, err
	}
	ok, err := v.canSee(ctx, row)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, errNotVisible
	}
	return row, v, nil
}

// EventForServer returns one event (as its PDU) to a server that may see
// it, and the room it belongs to.
func (s *Service) EventForServer(ctx context.Context, server, eventID string) (json.RawMessage, string, error) {
	row, _, err := s.eventForServer(ctx, server, "", eventID)
	if err != nil {
		return nil, "", err
	}
	return json.RawMessage(row.PDU), row.RoomID, nil
}

// StateForServer returns the state before an event and the auth chain of
// that state, as ids, to a server that may see the event or that is in
// the room now: a server that joined with partial state needs the state
// before its join even when history visibility hides the event from it.
func (s *Service) StateForServer(ctx context.Context, server, roomID, eventID string) (state, authChain []string, err error) {
	var row *store.EventRow
	if in, ierr := s.ServerInRoom(ctx, roomID, server); ierr == nil && in {
		row, err = s.store.GetEvent(ctx, eventID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && row.RoomID != roomID) {
			return nil, nil, errcode.NotFound("unknown event")
		}
	} else {
		row, _, err = s.eventForServer(ctx, server, roomID, eventID)
	}
	if err != nil {
		return nil, nil, err
	}
	if row.StateGroup < 0 {
		return nil, nil, errcode.NotFound("the state at that event is not known here")
	}
	st := store.StateMap{}
	if row.StateGroup > 0 {
		if st, err = s.store.StateGroup(ctx, row.StateGroup); err != nil {
			return nil, nil, err
		}
	}
	for _, x := range st {
		state = append(state, x)
	}
	sort.Strings(state)
	chain, err := s.authChain(ctx, state)
	if err != nil {
		return nil, nil, err
	}
	return state, chain, nil
}

// EventAuthForServer returns the auth chain of an event.
func (s *Service) EventAuthForServer(ctx context.Context, server, roomID, eventID string) ([]string, error) {
	if _, _, err := s.eventForServer(ctx, server, roomID, eventID); err != nil {
		return nil, err
	}
	return s.authChain(ctx, []string{eventID})
}

// authChain returns the ids of every event reachable through auth_events
// from the given events (which are not included unless reached).
func (s *Service) authChain(ctx context.Context, from []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	frontier := from
	for len(frontier) > 0 {
		evs, err := s.Events(ctx, frontier)
		if err != nil {
			return nil, err
		}
		frontier = nil
		for _, ev := range evs {
			auth := ev.AuthEvents
			if ev.Version.RoomIDFromCreate && ev.Type != "m.room.create" && len(ev.RoomID) > 1 {
				// The room id names the create event, an implicit auth event.
				auth = append(slices.Clone(auth), "$"+ev.RoomID[1:])
			}
			for _, a := range auth {
				if !seen[a] {
					seen[a] = true
					out = append(out, a)
					frontier = append(frontier, a)
				}
			}
		}
		if len(out) > maxServeAuthChain {
			return nil, errcode.TooLarge("auth chain too large")
		}
	}
	sort.Strings(out)
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
		out = append(out, json.RawMessage(row.PDU))
	}
	return out, nil
}

// walkPrev walks the event graph backwards from start through
// prev_events, breadth first, returning the visible events it meets (up
// to limit); stop events are neither returned nor walked through.
func (s *Service) walkPrev(ctx context.Context, server, roomID string, start, stop []string, includeStart bool, limit int, minDepth int64) ([]*store.EventRow, error) {
	v, err := s.newServerView(ctx, roomID, server)
	if err != nil {
		return nil, err
	}
	version, err := s.versionOf(ctx, roomID)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, x := range stop {
		seen[x] = true
	}
	var frontier []string
	if includeStart {
		frontier = slices.Clone(start)
	} else {
		rows, err := s.store.GetEvents(ctx, start)
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			if row.RoomID != roomID {
				continue
			}
			seen[row.EventID] = true
			ev, err := s.parseRow(ctx, row)
			if err != nil {
				return nil, err
			}
			frontier = append(frontier, ev.PrevEvents...)
		}
	}
	var out []*store.EventRow
	for len(frontier) > 0 && len(out) < limit {
		var ids []string
		for _, x := range frontier {
			if !seen[x] {
				seen[x] = true
				ids = append(ids, x)
			}
		}
		rows, err := s.store.GetEvents(ctx, ids)
		if err != nil {
			return nil, err
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].Depth > rows[j].Depth })
		frontier = nil
		for _, row := range rows {
			if row.RoomID != roomID || row.Depth < minDepth {
				continue
			}
			ok, err := v.canSee(ctx, row)
			if err != nil {
				return nil, err
			}
			if !ok {
				// The server gets the event's skeleton: it still needs it
				// for the room's graph, but not what was said before it
				// could see the room.
				redacted, err := pdu.Redact(row.PDU, version)
				if err != nil {
					return nil, err
				}
				copied := *row
				copied.PDU = redacted
				row = &copied
			}
			if len(out) < limit {
				out = append(out, row)
			}
			ev, err := s.parseRow(ctx, row)
			if err != nil {
				return nil, err
			}
			frontier = append(frontier, ev.PrevEvents...)
		}
	}
	return out, nil
}

// Backfill returns up to limit events preceding (and including) the given
// ones, newest first.
func (s *Service) Backfill(ctx context.Context, server, roomID string, from []string, limit int) ([]json.RawMessage, error) {
	if _, err := s.versionOf(ctx, roomID); err != nil {
		return nil, err
	}
	rows, err := s.walkPrev(ctx, server, roomID, from, nil, true, limit, 0)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(rows))
	for _, row := range rows {
		out = append(out, row.PDU)
	}
	return out, nil
}

// MissingEvents returns up to limit events before latest and after
// earliest, oldest first (get_missing_events).
func (s *Service) MissingEvents(ctx context.Context, server, roomID string, earliest, latest []string, limit int, minDepth int64) ([]json.RawMessage, error) {
	if _, err := s.versionOf(ctx, roomID); err != nil {
		return nil, err
	}
	rows, err := s.walkPrev(ctx, server, roomID, latest, earliest, false, limit, minDepth)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Depth < rows[j].Depth })
	out := make([]json.RawMessage, 0, len(rows))
	for _, row := range rows {
		out = append(out, row.PDU)
	}
	return out, nil
}
