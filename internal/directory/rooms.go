package directory

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"luxchat/internal/config"
	"luxchat/internal/federation"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// summaryTypes are the state types (state key "") a room summary is made of.
var summaryTypes = map[string]bool{
	"m.room.create": true, "m.room.name": true, "m.room.topic": true, "m.room.avatar": true,
	"m.room.canonical_alias": true, "m.room.join_rules": true, "m.room.history_visibility": true,
	"m.room.guest_access": true, "m.room.encryption": true,
}

// IndexEvent is the rooms indexer: it keeps room_summaries,
// space_children and remote users' directory rows current inside the
// transaction that persists ev. It reads the room's current state rather
// than trusting ev, so an event that did not become current state changes
// nothing.
func (s *Service) IndexEvent(ctx context.Context, tx *store.Tx, ev *pdu.Event, _ int64) error {
	roomID := pdu.RoomIDForCreate(ev) // a v12 create event names no room
	if roomID == "" {
		return nil
	}
	switch {
	case ev.Type == "m.room.redaction":
		// A redacted name, topic or child link changes what is shown.
		if err := s.refreshSummary(ctx, tx, roomID); err != nil {
			return err
		}
		return s.refreshChildren(ctx, tx, roomID)
	case !ev.IsState():
		return nil
	case ev.Type == "m.room.member":
		// The joined member count moves with the membership row
		// (store.SetMembership).
		if s.isLocal(*ev.StateKey) {
			// A join over federation writes the room's whole state at once
			// and indexes only the join: build what is missing then.
			if membershipOf(ev.Content) == "join" {
				return s.indexJoinedRoom(ctx, tx, roomID)
			}
			return nil
		}
		return s.indexRemoteMember(ctx, tx, *ev.StateKey, ev.Content)
	case ev.Type == "m.space.child":
		return s.refreshChild(ctx, tx, roomID, *ev.StateKey)
	case ev.Type == "m.room.tombstone" && *ev.StateKey == "":
		return s.movePublication(ctx, tx, roomID, ev)
	case summaryTypes[ev.Type] && *ev.StateKey == "":
		return s.refreshSummary(ctx, tx, roomID)
	}
	return nil
}

// movePublication lists an upgraded room's replacement in the directory
// in its place, as the old room's listing promised the room, not its
// version.
func (s *Service) movePublication(ctx context.Context, tx *store.Tx, roomID string, ev *pdu.Event) error {
	_, c := parseState(ev.JSON())
	newRoom := str(c, "replacement_room")
	if !strings.HasPrefix(newRoom, "!") || newRoom == roomID {
		return nil
	}
	published, err := tx.RoomPublished(ctx, roomID)
	if err != nil || !published {
		return err
	}
	if err := tx.SetRoomPublished(ctx, roomID, false); err != nil {
		return err
	}
	return tx.SetRoomPublished(ctx, newRoom, true)
}

// indexJoinedRoom builds the summary, child links and remote members'
// directory rows of a room that has no summary yet.
func (s *Service) indexJoinedRoom(ctx context.Context, tx *store.Tx, roomID string) error {
	if _, ok := s.summarized.Load(roomID); ok {
		return nil
	}
	ok, err := tx.HasRoomSummary(ctx, roomID)
	if err != nil {
		return err
	}
	if !ok {
		return s.indexRoomState(ctx, tx, roomID)
	}
	tx.OnCommitted(func() { s.summarized.Store(roomID, struct{}{}) })
	return nil
}

// IndexFullState indexes again a room joined with partial state once its
// whole state is known (a rooms full-state hook): member count, summary,
// children and the remote members now known.
func (s *Service) IndexFullState(ctx context.Context, tx *store.Tx, roomID string) error {
	n, err := tx.CountJoined(ctx, roomID)
	if err != nil {
		return fmt.Errorf("count joined: %w", err)
	}
	if err := tx.SetSummaryJoined(ctx, roomID, n); err != nil {
		return fmt.Errorf("summary members: %w", err)
	}
	return s.indexRoomState(ctx, tx, roomID)
}

