package exchange

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	gosync "sync"
	"sync/atomic"
	"time"

	"luxchat/internal/e2ee"
	"luxchat/internal/federation"
	"luxchat/internal/roomfed"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
	"luxchat/internal/sync"
)

// Service connects the domain services to other servers. It is safe for
// concurrent use.
type Service struct {
	self    string
	queue   *federation.Queue
	client  *federation.Client
	store   *store.Store
	rooms   *rooms.Service
	roomfed *roomfed.Service // takes the PDUs of inbound transactions
	sync    *sync.Service
	e2ee    *e2ee.Service
	log     *slog.Logger

	// devMu serialises device list announcements, so that stream ids and
	// snapshots of one user never interleave.
	devMu gosync.Mutex
	devWG gosync.WaitGroup

	lastSweep atomic.Int64 // unix ms of the last sweep of to-device message ids

	txns txnLocks // inbound transactions being run, see ReceiveTransaction

	// remoteRooms maps a room id to whether its joined members include
	// users of other servers (as of the last committed batch); rooms not
	// in it are treated as having some.
	remoteRooms gosync.Map
	// bootTS is when this process started: Recover leaves younger fan-out
	// rows to OnCommitted.
	bootTS int64

	// HoldFanout, when set, makes OnCommitted leave committed events to
	// Recover, as a crash right after the commit would (tests only).
	HoldFanout atomic.Bool
}

// New returns the service. client may be nil in tests that only queue.
func New(self string, q *federation.Queue, client *federation.Client, st *store.Store, rs *rooms.Service, rf *roomfed.Service, ss *sync.Service, es *e2ee.Service, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{self: self, queue: q, client: client, store: st, rooms: rs, roomfed: rf, sync: ss, e2ee: es, log: log, bootTS: time.Now().UnixMilli()}
}

// Outbound is what syncs tell other servers: local typing, receipts and
// presence (sync.Hooks.Federation).
func (s *Service) Outbound() sync.Federation { return outbound{s} }

// RemoteKeys queries other servers for their users' keys
// (e2ee.Hooks.Remote).
func (s *Service) RemoteKeys() e2ee.Remote { return remoteKeys{s} }

// Close waits for pending device list announcements.
func (s *Service) Close() { s.devWG.Wait() }

// serverOf is the server of a user id taken from room state or a stored
// row (already valid): what follows the first colon, as a localpart
// holds none. It runs once per member on hot paths, so it parses nothing.
func serverOf(userID string) string {
	if len(userID) < 2 || userID[0] != '@' {
		return ""
	}
	if i := strings.IndexByte(userID, ':'); i > 0 {
		return userID[i+1:]
	}
	return ""
}

func (s *Service) isLocal(userID string) bool { return serverOf(userID) == s.self }

// servers returns the distinct servers of users, ourselves excluded.
func (s *Service) servers(users []string) []string {
	var out []string
	for _, u := range users {
		if srv := serverOf(u); srv != "" && srv != s.self && !slices.Contains(out, srv) {
			out = append(out, srv)
		}
	}
	return out
}

// others returns servers without ourselves.
func (s *Service) others(servers []string) []string {
	out := make([]string, 0, len(servers))
	for _, srv := range servers {
		if srv != s.self && srv != "" {
			out = append(out, srv)
		}
	}
	return out
}

// OnCommitted is the rooms listener: events built here go to every other
// server with joined members, and a membership event also to the server
// of the user it concerns (so that a kicked or banned user's server
// hears of it). An event received from another server is never sent back
// to it nor to its sender's server; only membership events are passed
// on to the room's other servers, because a resident server that
// accepted a join, leave or knock through send_join/send_leave/send_knock
// is the one that must announce it (the spec's "Joining Rooms").
func (s *Service) OnCommitted(c rooms.Committed) {
	if len(c.Events) == 0 {
		return
	}
	joined := s.others(c.JoinedServers)
	for _, srv := range c.Servers {
		if srv != s.self && !slices.Contains(joined, srv) {
			joined = append(joined, srv)
		}
	}
	// Which events the indexer recorded, asked before remoteRooms changes.
	var done []string
	for _, ce := range c.Events {
		if _, _, ok := s.fanoutOf(ce.Event); ok && ce.Pos > 0 {
			done = append(done, ce.Event.ID)
		}
	}
	s.remoteRooms.Store(c.RoomID, len(joined) > 0)
	if s.HoldFanout.Load() {
		return
	}
	var sends []federation.PDUSend
	if c.Origin == "" {
		ids := make([]string, 0, len(c.Events))
		for _, ce := range c.Events {
			ids = append(ids, ce.Event.ID)
			// The target of a leave, kick or ban hears of it even when its
			// server has no one left in the room; an invitee's server got
			// the invite through /invite, and knows nothing else of the room.
			ev := ce.Event
			if ev.Type == "m.room.member" && ev.StateKey != nil && !isInvite(ev.Content) {
				if srv := serverOf(*ev.StateKey); srv != "" && srv != s.self && !slices.Contains(joined, srv) {
					sends = append(sends, federation.PDUSend{Destinations: []string{srv}, EventIDs: []string{ev.ID}})
				}
			}
		}
		// A join made through send_join is the resident server's to
		// send to the room (it did, once it accepted it).
		if dests := joined; c.AnnouncedBy == "" && len(dests) > 0 {
			sends = append(sends, federation.PDUSend{Destinations: dests, EventIDs: ids})
		}
		s.queue.Fanout(sends, done)
		return
	}
	for _, ce := range c.Events {
		if ce.Event.Type != "m.room.member" {
			continue
		}
		dests := slices.DeleteFunc(slices.Clone(joined), func(srv string) bool {
			return srv == c.Origin || srv == serverOf(ce.Event.Sender)
		})
		if len(dests) > 0 {
			sends = append(sends, federation.PDUSend{Destinations: dests, EventIDs: []string{ce.Event.ID}})
		}
	}
	s.queue.Fanout(sends, done)
}

// roommateServers returns the other servers sharing a joined room with
// userID.
func (s *Service) roommateServers(ctx context.Context, userID string) []string {
	mates, err := s.store.Roommates(ctx, userID)
	if err != nil {
		s.log.Warn("federation: list roommates", "user", userID, "err", err)
		return nil
	}
	out := s.servers(mates)
	// Rooms joined with partial state: their listed servers too.
	for _, srv := range s.rooms.PartialServersOfUser(ctx, userID) {
		if srv != s.self && !slices.Contains(out, srv) {
			out = append(out, srv)
		}
	}
	return out
}

// isInvite reports whether member event content is an invite.
func isInvite(content json.RawMessage) bool {
	var c struct {
		Membership string `json:"membership"`
	}
	return json.Unmarshal(content, &c) == nil && c.Membership == "invite"
}
