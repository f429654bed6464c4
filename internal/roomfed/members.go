package roomfed

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"luxchat/internal/federation"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Membership handshakes with other servers: make_join/send_join,
// make_leave/send_leave, make_knock/send_knock and invites, on both sides.

// MakeMembership builds the template of a membership event (join, leave
// or knock) that a user of origin asks for, checked against the room's
// current state. versions are the room versions the asking server
// supports (ignored for leave).
func (s *Service) MakeMembership(ctx context.Context, origin, roomID, userID, membership string, versions []string) (string, json.RawMessage, error) {
	if serverOf(userID) != origin {
		return "", nil, errcode.Forbidden("user %s is not on the requesting server", userID)
	}
	r, err := s.rooms.LockRoom(ctx, roomID)
	if err != nil {
		return "", nil, err
	}
	defer r.Unlock()
	if membership != "leave" && s.rooms.IsPartialState(roomID) {
		return "", nil, errPartialState
	}
	if membership != "leave" && !slices.Contains(versions, r.Version().ID) {
		return "", nil, errcode.IncompatibleRoomVersion("room version %s is not supported by your server", r.Version().ID).With("room_version", r.Version().ID)
	}
	if membership == "knock" && !r.Version().Knock {
		return "", nil, errcode.IncompatibleRoomVersion("room version %s does not support knocking", r.Version().ID).With("room_version", r.Version().ID)
	}
	if !r.ServerJoined(s.serverName) {
		return "", nil, errcode.NotFound("this server is not in the room")
	}
	content := map[string]any{"membership": membership}
	if membership == "join" {
		cur := r.State(pdu.StateTuple{Type: "m.room.member", StateKey: userID})
		if cur == nil || (rooms.MembershipOf(cur) != "invite" && rooms.MembershipOf(cur) != "join") {
			if restrictedRoom(r) {
				via := s.rooms.RestrictedJoinAuthoriser(ctx, r, userID)
				if via == "" {
					return "", nil, &errcode.Error{Code: "M_UNABLE_TO_AUTHORISE_JOIN", Status: http.StatusBadRequest,
						Message: "the user is not in any room the join rules allow, as far as this server knows"}
				}
				content["join_authorised_via_users_server"] = via
			}
		}
	}
	target := userID
	ev, err := s.rooms.BuildEvent(ctx, r, rooms.Proto{Type: "m.room.member", StateKey: &target, Sender: userID, Content: mustJSON(content)})
	if err != nil {
		return "", nil, err
	}
	var tmpl map[string]json.RawMessage
	if err := json.Unmarshal(ev.JSON(), &tmpl); err != nil {
		return "", nil, err
	}
	delete(tmpl, "signatures")
	delete(tmpl, "hashes")
	delete(tmpl, "event_id")
	return r.Version().ID, mustJSON(tmpl), nil
}

// restrictedRoom reports whether a room's join rule is restricted (or
// knock_restricted) in a version that has it. Caller holds r's lock.
func restrictedRoom(r *rooms.Room) bool {
	jr := r.State(pdu.StateTuple{Type: "m.room.join_rules"})
	if jr == nil {
		return false
	}
	var c struct {
		JoinRule string `json:"join_rule"`
	}
	_ = json.Unmarshal(jr.Content, &c)
	return (c.JoinRule == "restricted" && r.Version().Restricted) || (c.JoinRule == "knock_restricted" && r.Version().KnockRestricted)
}

// SendMembershipResult is what send_join and send_knock answer.
type SendMembershipResult struct {
	State     []json.RawMessage // state before the join
	AuthChain []json.RawMessage
	Event     json.RawMessage // the join, countersigned for a restricted join; nil otherwise
	Stripped  []json.RawMessage
	// MembersOmitted: State lacks the member events other than the
	// heroes' (a partial-state join); ServersInRoom then lists the servers
	// with joined members before the join.
	MembersOmitted bool
	ServersInRoom  []string
}