// indexRoomState builds a room's summary and children from its state and
// indexes its remote members.
func (s *Service) indexRoomState(ctx context.Context, tx *store.Tx, roomID string) error {
	if err := s.refreshSummary(ctx, tx, roomID); err != nil {
		return err
	}
	if err := s.refreshChildren(ctx, tx, roomID); err != nil {
		return err
	}
	pdus, err := tx.JoinedMemberPDUs(ctx, roomID)
	if err != nil {
		return fmt.Errorf("joined members: %w", err)
	}
	for _, raw := range pdus {
		var m struct {
			StateKey string          `json:"state_key"`
			Content  json.RawMessage `json:"content"`
		}
		if json.Unmarshal(raw, &m) != nil || s.isLocal(m.StateKey) {
			continue
		}
		if err := s.indexRemoteMember(ctx, tx, m.StateKey, m.Content); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) isLocal(userID string) bool {
	u, err := id.ParseUserID(userID)
	return err == nil && string(u.Server()) == s.cfg.ServerName
}

func membershipOf(content json.RawMessage) string {
	var c struct {
		Membership string `json:"membership"`
	}
	_ = json.Unmarshal(content, &c)
	return c.Membership
}

// stateContent is the part of a stored PDU the summaries read.
type stateContent struct {
	Content        json.RawMessage `json:"content"`
	Sender         string          `json:"sender"`
	OriginServerTS int64           `json:"origin_server_ts"`
}

func parseState(raw []byte) (stateContent, map[string]json.RawMessage) {
	var sc stateContent
	_ = json.Unmarshal(raw, &sc)
	var m map[string]json.RawMessage
	_ = json.Unmarshal(sc.Content, &m)
	return sc, m
}

// str returns a string field of content, "" when absent or not a string.
func str(m map[string]json.RawMessage, key string) string {
	var v string
	if raw, ok := m[key]; ok && json.Unmarshal(raw, &v) == nil {
		return v
	}
	return ""
}

// refreshSummary rebuilds a room's summary from its current state.
func (s *Service) refreshSummary(ctx context.Context, tx *store.Tx, roomID string) error {
	st, err := tx.SummaryState(ctx, roomID)
	if err != nil {
		return fmt.Errorf("summary state: %w", err)
	}
	sum := buildSummary(roomID, st)
	if err := tx.PutRoomSummary(ctx, sum); err != nil {
		return fmt.Errorf("put summary: %w", err)
	}
	return nil
}

// buildSummary turns current state PDUs (by type) into a summary.
func buildSummary(roomID string, st map[string][]byte) store.RoomSummary {
	sum := store.RoomSummary{RoomID: roomID, AllowedRoomIDs: "[]", RoomVersion: "1", HistoryVisibility: "shared"}
	get := func(typ string) map[string]json.RawMessage {
		raw, ok := st[typ]
		if !ok {
			return nil
		}
		_, m := parseState(raw)
		return m
	}
	if c := get("m.room.create"); c != nil {
		if v := str(c, "room_version"); v != "" {
			sum.RoomVersion = v
		}
		sum.RoomType = str(c, "type")
	}
	if c := get("m.room.name"); c != nil {
		sum.Name = str(c, "name")
	}
	if c := get("m.room.topic"); c != nil {
		sum.Topic = plainTopic(c)
	}
	if c := get("m.room.avatar"); c != nil {
		if u := str(c, "url"); strings.HasPrefix(u, "mxc://") {
			sum.AvatarURL = u
		}
	}
	var aliases []string
	if c := get("m.room.canonical_alias"); c != nil {
		if a := str(c, "alias"); validAlias(a) {
			sum.CanonicalAlias = a
			aliases = append(aliases, a)
		}
		var alt []string
		_ = json.Unmarshal(c["alt_aliases"], &alt)
		aliases = append(aliases, alt...)
	}
	if c := get("m.room.join_rules"); c != nil {
		sum.JoinRule = str(c, "join_rule")
		var allow []struct {
			Type   string `json:"type"`
			RoomID string `json:"room_id"`
		}
		_ = json.Unmarshal(c["allow"], &allow)
		ids := []string{}
		for _, a := range allow {
			if a.Type == "m.room_membership" && strings.HasPrefix(a.RoomID, "!") {
				ids = append(ids, a.RoomID)
			}
		}
		b, _ := json.Marshal(ids)
		sum.AllowedRoomIDs = string(b)
	}
	if c := get("m.room.history_visibility"); c != nil {
		if v := str(c, "history_visibility"); v != "" {
			sum.HistoryVisibility = v
		}
	}
	if c := get("m.room.guest_access"); c != nil {
		sum.GuestAccess = str(c, "guest_access")
	}
	if c := get("m.room.encryption"); c != nil {
		sum.Encryption = str(c, "algorithm")
	}
	sum.SearchText = Fold(strings.Join(append([]string{sum.Name, sum.Topic}, aliases...), "\n"))
	return sum
}

// plainTopic is the topic's text/plain form: the "topic" string, else the
// text/plain entry of m.topic.
func plainTopic(c map[string]json.RawMessage) string {
	if t := str(c, "topic"); t != "" {
		return t
	}
	var mt struct {
		Text []struct {
			Body     string `json:"body"`
			MimeType string `json:"mimetype"`
		} `json:"m.text"`
	}
	_ = json.Unmarshal(c["m.topic"], &mt)
	for _, t := range mt.Text {
		if t.MimeType == "" || t.MimeType == "text/plain" {
			return t.Body
		}
	}
	return ""
}

func validAlias(a string) bool {
	_, err := id.ParseRoomAlias(a)
	return err == nil
}

// refreshChild records or forgets one m.space.child link from the room's
// current state.
func (s *Service) refreshChild(ctx context.Context, tx *store.Tx, roomID, childID string) error {
	raw, err := tx.CurrentStateEventPDU(ctx, roomID, "m.space.child", childID)
	if errors.Is(err, store.ErrNotFound) {
		return tx.DeleteSpaceChild(ctx, roomID, childID)
	}
	if err != nil {
		return fmt.Errorf("space child: %w", err)
	}
	return s.putChild(ctx, tx, roomID, childID, raw)
}

func (s *Service) putChild(ctx context.Context, tx *store.Tx, roomID, childID string, raw []byte) error {
	sc, m := parseState(raw)
	var via []string
	if json.Unmarshal(m["via"], &via) != nil || len(via) == 0 || !strings.HasPrefix(childID, "!") {
		return tx.DeleteSpaceChild(ctx, roomID, childID)
	}
	var suggested bool
	_ = json.Unmarshal(m["suggested"], &suggested)
	return tx.PutSpaceChild(ctx, store.SpaceChild{RoomID: roomID, ChildID: childID, Content: sc.Content, Sender: sc.Sender,
		OriginTS: sc.OriginServerTS, Suggested: suggested})
}

// refreshChildren rebuilds every child link of a room.
func (s *Service) refreshChildren(ctx context.Context, tx *store.Tx, roomID string) error {
	pdus, err := tx.SpaceChildPDUs(ctx, roomID)
	if err != nil {
		return err
	}
	for _, raw := range pdus {
		var k struct {
			StateKey string `json:"state_key"`
		}
		_ = json.Unmarshal(raw, &k)
		if err := s.putChild(ctx, tx, roomID, k.StateKey, raw); err != nil {
			return err
		}
	}
	return nil
}

// Backfill builds the summaries of rooms that have none (rooms created
// before this table existed) and indexes local accounts that are missing
// from the user directory or out of date. It runs once at start.
func (s *Service) Backfill(ctx context.Context) error {
	ids, err := s.store.RoomsWithoutSummary(ctx)
	if err != nil {
		return fmt.Errorf("rooms without summary: %w", err)
	}
	for _, roomID := range ids {
		err := s.store.InTx(ctx, func(tx *store.Tx) error {
			if err := s.refreshSummary(ctx, tx, roomID); err != nil {
				return err
			}
			n, err := tx.CountJoined(ctx, roomID)
			if err != nil {
				return err
			}
			if err := tx.SetSummaryJoined(ctx, roomID, n); err != nil {
				return err
			}
			return s.refreshChildren(ctx, tx, roomID)
		})
		if err != nil {
			return fmt.Errorf("backfill summary of %s: %w", roomID, err)
		}
	}
	if len(ids) > 0 {
		s.log.Info("room summaries built", "rooms", len(ids))
	}
	return s.backfillUsers(ctx)
}

// PublicRoom is one entry of the published room directory (and the base
// of a hierarchy entry): the same on the wire between servers and to
// clients.
type PublicRoom = federation.PublicRoom

func publicRoom(r *store.RoomSummary) PublicRoom {
	jr := r.JoinRule
	if jr == "" {
		// No join rules event: only the creator could ever join.
		jr = "invite"
	}
	return PublicRoom{
		RoomID: r.RoomID, Name: r.Name, Topic: r.Topic, AvatarURL: r.AvatarURL, CanonicalAlias: r.CanonicalAlias,
		NumJoinedMembers: r.JoinedMembers, WorldReadable: r.HistoryVisibility == "world_readable",
		GuestCanJoin: r.GuestAccess == "can_join", JoinRule: jr, RoomType: r.RoomType,
	}
}

// PublicRoomsRequest is the body of POST /publicRooms (and the query of
// GET /publicRooms), for clients and servers alike.
type PublicRoomsRequest struct {
	Limit  *int   `json:"limit,omitempty"`
	Since  string `json:"since,omitempty"`
	Filter *struct {
		GenericSearchTerm string    `json:"generic_search_term,omitempty"`
		RoomTypes         []*string `json:"room_types,omitempty"`
	} `json:"filter,omitempty"`
	IncludeAllNetworks   bool   `json:"include_all_networks,omitempty"`
	ThirdPartyInstanceID string `json:"third_party_instance_id,omitempty"`
}

// queryParams reads an HTTP request's query (httputil.Request), with the
// spec's errors for malformed values.
type queryParams interface {
	Query(name string) string
	QueryInt(name string, def int64) (int64, error)
	QueryBool(name string) (bool, error)
}

// PublicRoomsQuery reads the query parameters of GET /publicRooms (the
// client and the federation endpoint take the same ones).
func PublicRoomsQuery(q queryParams) (PublicRoomsRequest, error) {
	var req PublicRoomsRequest
	if q.Query("limit") != "" {
		n, err := q.QueryInt("limit", 0)
		if err != nil {
			return req, err
		}
		l := int(min(max(n, -1), math.MaxInt32))
		req.Limit = &l
	}
	req.Since = q.Query("since")
	req.ThirdPartyInstanceID = q.Query("third_party_instance_id")
	var err error
	req.IncludeAllNetworks, err = q.QueryBool("include_all_networks")
	return req, err
}

// PublicRoomsResponse is the answer of /publicRooms.
type PublicRoomsResponse struct {
	Chunk     []PublicRoom `json:"chunk"`
	NextBatch string       `json:"next_batch,omitempty"`
	PrevBatch string       `json:"prev_batch,omitempty"`
	Total     *int64       `json:"total_room_count_estimate,omitempty"` // nil: another server gave none
}

// Bounds on the page size of /publicRooms.
const (
	defaultPublicRoomsLimit = 100
	maxPublicRoomsLimit     = 500
	maxSearchTermBytes      = 256
)

// PublicRooms lists this server's published rooms.
func (s *Service) PublicRooms(ctx context.Context, req PublicRoomsRequest) (*PublicRoomsResponse, error) {
	if req.IncludeAllNetworks && req.ThirdPartyInstanceID != "" {
		return nil, errcode.InvalidParam("third_party_instance_id cannot be used with include_all_networks")
	}
	limit := defaultPublicRoomsLimit
	if req.Limit != nil {
		switch l := *req.Limit; {
		case l < 0:
			return nil, errcode.InvalidParam("limit must not be negative")
		case l > 0:
			limit = min(l, maxPublicRoomsLimit)
		}
	}
	q := store.PublicRoomsQuery{Limit: limit + 1}
	if req.Since != "" {
		after, key, err := parseRoomToken(req.Since)
		if err != nil {
			return nil, err
		}
		if after {
			q.After = key
		} else {
			q.Before = key
		}
	}
	if f := req.Filter; f != nil {
		if term := strings.TrimSpace(Fold(f.GenericSearchTerm)); term != "" {
			if len(term) > maxSearchTermBytes {
				return nil, errcode.InvalidParam("generic_search_term is too long")
			}
			q.SearchPattern = "%" + likeEscaper.Replace(term) + "%"
		}
		if len(f.RoomTypes) > 0 {
			q.RoomTypes = []string{}
			for _, t := range f.RoomTypes {
				if t == nil {
					q.RoomTypes = append(q.RoomTypes, "")
				} else if *t != "" {
					q.RoomTypes = append(q.RoomTypes, *t)
				}
			}
		}
	}
	out := &PublicRoomsResponse{Chunk: []PublicRoom{}}
	q.AllNetworks = req.IncludeAllNetworks
	if req.ThirdPartyInstanceID != "" {
		// An application service's network: "as_id|network_id", as the
		// instance ids of /thirdparty/protocols name them.
		asID, network, ok := strings.Cut(req.ThirdPartyInstanceID, "|")
		if !ok || asID == "" || network == "" {
			out.Total = new(int64)
			return out, nil
		}
		q.AppService, q.Network = asID, network
	}
	rows, total, err := s.store.PublicRooms(ctx, q)
	if err != nil {
		return nil, err
	}
	out.Total = &total
	more := len(rows) > limit
	if more {
		if q.Before != nil {
			rows = rows[1:] // the extra row is the earliest one
		} else {
			rows = rows[:limit]
		}
	}
	for _, r := range rows {
		out.Chunk = append(out.Chunk, publicRoom(r))
	}
	if len(rows) > 0 {
		first, last := rows[0], rows[len(rows)-1]
		if (q.Before == nil && more) || q.Before != nil {
			out.NextBatch = roomToken(true, last)
		}
		if q.After != nil || (q.Before != nil && more) {
			out.PrevBatch = roomToken(false, first)
		}
	}
	return out, nil
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// roomToken encodes a position in the public room order: "n" tokens page
// forwards from after the room, "p" tokens backwards from before it.
func roomToken(next bool, r *store.RoomSummary) string {
	kind := "p"
	if next {
		kind = "n"
	}
	return kind + base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(r.JoinedMembers, 10)+" "+r.RoomID))
}

