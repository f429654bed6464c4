package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/matrix/signing"
	"luxchat/internal/store"
)

// LastMembershipChange returns the events position of the newest
// membership change known to this process.
func (s *Service) LastMembershipChange() int64 { return s.lastMembership.Load() }

// Notifier is told about committed events so that waiting syncs wake up.
type Notifier interface {
	// RoomEvent: an event at pos was persisted in room; joined are the
	// room's joined members after it (the room's own set: read during the
	// call only, under the room's lock; may be nil), others any user
	// whose membership it ended.
	RoomEvent(roomID string, joined map[string]struct{}, others []string, pos int64)
}

// Service is the rooms domain. It is safe for concurrent use.
type Service struct {
	cfg        *config.Config
	store      *store.Store
	key        signing.KeyPair
	serverName string
	notifier   Notifier
	log        *slog.Logger

	mu    sync.Mutex
	rooms map[string]*Room
	// purging holds the ids of rooms being purged (see shutdown.go).
	purging sync.Map

	events       *genCache[*pdu.Event]
	bases        *genCache[[]byte] // client form of events, see ClientBase
	forms        *genCache[*StateForm]
	versions     sync.Map   // room id → *roomversion.Version
	latest       sync.Map   // room id → newest event position (int64)
	active       *activeLog // rooms by recent event positions, see ActiveSince
	lastCreateTS atomic.Int64
	// lastMembership is the position of the newest membership change;
	// before any change in this process it is the events position at start.
	lastMembership atomic.Int64
	invitePolicies sync.Map // user id → *invitePolicy (nil: none)
	// invitePolicyGens counts each user's ForgetInvitePolicy calls.
	invitePolicyGens sync.Map // user id → *atomic.Int64
	unread           *unreadTracker
	memberships      *membershipCache
	recent           *recentEvents
	views            *roomViews        // what initial syncs read of rooms, see views.go
	gaps             timelineGaps      // see gaps.go
	entries          *genCache[string] // "group\x00type\x00key" → event id ("" when absent)
	visibility       *genCache[string] // state group → its history visibility (see visibilityAt)
	memberAt         *genCache[string] // "group\x00m.room.member\x00user" → the user's membership there, from stored views
	viewsDirty       viewsDirty        // rooms whose stored view is missing or stale, see storedviews.go

	rel BundleCache // bundled aggregations, see relations.go

	erased erasedSenders // erased users whose events are served redacted, see erased.go

	bf       backfillPositions // of history fetched from other servers, see backfill.go
	outliers outlierPositions  // see received.go

	remote Remote        // rooms over federation (package roomfed); may be nil
	ps     partialStates // rooms joined with partial state, see partialstate.go
	hooks  Hooks         // what other domains do as events commit
}

// New returns the rooms service; hooks are what the other domains do as
// events commit (the server's wiring lists them), remote what reaches
// other servers (the server's wiring passes the room federation).
func New(cfg *config.Config, st *store.Store, key signing.KeyPair, n Notifier, log *slog.Logger, hooks Hooks, remote Remote) *Service {
	s := &Service{
		cfg: cfg, store: st, key: key, serverName: cfg.ServerName, notifier: n, log: log, hooks: hooks, remote: remote,
		rooms:  map[string]*Room{},
		events: newGenCache[*pdu.Event](4000),
		// The timelines of an initial sync of 1,000 rooms (11,000 events)
		// fit in a generation.
		bases: newSizedGenCache(6<<20, func(b []byte) int { return 64 + len(b) + 44 }),
		// The members of a few rooms of 10,000 (a generation holds one).
		forms:       newGenCache[*StateForm](20000),
		entries:     newGenCache[string](20000),
		visibility:  newGenCache[string](20000),
		memberAt:    newGenCache[string](20000),
		unread:      newUnreadTracker(),
		memberships: newMembershipCache(),
		recent:      newRecentEvents(),
		views:       newRoomViews(viewBytes),
	}
	// Changes before this process started are unknown: count them as
	// happening at the start.
	s.lastMembership.Store(st.Streams.Events.Current())
	s.active = newActiveLog(st.Streams.Events.Current())
	return s
}