// SendMembership takes a signed membership event of a user of origin (the
// second half of the handshake) through the pipeline. omitMembers asks
// for a partial-state answer to a join (send_join's omit_members).
func (s *Service) SendMembership(ctx context.Context, origin, roomID, eventID, membership string, raw json.RawMessage, omitMembers bool) (*SendMembershipResult, error) {
	if s.rooms.IsPartialState(roomID) && (membership == "join" || membership == "knock") {
		return nil, errPartialState
	}
	v, err := s.rooms.VersionOf(ctx, roomID)
	if err != nil {
		return nil, err
	}
	ev, err := pdu.Parse(raw, v)
	if err != nil {
		return nil, errcode.BadJSON("invalid event: %v", err)
	}
	if ev.ID != eventID || ev.RoomID != roomID {
		return nil, errcode.BadJSON("event id or room id does not match the request")
	}
	if ev.Type != "m.room.member" || ev.StateKey == nil || *ev.StateKey != ev.Sender || rooms.MembershipOf(ev) != membership {
		return nil, errcode.BadJSON("not a %s event of its sender", membership)
	}
	if serverOf(ev.Sender) != origin {
		return nil, errcode.Forbidden("the event's sender is not on the requesting server")
	}
	res := &SendMembershipResult{}
	if membership == "join" {
		var c struct {
			Via string `json:"join_authorised_via_users_server"`
		}
		_ = json.Unmarshal(ev.Content, &c)
		if c.Via != "" && serverOf(c.Via) == s.serverName && v.Restricted {
			signed, err := pdu.SignEvent(ev.JSON(), v, s.serverName, s.key)
			if err != nil {
				return nil, err
			}
			if ev, err = pdu.Parse(signed, v); err != nil {
				return nil, err
			}
			res.Event = ev.JSON()
		}
	}
	if err := s.receive(ctx, origin, ev, true); err != nil {
		if errors.Is(err, errRejected) {
			return nil, errcode.Forbidden("%s", truncate(err.Error(), 300))
		}
		var ce *errcode.Error
		if errors.As(err, &ce) {
			return nil, ce
		}
		return nil, errcode.Forbidden("event not accepted: %s", truncate(err.Error(), 300))
	}
	row, err := s.store.GetEvent(ctx, ev.ID)
	if err != nil {
		return nil, err
	}
	if row.Pos < 0 {
		return nil, errcode.Forbidden("the event does not pass the room's current state")
	}
	switch membership {
	case "join":
		st := store.StateMap{}
		if row.StateGroup > 0 {
			if st, err = s.store.StateGroup(ctx, row.StateGroup); err != nil {
				return nil, err
			}
		}
		if omitMembers {
			res.MembersOmitted = true
			if st, res.ServersInRoom, err = s.partialJoinState(ctx, roomID, st, ev.Sender); err != nil {
				return nil, err
			}
		}
		ids := make([]string, 0, len(st))
		for _, x := range st {
			ids = append(ids, x)
		}
		chain, err := s.authChain(ctx, append(slices.Clone(ids), ev.ID))
		if err != nil {
			return nil, err
		}
		if omitMembers {
			// Events given in state need not be repeated (MSC3706).
			inState := make(map[string]bool, len(ids))
			for _, x := range ids {
				inState[x] = true
			}
			chain = slices.DeleteFunc(chain, func(x string) bool { return inState[x] })
		}
		if res.State, err = s.rooms.PDUs(ctx, ids); err != nil {
			return nil, err
		}
		if res.AuthChain, err = s.rooms.PDUs(ctx, chain); err != nil {
			return nil, err
		}
	case "knock":
		if res.Stripped, err = s.strippedRoomState(ctx, roomID); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// partialJoinState reduces the state before a join to what a
// partial-state join needs: every event but the member events, except
// those of the room's heroes when the room has neither a name nor a
// canonical alias (so that the joining server can name the room). It also
// returns the servers with joined members.
func (s *Service) partialJoinState(ctx context.Context, roomID string, st store.StateMap, joiner string) (store.StateMap, []string, error) {
	out := store.StateMap{}
	var memberIDs []string
	for k, x := range st {
		if k.Type == "m.room.member" && k.StateKey != joiner {
			memberIDs = append(memberIDs, x)
		} else {
			out[k] = x
		}
	}
	// Most of them are the current ones, parsed in the room's cache.
	members := make([]*pdu.Event, 0, len(memberIDs))
	if r, err := s.rooms.LockRoom(ctx, roomID); err == nil {
		byID := make(map[string]bool, len(memberIDs))
		for _, x := range memberIDs {
			byID[x] = true
		}
		var rest []string
		for t, ev := range r.AllState() {
			if t.Type == "m.room.member" && byID[ev.ID] {
				members = append(members, ev)
				delete(byID, ev.ID)
			}
		}
		r.Unlock()
		for x := range byID {
			rest = append(rest, x)
		}
		memberIDs = rest
	}
	more, err := s.rooms.Events(ctx, memberIDs)
	if err != nil {
		return nil, nil, err
	}
	members = append(members, more...)
	var servers []string
	var current, departed []*pdu.Event
	for _, m := range members {
		switch rooms.MembershipOf(m) {
		case "join":
			if sv := serverOf(*m.StateKey); !slices.Contains(servers, sv) {
				servers = append(servers, sv)
			}
			current = append(current, m)
		case "invite":
			current = append(current, m)
		case "leave", "ban":
			departed = append(departed, m)
		}
	}
	_, named := st[store.StateKey{Type: "m.room.name"}]
	_, aliased := st[store.StateKey{Type: "m.room.canonical_alias"}]
	if !named && !aliased {
		// The heroes as RoomSummary picks them: up to five other members by
		// user id, else former members.
		heroes := slices.DeleteFunc(current, func(m *pdu.Event) bool { return *m.StateKey == joiner })
		if len(heroes) == 0 {
			heroes = slices.DeleteFunc(departed, func(m *pdu.Event) bool { return *m.StateKey == joiner })
		}
		slices.SortFunc(heroes, func(a, b *pdu.Event) int { return strings.Compare(*a.StateKey, *b.StateKey) })
		for _, m := range heroes[:min(5, len(heroes))] {
			out[store.StateKey{Type: m.Type, StateKey: *m.StateKey}] = m.ID
		}
	}
	if !slices.Contains(servers, s.serverName) {
		servers = append(servers, s.serverName)
	}
	slices.Sort(servers)
	return out, servers, nil
}

func (s *Service) strippedRoomState(ctx context.Context, roomID string) ([]json.RawMessage, error) {
	r, err := s.rooms.LockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	var out []json.RawMessage // full PDUs over federation (spec v1.16)
	for _, t := range rooms.StrippedTypes {
		if ev := r.State(pdu.StateTuple{Type: t}); ev != nil {
			out = append(out, ev.JSON())
		}
	}
	r.Unlock()
	return out, nil
}

// ReceiveInvite countersigns an invite of a local user sent by origin and
// records it: through the pipeline when the room is known here, as a
// remote invite with its stripped state otherwise.
func (s *Service) ReceiveInvite(ctx context.Context, origin, roomID, eventID, roomVersion string, raw json.RawMessage, inviteState []json.RawMessage) (json.RawMessage, error) {
	v, ok := roomversion.Get(roomVersion)
	if !ok {
		return nil, errcode.IncompatibleRoomVersion("room version %q is not supported", roomVersion).With("room_version", roomVersion)
	}
	ev, err := pdu.Parse(raw, v)
	if err != nil {
		return nil, errcode.BadJSON("invalid event: %v", err)
	}
	if ev.ID != eventID || ev.RoomID != roomID {
		return nil, errcode.BadJSON("event id or room id does not match the request")
	}
	if ev.Type != "m.room.member" || ev.StateKey == nil || rooms.MembershipOf(ev) != "invite" {
		return nil, errcode.BadJSON("not an invite")
	}
	target := *ev.StateKey
	if serverOf(target) != s.serverName {
		return nil, errcode.InvalidParam("the invited user is not on this server")
	}
	if u, err := s.store.GetUser(ctx, target); err != nil || u.Deactivated {
		return nil, errcode.NotFound("unknown user %s", target)
	}
	if serverOf(ev.Sender) != origin {
		return nil, errcode.Forbidden("the inviter is not on the requesting server")
	}
	if err := s.rooms.CheckInvite(ctx, target, ev.Sender); err != nil {
		return nil, err
	}
	if !s.verifySignature(ctx, ev, origin) {
		return nil, errcode.Forbidden("the invite is not signed by %s", origin)
	}
	if err := pdu.VerifyHashes(ev); err != nil {
		return nil, errcode.Forbidden("the invite's content hash does not match")
	}
	if len(inviteState) > 50 {
		inviteState = inviteState[:50]
	}
	signed, err := pdu.SignEvent(ev.JSON(), v, s.serverName, s.key)
	if err != nil {
		return nil, err
	}
	sev, err := pdu.Parse(signed, v)
	if err != nil {
		return nil, err
	}
	if _, err := s.rooms.VersionOf(ctx, roomID); err == nil {
		if err := s.receive(ctx, origin, sev, true); err != nil {
			s.log.Info("federation: invite to a known room not accepted", "event_id", ev.ID, "err", err)
			return nil, errcode.Forbidden("invite not accepted: %s", truncate(err.Error(), 300))
		}
		return signed, nil
	}
	stripped := append(rooms.PruneStripped(inviteState), rooms.StrippedEvent(sev))
	err = s.rooms.PutRemoteMembership(ctx, store.RemoteMembership{
		RoomID: roomID, UserID: target, Membership: "invite", EventID: ev.ID, RoomVersion: v.ID,
		PDU: signed, Stripped: mustJSON(stripped), Servers: mustJSON([]string{origin}),
	})
	if err != nil {
		return nil, err
	}
	return signed, nil
}

var errFedDisabled = errcode.NotFound("this room is not known here and federation is disabled")

// candidates orders the servers to try for a room: those given (else the
// room id's server), without duplicates, ourselves or disallowed servers.
func (s *Service) candidates(roomID string, servers []string) ([]string, error) {
	all := slices.Clone(servers)
	if len(all) == 0 {
		// A room id's server is only a guess (version 12 ids have none):
		// tried when the client names no server, never past those it names.
		all = append(all, serverOf(roomID))
	}
	var out []string
	var refused string
	for _, sv := range all {
		if sv == "" || sv == s.serverName || slices.Contains(out, sv) {
			continue
		}
		if s.f.Allowed != nil && s.f.Allowed(sv) != nil {
			refused = sv
			continue
		}
		out = append(out, sv)
	}
	if len(out) == 0 {
		if refused != "" {
			return nil, errcode.Forbidden("federation with %s is not allowed", refused)
		}
		return nil, errcode.NotFound("no known servers for room %s", roomID)
	}
	return out, nil
}

// supportedVersions is the ver query of make_join and make_knock.
func supportedVersions() []string {
	var ids []string
	for _, v := range append(roomversion.All(), roomversion.Unstable()...) {
		ids = append(ids, v.ID)
	}
	return ids
}

// buildFromTemplate fills in, hashes and signs a make_* template for one
// of our users.
func (s *Service) buildFromTemplate(c rooms.MemberChange, v *roomversion.Version, tmpl json.RawMessage, profile map[string]any) (*pdu.Event, error) {
	var t struct {
		RoomID     string                     `json:"room_id"`
		Sender     string                     `json:"sender"`
		Type       string                     `json:"type"`
		StateKey   *string                    `json:"state_key"`
		Content    map[string]json.RawMessage `json:"content"`
		PrevEvents json.RawMessage            `json:"prev_events"`
		AuthEvents json.RawMessage            `json:"auth_events"`
		Depth      int64                      `json:"depth"`
	}
	if err := json.Unmarshal(tmpl, &t); err != nil {
		return nil, fmt.Errorf("bad template: %w", err)
	}
	if t.RoomID != c.RoomID || t.Sender != c.Sender || t.Type != "m.room.member" || t.StateKey == nil || *t.StateKey != c.Target {
		return nil, errors.New("template is not for this user and room")
	}
	var m string
	_ = json.Unmarshal(t.Content["membership"], &m)
	if m != c.Membership {
		return nil, fmt.Errorf("template membership %q, want %q", m, c.Membership)
	}
	content := map[string]any{}
	for k, x := range t.Content {
		content[k] = x
	}
	for k, x := range profile {
		content[k] = x
	}
	c.AddExtra(content)
	if c.Reason != "" {
		content["reason"] = c.Reason
	}
	p := pdu.Proto{RoomID: t.RoomID, Sender: t.Sender, Type: t.Type, StateKey: t.StateKey, Content: mustJSON(content),
		Depth: t.Depth, OriginServerTS: time.Now().UnixMilli()}
	var err error
	if p.PrevEvents, p.RefHashes, err = templateRefs(t.PrevEvents, v, nil); err != nil {
		return nil, err
	}
	if p.AuthEvents, p.RefHashes, err = templateRefs(t.AuthEvents, v, p.RefHashes); err != nil {
		return nil, err
	}
	return pdu.Build(p, v, s.serverName, s.key)
}

// templateRefs reads prev_events or auth_events of a template: ids, or
// for room versions 1–2 [id, {"sha256": hash}] pairs.
func templateRefs(raw json.RawMessage, v *roomversion.Version, hashes map[string]string) ([]string, map[string]string, error) {
	if v.EventFormat != roomversion.FormatV1 {
		var ids []string
		if err := json.Unmarshal(raw, &ids); err != nil {
			return nil, nil, fmt.Errorf("bad template references: %w", err)
		}
		return ids, hashes, nil
	}
	var pairs [][2]json.RawMessage
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, nil, fmt.Errorf("bad template references: %w", err)
	}
	if hashes == nil {
		hashes = map[string]string{}
	}
	var ids []string
	for _, p := range pairs {
		var id string
		var h struct {
			SHA256 string `json:"sha256"`
		}
		if json.Unmarshal(p[0], &id) != nil || json.Unmarshal(p[1], &h) != nil {
			return nil, nil, errors.New("bad template reference")
		}
		ids = append(ids, id)
		hashes[id] = h.SHA256
	}
	return ids, hashes, nil
}

func (s *Service) profileContent(ctx context.Context, userID string) map[string]any {
	out := map[string]any{}
	if u, err := s.store.GetUser(ctx, userID); err == nil {
		if u.DisplayName.Valid {
			out["displayname"] = u.DisplayName.String
		}
		if u.AvatarURL.Valid {
			out["avatar_url"] = u.AvatarURL.String
		}
	}
	return out
}

// remoteErr turns another server's refusal into an error for our client.
func remoteErr(server string, err error) error {
	var ce *errcode.Error
	if errors.As(err, &ce) {
		return ce
	}
	var re *federation.RemoteError
	if errors.As(err, &re) {
		switch code, msg := re.MatrixError(); code {
		case "M_FORBIDDEN", "M_UNABLE_TO_AUTHORISE_JOIN", "M_UNABLE_TO_GRANT_JOIN":
			return errcode.Forbidden("%s refused: %s", server, msg)
		case "M_NOT_FOUND":
			return errcode.NotFound("%s: %s", server, msg)
		case "M_INCOMPATIBLE_ROOM_VERSION":
			return errcode.IncompatibleRoomVersion("%s: %s", server, msg)
		case "M_INVITE_BLOCKED":
			return &errcode.Error{Code: code, Status: http.StatusForbidden, Message: fmt.Sprintf("%s refused: %s", server, msg)}
		}
	}
	return &errcode.Error{Code: "M_UNKNOWN", Status: http.StatusBadGateway, Message: fmt.Sprintf("could not reach %s", server)}
}

// handshake runs make_<membership> then send_<membership> (send, which
// keeps the answer) against the candidate servers until one accepts; it
// returns the server, the room version and our event.
func (s *Service) handshake(ctx context.Context, c rooms.MemberChange, servers []string, send func(ctx context.Context, server string, ev *pdu.Event) error) (string, *roomversion.Version, *pdu.Event, error) {
	cands, err := s.candidates(c.RoomID, servers)
	if err != nil {
		return "", nil, nil, err
	}
	profile := map[string]any{}
	if c.Membership != "leave" {
		profile = s.profileContent(ctx, c.Target)
	}
	var lastErr error
	for _, sv := range cands {
		fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		mk, err := s.makeMembership(fctx, sv, c)
		cancel()
		if err != nil {
			s.log.Info("federation: make_"+c.Membership+" failed", "server", sv, "room_id", c.RoomID, "err", err)
			lastErr = remoteErr(sv, err)
			continue
		}
		if mk.RoomVersion == "" {
			mk.RoomVersion = "1"
		}
		v, ok := roomversion.Get(mk.RoomVersion)
		if !ok {
			lastErr = errcode.IncompatibleRoomVersion("room version %q is not supported", mk.RoomVersion)
			continue
		}
		ev, err := s.buildFromTemplate(c, v, mk.Event, profile)
		if err != nil {
			lastErr = &errcode.Error{Code: "M_UNKNOWN", Status: http.StatusBadGateway, Message: fmt.Sprintf("%s sent an unusable template", sv)}
			s.log.Info("federation: bad template", "server", sv, "err", err)
			continue
		}
		fctx, cancel = context.WithTimeout(ctx, 2*fetchTimeout)
		err = send(fctx, sv, ev)
		cancel()
		if err != nil {
			s.log.Info("federation: send_"+c.Membership+" failed", "server", sv, "room_id", c.RoomID, "err", err)
			lastErr = remoteErr(sv, err)
			continue
		}
		return sv, v, ev, nil
	}
	return "", nil, nil, lastErr
}

// makeMembership asks server for the template of c's membership event
// (make_join, make_knock or make_leave).
func (s *Service) makeMembership(ctx context.Context, server string, c rooms.MemberChange) (*federation.MakeResponse, error) {
	switch c.Membership {
	case "join":
		return s.f.Client.MakeJoin(ctx, server, c.RoomID, c.Target, supportedVersions())
	case "knock":
		return s.f.Client.MakeKnock(ctx, server, c.RoomID, c.Target, supportedVersions())
	}
	return s.f.Client.MakeLeave(ctx, server, c.RoomID, c.Target)
}

// joinRemote joins a room this server is not in through one of servers.
func (s *Service) joinRemote(ctx context.Context, c rooms.MemberChange) (string, error) {
	if !s.federated() {
		return "", errFedDisabled
	}
	servers := slices.Clone(c.Servers)
	if m, err := s.store.GetRemoteMembership(ctx, c.RoomID, c.Target); err == nil {
		var more []string
		_ = json.Unmarshal(m.Servers, &more)
		servers = append(servers, more...)
	}
	var resp *federation.SendJoinResponse
	server, v, ev, err := s.handshake(ctx, c, servers, func(ctx context.Context, sv string, ev *pdu.Event) (err error) {
		// A partial-state answer is welcome.
		resp, err = s.f.Client.SendJoin(ctx, sv, c.RoomID, ev.ID, ev.JSON(), true)
		return err
	})
	if err != nil {
		return "", err
	}
	if len(resp.Event) > 0 {
		// The resident server countersigned a restricted join.
		if signed, err := pdu.Parse(resp.Event, v); err == nil && signed.ID == ev.ID {
			ev = signed
		}
	}
	if len(resp.State)+len(resp.AuthChain) > maxJoinEvents {
		return "", errcode.TooLarge("the room's state is too large to join")
	}
	var partial []string
	if resp.MembersOmitted {
		// The state lacks most member events: the room is usable now and
		// its full state is fetched from these servers in the background.
		partial = []string{server}
		for _, sv := range resp.ServersInRoom {
			if sv != s.serverName && !slices.Contains(partial, sv) && len(partial) < 50 {
				partial = append(partial, sv)
			}
		}
	}
	if err := s.storeJoinedRoom(ctx, server, v, ev, resp.State, resp.AuthChain, partial); err != nil {
		return "", err
	}
	return ev.ID, nil
}

// storeJoinedRoom checks the state and auth chain a resident server sent
// with our join, then has rooms store the room, its state (as outliers)
// and the join (the room's first timeline event here) in one transaction.
// partial, when not nil, lists the servers to fetch the full state from:
// the state lacks member events, and the room is marked partial.
func (s *Service) storeJoinedRoom(ctx context.Context, server string, v *roomversion.Version, join *pdu.Event, stateRaw, chainRaw []json.RawMessage, partial []string) error {
	roomID := join.RoomID
	// Each event is parsed once: the state's ids are needed below.
	stateParsed, chainParsed := rooms.ParsePDUs(stateRaw, v), rooms.ParsePDUs(chainRaw, v)
	good, fresh, err := s.checkParsed(ctx, roomID, append(chainParsed, stateParsed...))
	if err != nil {
		return err
	}
	state := store.StateMap{}
	var stateEvs []*pdu.Event
	for _, ev := range stateParsed {
		if g := good[ev.ID]; g != nil && g.IsState() {
			state[store.StateKey{Type: g.Type, StateKey: *g.StateKey}] = g.ID
			stateEvs = append(stateEvs, g)
		}
	}
	create := eventauth.NewStateMap(stateEvs...)[pdu.StateTuple{Type: "m.room.create"}]
	if create == nil || pdu.RoomIDForCreate(create) != roomID {
		return &errcode.Error{Code: "M_UNKNOWN", Status: http.StatusBadGateway, Message: fmt.Sprintf("%s sent a room state without its create event", server)}
	}
	if partial != nil {
		// The state lacks members (the authorising user of a restricted
		// join, for one): the join's own auth events, from the auth chain,
		// decide; the full state later confirms the room.
		if err := s.checkOwnAuth(ctx, join, good); err != nil {
			return errcode.Forbidden("the join does not pass its auth events: %v", err)
		}
	} else if err := s.checkAuth(ctx, join, eventauth.NewStateMap(stateEvs...)); err != nil {
		return errcode.Forbidden("the join does not pass the room's state: %v", err)
	}
	var replaced *pdu.Event
	if x, ok := state[store.StateKey{Type: "m.room.member", StateKey: join.Sender}]; ok {
		replaced = good[x]
	}
	j := rooms.Join{Server: server, Version: v, Event: join, Creator: create.Sender,
		State: state, StateEvents: stateEvs, Replaced: replaced, Outliers: fresh, Partial: partial}
	if partial != nil {
		j.Committed = func() { s.startResync(roomID, join.ID, partial) }
	}
	return s.rooms.CommitJoin(ctx, j)
}

// leaveRemote rejects an invite (or retracts a knock) to a room this
// server is not in, through make_leave/send_leave with the server that
// sent it.
func (s *Service) leaveRemote(ctx context.Context, c rooms.MemberChange) (string, error) {
	m, err := s.store.GetRemoteMembership(ctx, c.RoomID, c.Target)
	if errors.Is(err, store.ErrNotFound) || (err == nil && m.Membership == "leave") {
		return "", errcode.Forbidden("you are not invited to this room")
	}
	if err != nil {
		return "", err
	}
	var servers []string
	_ = json.Unmarshal(m.Servers, &servers)
	if ev, err := pdu.Parse(m.PDU, mustVersion(m.RoomVersion)); err == nil {
		servers = append([]string{serverOf(ev.Sender)}, servers...)
	}
	var leave *pdu.Event
	if s.federated() {
		_, _, ev, err := s.handshake(ctx, c, servers, func(ctx context.Context, sv string, ev *pdu.Event) error {
			return s.f.Client.SendLeave(ctx, sv, c.RoomID, ev.ID, ev.JSON())
		})
		if err != nil {
			// The invite is declined here even when its server cannot be told.
			s.log.Info("federation: could not send the leave", "room_id", c.RoomID, "err", err)
		} else {
			leave = ev
		}
	}
	if leave == nil {
		// Nobody could be told: a leave built here after the invite still
		// shows the user's syncs that the invite is gone.
		if leave, err = s.localLeave(m); err != nil {
			s.log.Info("federation: could not build a local leave", "room_id", c.RoomID, "err", err)
			err = s.rooms.PutRemoteMembership(ctx, store.RemoteMembership{RoomID: c.RoomID, UserID: c.Target, Membership: "leave", EventID: m.EventID})
			return m.EventID, err
		}
	}
	err = s.rooms.PutRemoteMembership(ctx, store.RemoteMembership{
		RoomID: c.RoomID, UserID: c.Target, Membership: "leave", EventID: leave.ID, RoomVersion: m.RoomVersion,
		PDU: leave.JSON(), Stripped: []byte("[]"), Servers: m.Servers,
	})
	return leave.ID, err
}

func mustVersion(id string) *roomversion.Version {
	v, _ := roomversion.Get(id)
	return v
}

// knockRemote knocks on a room this server is not in.
func (s *Service) knockRemote(ctx context.Context, c rooms.MemberChange) (string, error) {
	if !s.federated() {
		return "", errFedDisabled
	}
	var resp *federation.SendKnockResponse
	server, v, ev, err := s.handshake(ctx, c, c.Servers, func(ctx context.Context, sv string, ev *pdu.Event) (err error) {
		resp, err = s.f.Client.SendKnock(ctx, sv, c.RoomID, ev.ID, ev.JSON())
		return err
	})
	if err != nil {
		return "", err
	}
	if len(resp.KnockRoomState) > 50 {
		resp.KnockRoomState = resp.KnockRoomState[:50]
	}
	stripped := append(rooms.PruneStripped(resp.KnockRoomState), rooms.StrippedEvent(ev))
	err = s.rooms.PutRemoteMembership(ctx, store.RemoteMembership{
		RoomID: c.RoomID, UserID: c.Target, Membership: "knock", EventID: ev.ID, RoomVersion: v.ID,
		PDU: ev.JSON(), Stripped: mustJSON(stripped), Servers: mustJSON([]string{server}),
	})
	return ev.ID, err
}

// Invite has the invitee's server countersign an invite built here
// (stripped: the room's state shown to the invitee), then takes it
// through the inbound pipeline, which copes with the room having moved
// on meanwhile (rooms holds no lock of the room during the request: the
// invitee's server may call back about it).
func (s *Service) Invite(ctx context.Context, v *roomversion.Version, ev *pdu.Event, stripped []json.RawMessage) (string, error) {
	server := serverOf(*ev.StateKey)
	if s.f.Allowed != nil && s.f.Allowed(server) != nil {
		return "", errcode.Forbidden("federation with %s is not allowed", server)
	}
	req := &federation.InviteRequest{Event: ev.JSON(), RoomVersion: v.ID, InviteRoomState: stripped}
	fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	resp, err := s.f.Client.Invite(fctx, server, ev.RoomID, ev.ID, req)
	if err != nil {
		return "", remoteErr(server, err)
	}
	signed, err := pdu.Parse(resp.Event, v)
	if err != nil || signed.ID != ev.ID {
		return "", &errcode.Error{Code: "M_UNKNOWN", Status: http.StatusBadGateway, Message: fmt.Sprintf("%s returned an unusable invite", server)}
	}
	if !s.verifySignature(ctx, signed, server) {
		return "", &errcode.Error{Code: "M_UNKNOWN", Status: http.StatusBadGateway, Message: fmt.Sprintf("%s did not sign the invite", server)}
	}
	if err := s.receive(ctx, "", signed, false); err != nil {
		if errors.Is(err, errRejected) {
			return "", errcode.Forbidden("%s", truncate(err.Error(), 300))
		}
		return "", err
	}
	return signed.ID, nil
}

// RemoteMembership returns how a user's own membership change in a room
// not known here is made, or nil when it cannot be.
func (s *Service) RemoteMembership(c rooms.MemberChange) func(context.Context, rooms.MemberChange) (string, error) {
	if c.Sender != c.Target {
		return nil
	}
	switch c.Membership {
	case "join":
		if s.federated() {
			return s.joinRemote
		}
	case "knock":
		if s.federated() {
			return s.knockRemote
		}
	case "leave":
		return s.leaveRemote
	}
	return nil
}

// QueryAlias resolves an alias of another server (query/directory): the
// room id and servers in the room.
func (s *Service) QueryAlias(ctx context.Context, alias string) (string, []string, error) {
	server := serverOf(alias)
	if !s.federated() {
		return "", nil, errcode.NotFound("room alias %s not found", alias)
	}
	if s.f.Allowed != nil && s.f.Allowed(server) != nil {
		return "", nil, errcode.Forbidden("federation with %s is not allowed", server)
	}
	fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	resp, err := s.f.Client.QueryDirectory(fctx, server, alias)
	if err != nil {
		return "", nil, remoteErr(server, err)
	}
	if !strings.HasPrefix(resp.RoomID, "!") {
		return "", nil, &errcode.Error{Code: "M_UNKNOWN", Status: http.StatusBadGateway, Message: fmt.Sprintf("%s gave no room id", server)}
	}
	if len(resp.Servers) > 20 {
		resp.Servers = resp.Servers[:20]
	}
	return resp.RoomID, append([]string{server}, resp.Servers...), nil
}

// localLeave builds, signed by this server, the leave that declines a
// remote invite (or knock) when no server of the room could be reached:
// it follows the invite, so the user's clients see the invite end.
func (s *Service) localLeave(m *store.RemoteMembership) (*pdu.Event, error) {
	v, ok := roomversion.Get(m.RoomVersion)
	if !ok {
		return nil, fmt.Errorf("room version %q is not supported", m.RoomVersion)
	}
	prev, err := pdu.Parse(m.PDU, v)
	if err != nil {
		return nil, err
	}
	p := pdu.Proto{RoomID: m.RoomID, Sender: m.UserID, Type: "m.room.member", StateKey: &m.UserID,
		Content: json.RawMessage(`{"membership":"leave"}`), PrevEvents: []string{prev.ID}, AuthEvents: []string{prev.ID},
		Depth: prev.Depth + 1, OriginServerTS: time.Now().UnixMilli()}
	if v.EventIDs == roomversion.EventIDServer {
		h := prev.ReferenceHash()
		p.RefHashes = map[string]string{prev.ID: base64.RawStdEncoding.EncodeToString(h[:])}
	}
	return pdu.Build(p, v, s.serverName, s.key)
}