func parseRoomToken(tok string) (bool, *store.RoomKey, error) {
	bad := errcode.InvalidParam("unknown pagination token")
	if len(tok) < 2 || (tok[0] != 'n' && tok[0] != 'p') {
		return false, nil, bad
	}
	raw, err := base64.RawURLEncoding.DecodeString(tok[1:])
	if err != nil {
		return false, nil, bad
	}
	n, roomID, ok := strings.Cut(string(raw), " ")
	members, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || !strings.HasPrefix(roomID, "!") {
		return false, nil, bad
	}
	return tok[0] == 'n', &store.RoomKey{Members: members, RoomID: roomID}, nil
}

// RemotePublicRooms asks another server for its published rooms. get
// selects GET (no filter) over POST.
func (s *Service) RemotePublicRooms(ctx context.Context, server string, req PublicRoomsRequest, get bool) (*PublicRoomsResponse, error) {
	if err := id.ValidServerName(server); err != nil {
		return nil, errcode.InvalidParam("invalid server name")
	}
	if s.remote == nil {
		return nil, errcode.Forbidden("federation is disabled on this server")
	}
	freq := &federation.PublicRoomsRequest{Limit: req.Limit, Since: req.Since, IncludeAllNetworks: req.IncludeAllNetworks, ThirdPartyInstanceID: req.ThirdPartyInstanceID}
	var got *federation.PublicRoomsResponse
	var err error
	if get {
		got, err = s.remote.PublicRooms(ctx, server, freq)
	} else {
		freq.Filter = (*federation.PublicRoomsFilter)(req.Filter)
		got, err = s.remote.SearchPublicRooms(ctx, server, freq)
	}
	if err != nil {
		s.log.Info("remote public rooms failed", "server", server, "err", err)
		return nil, remoteError(server)
	}
	out := &PublicRoomsResponse{Chunk: make([]PublicRoom, 0, len(got.Chunk)), NextBatch: got.NextBatch, PrevBatch: got.PrevBatch, Total: got.Total}
	for _, r := range got.Chunk {
		out.Chunk = append(out.Chunk, PublicRoom(r))
	}
	return out, nil
}