// Room is the cached current state of one room and its serial writer.
// Every field is guarded by mu: a *Room is handed out locked (LockRoom)
// and read through its methods until Unlock.
type Room struct {
	mu      sync.Mutex
	id      string
	version *roomversion.Version
	loaded  bool
	// stateDropped: unload dropped the parsed state and its member sets
	// but kept the rest (version, group, extremities, depth, position),
	// which stays current since only a loaded room is written to: the
	// next load reads the state alone.
	stateDropped bool
	state        map[pdu.StateTuple]*pdu.Event
	group        int64          // state group of the current state
	chain        store.ChainPos // where group sits in its delta chain
	extremities  []string
	// recorded: room_extremities names the extremities although there is
	// one (it is not the newest event: see CompleteState).
	recorded bool
	depth    int64
	joined   map[string]struct{}
	servers  map[string]int // joined members per server
	// memberships is every member event of the state as user →
	// membership, so that counts and heroes need no decoding.
	memberships map[string]string
	invited     int // memberships that are "invite"
	// members names the content of joined (see MembershipVersion);
	// membersBefore what it was before the last updateMembers, 0 after
	// a setMembers.
	members, membersBefore uint64
	latestPos              int64
	// used is when LockRoom last handed the room out: TrimStates unloads
	// the rooms used least recently.
	used time.Time
	// gone: the room is being purged (see shutdown.go); a writer that
	// waited for the lock finds it unknown.
	gone bool
}

// membershipVersions hands out the versions of rooms' joined members:
// unique across rooms and process-wide, so that a version kept by a cache
// never names another content, even of a room loaded again.
var membershipVersions atomic.Uint64

// setMembers replaces the members (user → membership).
func (r *Room) setMembers(memberships map[string]string) {
	r.memberships = memberships
	r.joined = make(map[string]struct{})
	r.members, r.membersBefore = membershipVersions.Add(1), 0
	r.servers = make(map[string]int)
	r.invited = 0
	for u, m := range memberships {
		switch m {
		case "join":
			r.joined[u] = struct{}{}
			r.servers[serverOf(u)]++
		case "invite":
			r.invited++
		}
	}
}

// updateMembers applies membership changes (user → new membership).
func (r *Room) updateMembers(members map[string]string) {
	r.membersBefore = r.members
	changed := false
	for u, m := range members {
		if old := r.memberships[u]; old == "invite" {
			r.invited--
		}
		if m == "invite" {
			r.invited++
		}
		r.memberships[u] = m
		_, was := r.joined[u]
		switch {
		case m == "join" && !was:
			r.joined[u] = struct{}{}
			r.servers[serverOf(u)]++
			changed = true
		case m != "join" && was:
			delete(r.joined, u)
			srv := serverOf(u)
			if r.servers[srv]--; r.servers[srv] <= 0 {
				delete(r.servers, srv)
			}
			changed = true
		}
	}
	if changed {
		r.members = membershipVersions.Add(1)
	}
}

// joinedServers lists the servers with joined members.
func (r *Room) joinedServers() []string {
	out := make([]string, 0, len(r.servers))
	for srv := range r.servers {
		out = append(out, srv)
	}
	return out
}

// roomEntry returns the cache entry of a room, made (not loaded) on
// first use.
func (s *Service) roomEntry(roomID string) *Room {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rooms[roomID]
	if !ok {
		r = &Room{id: roomID}
		s.rooms[roomID] = r
	}
	return r
}

// LockRoom returns the locked state of a room, loading it on first use;
// the caller unlocks it. ErrUnknownRoom when the room does not exist here.
func (s *Service) LockRoom(ctx context.Context, roomID string) (*Room, error) {
	if s.isPurging(roomID) {
		return nil, ErrUnknownRoom
	}
	r := s.roomEntry(roomID)
	r.mu.Lock()
	if r.gone {
		r.mu.Unlock()
		return nil, ErrUnknownRoom
	}
	r.used = time.Now()
	if r.loaded {
		return r, nil
	}
	if err := s.load(ctx, r); err != nil {
		r.mu.Unlock()
		// Unknown room ids must not accumulate in the map.
		s.mu.Lock()
		if s.rooms[roomID] == r && !r.loaded {
			delete(s.rooms, roomID)
		}
		s.mu.Unlock()
		return nil, err
	}
	return r, nil
}

// ErrUnknownRoom is returned for rooms this server does not know.
var ErrUnknownRoom = errcode.NotFound("unknown room")

