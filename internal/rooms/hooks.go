package rooms

import (
	"context"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// Indexer writes rows derived from an event (relations, search terms)
// inside the transaction that persists it, so that the derived rows and
// the event commit or roll back together. It must not block on anything
// but the transaction, and must only write through tx: the transaction may
// be rolled back and run again (commits are grouped on PostgreSQL). It must
// not take a room's lock: other rooms' writers wait on the same group.
type Indexer func(ctx context.Context, tx *store.Tx, ev *pdu.Event, pos int64) error

// Hooks are what other domains do as events enter rooms. The server's
// wiring (internal/server/wiring.go) supplies them, each one function
// that runs its domains in a fixed order; a nil hook does nothing.
type Hooks struct {
	// Index runs in each event's transaction, after the rooms' own
	// derived rows (relations, gaps before backfilled history).
	Index Indexer
	// Committed runs after each commit, under the room's writer lock.
	Committed Listener
	// FullState runs in the transaction that completes a partial-state
	// room's state.
	FullState FullStateHook
	// ServersFound is told, after that commit, of the servers with
	// members in the room that the partial state did not show, and of the
	// room's local members.
	ServersFound func(roomID string, localMembers, servers []string)
	// ReadMoved is told, before the receipt becomes visible, that a
	// user's read receipt in a room moved.
	ReadMoved func(roomID, userID string)
}

// Committed describes events that one pipeline run persisted.
type Committed struct {
	RoomID string
	Events []CommittedEvent
	// joined is the room's joined members after the events (see
	// JoinedAfter): the room's own set, read during the call only.
	joined map[string]struct{}
	// JoinedServers are the servers of Joined, ours included.
	JoinedServers []string
	// Origin is "" for events built here and the sending server's name
	// for events received over federation.
	Origin string
	// AnnouncedBy names the server that announces events built here to
	// the room for us: the resident server of a join made through
	// send_join, which sends it to every server in the room. Such events
	// are sent by us to no one.
	AnnouncedBy string
	// Servers, for a room joined with partial state, are the servers the
	// resident server said were in it (Joined lacks most members).
	Servers []string
	// Memberships are the membership changes of the events (user → new
	// membership), nil when the listeners are told otherwise than after
	// events; MembersBefore and MembersAfter are the room's membership
	// versions before and after them (see MembershipVersion; 0 before:
	// unknown). A cache of the members that matched MembersBefore matches
	// MembersAfter once it applied Memberships.
	Memberships                 map[string]string
	MembersBefore, MembersAfter uint64
}

// JoinedAfter reports whether user is joined after the events. A
// listener may ask during its call only.
func (c Committed) JoinedAfter(user string) bool {
	_, ok := c.joined[user]
	return ok
}

// CommittedEvent is one persisted event with its stream position.
type CommittedEvent struct {
	Event *pdu.Event
	Pos   int64
}

// Listener is told about events after their transaction committed. It runs
// on the sender's goroutine while the room's writer lock is held: it must
// only queue work (push, federation sends), never do it.
type Listener func(c Committed)

// InspectLocked calls f with a room's joined members and current state as
// of before the events being persisted. It is for indexers only: an
// Indexer runs with the room's writer lock held, which is what guards the
// maps f sees; f must neither keep nor modify them. For a room being
// created both maps are nil.
func (s *Service) InspectLocked(roomID string, f func(joined map[string]struct{}, state map[pdu.StateTuple]*pdu.Event)) {
	s.mu.Lock()
	r := s.rooms[roomID]
	s.mu.Unlock()
	if r == nil || !r.loaded {
		f(nil, nil)
		return
	}
	f(r.joined, r.state)
}

// MembershipVersion names the current joined members of a room: it
// changes whenever they do, and never names other members, of this room
// or of another (0: the room is not loaded). It is for indexers, under
// the room's writer lock, to tell whether what they keep about the
// members is current; Committed then tells how it changed.
func (s *Service) MembershipVersion(roomID string) uint64 {
	s.mu.Lock()
	r := s.rooms[roomID]
	s.mu.Unlock()
	if r == nil || !r.loaded {
		return 0
	}
	return r.members
}

// indexEvent does an event's derived writes in its transaction: a
// redaction's effect on its target, then the indexers.
func (s *Service) indexEvent(ctx context.Context, tx *store.Tx, b *Batch, pe *pending) error {
	ev := pe.ev
	if ev.Type == "m.room.redaction" && ev.Redacts != "" {
		if err := s.applyRedaction(ctx, tx, b, ev); err != nil {
			return err
		}
	}
	// An event built here on the room's cached extremities (not a join
	// through another server, whose batch has no room) cites timeline
	// events only.
	return s.runIndexers(ctx, tx, ev, pe.pos, b.r != nil && !pe.remote)
}

// setMembership writes a user's membership of a room in tx (see
// membershipsChanged).
func (s *Service) setMembership(ctx context.Context, tx *store.Tx, m store.Membership) error {
	s.membershipsChanged(tx, m.UserID)
	return tx.SetMembership(ctx, m)
}

// membershipsChanged marks a user's memberships changed by tx, now and
// again once committed.
func (s *Service) membershipsChanged(tx *store.Tx, userID string) {
	s.memberships.bump(userID)
	tx.OnCommitted(func() { s.memberships.bump(userID) })
}

// noteMembershipChange raises the position of the newest membership
// change to pos. Called before the position becomes visible; a maximum,
// since rooms commit concurrently on PostgreSQL.
func (s *Service) noteMembershipChange(pos int64) {
	for o := s.lastMembership.Load(); o < pos && !s.lastMembership.CompareAndSwap(o, pos); o = s.lastMembership.Load() {
	}
}

// runIndexers writes the rows derived from an event: the rooms' own,
// then the other domains'.
func (s *Service) runIndexers(ctx context.Context, tx *store.Tx, ev *pdu.Event, pos int64, builtHere bool) error {
	if err := s.indexRelation(ctx, tx, ev, pos); err != nil {
		return err
	}
	if !builtHere {
		if err := s.indexBackwardExtremities(ctx, tx, ev, pos); err != nil {
			return err
		}
	}
	if s.hooks.Index == nil {
		return nil
	}
	return s.hooks.Index(ctx, tx, ev, pos)
}

// tellListeners tells the listeners about a batch. Caller holds r.mu.
func (s *Service) tellListeners(r *Room, b *Batch, members map[string]string) {
	if s.hooks.Committed == nil {
		return
	}
	c := Committed{RoomID: b.roomID, joined: r.joined, JoinedServers: r.joinedServers(), Origin: b.origin, AnnouncedBy: b.announcedBy, Servers: s.partialServers(b.roomID),
		MembersAfter: r.members}
	if members != nil {
		c.Memberships, c.MembersBefore = members, r.membersBefore
	}
	for _, pe := range b.events {
		c.Events = append(c.Events, CommittedEvent{Event: pe.ev, Pos: pe.pos})
	}
	s.hooks.Committed(c)
}

// joinedUsers lists the room's joined members. Caller holds r.mu.
func (r *Room) joinedUsers() []string {
	out := make([]string, 0, len(r.joined))
	for u := range r.joined {
		out = append(out, u)
	}
	return out
}

// announce wakes the syncs of the room's members, and of the users whose
// membership the batch ended, and tells the listeners. Caller holds r.mu.
func (s *Service) announce(r *Room, b *Batch, members map[string]string, pos int64) {
	if s.notifier != nil {
		var gone []string
		for u, m := range members {
			if m != "join" {
				gone = append(gone, u)
			}
		}
		s.notifier.RoomEvent(r.id, r.joined, gone, pos)
	}
	s.tellListeners(r, b, members)
}