func remoteError(server string) error {
	return &errcode.Error{Code: "M_UNKNOWN", Status: 502, Message: "could not get an answer from " + server}
}

// Visibility returns "public" or "private" for a room known here.
func (s *Service) Visibility(ctx context.Context, roomID string) (string, error) {
	r, err := s.store.GetRoom(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return "", errcode.NotFound("room not found")
	}
	if err != nil {
		return "", err
	}
	if r.Published {
		return "public", nil
	}
	return "private", nil
}

// SetVisibility publishes a room in the directory or takes it out.
// Publishing takes what MayPublish says; unpublishing takes a server
// admin or a member allowed to change the canonical alias, whatever the
// policy (moderators can always take their room out of the list).
func (s *Service) SetVisibility(ctx context.Context, c Caller, roomID, visibility string) error {
	switch visibility {
	case "public", "private":
	default:
		return errcode.InvalidParam("visibility must be public or private")
	}
	if _, err := s.Visibility(ctx, roomID); err != nil {
		return err
	}
	if visibility == "public" {
		if err := s.MayPublish(c); err != nil {
			return err
		}
	}
	if !c.IsAdmin && !s.rooms.CanSendState(ctx, roomID, c.UserID, "m.room.canonical_alias") {
		return errcode.Forbidden("you need the power to change the room's canonical alias to change its directory visibility")
	}
	return s.store.InTx(ctx, func(tx *store.Tx) error {
		return tx.SetRoomPublished(ctx, roomID, visibility == "public")
	})
}

// MayPublish checks directory.room_publication for a caller about to
// publish a room (room-level power is checked separately).
func (s *Service) MayPublish(c Caller) error {
	if s.cfg.Directory.RoomPublication == config.PublicationAdmins && !c.IsAdmin {
		return errcode.Forbidden("only server administrators may publish rooms in the directory")
	}
	return nil
}