func (s *Service) load(ctx context.Context, r *Room) error {
	if r.stateDropped {
		if err := s.loadState(ctx, r); err != nil {
			return err
		}
		r.loaded, r.stateDropped = true, false
		return nil
	}
	room, err := s.store.GetRoom(ctx, r.id)
	if errors.Is(err, store.ErrNotFound) {
		return ErrUnknownRoom
	}
	if err != nil {
		return err
	}
	v, ok := roomversion.Get(room.Version)
	if !ok {
		return fmt.Errorf("room %s has unknown version %q", r.id, room.Version)
	}
	r.version = v
	if err := s.loadState(ctx, r); err != nil {
		return err
	}
	latest, err := s.store.RoomEvents(ctx, r.id, 0, 1<<62, true, 1)
	if err != nil || len(latest) == 0 {
		return fmt.Errorf("load latest event: %w", err)
	}
	// room_extremities lists forward extremities only once the room's event
	// graph has forked; a linear room's only extremity is its newest event.
	if r.extremities, err = s.store.Extremities(ctx, r.id); err != nil {
		return err
	}
	r.recorded = len(r.extremities) > 0
	if len(r.extremities) == 0 {
		r.extremities = []string{latest[0].EventID}
	}
	for _, x := range r.extremities {
		ev, err := s.Event(ctx, x)
		if err != nil {
			return err
		}
		r.depth = max(r.depth, ev.Depth)
	}
	r.latestPos = latest[0].Pos
	s.latest.Store(r.id, r.latestPos)
	r.group = room.StateGroup
	if r.chain, err = s.store.StateGroupChain(ctx, r.group); err != nil {
		return fmt.Errorf("load state group: %w", err)
	}
	r.loaded = true
	return nil
}

// loadState reads a room's current state into r.state and its member
// sets; the caller holds r.mu.
func (s *Service) loadState(ctx context.Context, r *Room) error {
	ids, err := s.store.CurrentState(ctx, r.id)
	if err != nil {
		return fmt.Errorf("load state: %w", err)
	}
	list := make([]string, 0, len(ids))
	for _, id := range ids {
		list = append(list, id)
	}
	evs, err := s.Events(ctx, list)
	if err != nil {
		return err
	}
	r.state = make(map[pdu.StateTuple]*pdu.Event, len(ids))
	memberships := map[string]string{}
	for _, ev := range evs {
		r.state[ev.Tuple()] = ev
		if ev.Type == "m.room.member" && ev.StateKey != nil {
			memberships[*ev.StateKey] = MembershipOf(ev)
		}
	}
	r.setMembers(memberships)
	return nil
}

// Version returns a room's version, or an M_NOT_FOUND error.
func (s *Service) Version(ctx context.Context, roomID string) (*roomversion.Version, error) {
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return nil, err
	}
	defer r.mu.Unlock()
	return r.version, nil
}

// Event returns a parsed event by id from the cache or the store.
func (s *Service) Event(ctx context.Context, id string) (*pdu.Event, error) {
	if ev, ok := s.events.get(id); ok {
		return ev, nil
	}
	row, err := s.store.GetEvent(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.ParseRow(ctx, row)
}

// Events returns parsed events by id (missing ones are skipped).
func (s *Service) Events(ctx context.Context, ids []string) ([]*pdu.Event, error) {
	out := make([]*pdu.Event, 0, len(ids))
	var missing []string
	for _, id := range ids {
		if ev, ok := s.events.get(id); ok {
			out = append(out, ev)
		} else {
			missing = append(missing, id)
		}
	}
	rows, err := s.store.GetEvents(ctx, missing)
	if err != nil {
		return nil, err
	}
	parsed, err := s.parseRows(ctx, rows)
	if err != nil {
		return nil, err
	}
	return append(out, parsed...), nil
}

func (s *Service) ParseRow(ctx context.Context, row *store.EventRow) (*pdu.Event, error) {
	v, err := s.VersionOf(ctx, row.RoomID)
	if err != nil {
		return nil, err
	}
	ev, err := pdu.ParseStored(row.JSON(), v, row.EventID)
	if err != nil {
		return nil, fmt.Errorf("parse stored event %s: %w", row.EventID, err)
	}
	s.events.put(ev.ID, ev)
	return ev, nil
}

// VersionOf returns a room's version without taking the room's writer lock
// (which the caller may hold). Versions never change, so they are cached.
func (s *Service) VersionOf(ctx context.Context, roomID string) (*roomversion.Version, error) {
	if v, ok := s.versions.Load(roomID); ok {
		return v.(*roomversion.Version), nil
	}
	room, err := s.store.GetRoom(ctx, roomID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrUnknownRoom
	}
	if err != nil {
		return nil, fmt.Errorf("room %s: %w", roomID, err)
	}
	v, ok := roomversion.Get(room.Version)
	if !ok {
		return nil, fmt.Errorf("room %s: unknown version %q", roomID, room.Version)
	}
	s.versions.Store(roomID, v)
	return v, nil
}

func MembershipOf(ev *pdu.Event) string {
	var c struct {
		Membership string `json:"membership"`
	}
	_ = json.Unmarshal(ev.Content, &c)
	return c.Membership
}

func serverOf(s string) string {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[i+1:]
	}
	return ""
}
