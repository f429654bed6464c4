package rooms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/matrix/signing"
	"luxchat/internal/store"
)

// Proto is an event a local user asks to send.
type Proto struct {
	Type     string
	StateKey *string
	Sender   string
	Content  json.RawMessage
	// Redacts is the target of an m.room.redaction.
	Redacts string
	// OriginTS, when not 0, is the event's origin_server_ts instead of
	// now: an application service's timestamp massaging (?ts=).
	OriginTS int64
}

// Txn identifies a client transaction for idempotent sends.
type Txn struct {
	DeviceID string
	ID       string // the client's transaction id, echoed in unsigned
	// Scope distinguishes endpoints and rooms: like other servers, a
	// transaction is identified by the request path, not the id alone.
	Scope string
}

func (t *Txn) key() string { return strconv.Itoa(len(t.Scope)) + ":" + t.Scope + t.ID }

// LookupTxn returns the event sender sent under txn, or store.ErrNotFound.
func (s *Service) LookupTxn(ctx context.Context, sender string, txn *Txn) (string, error) {
	return s.store.LookupTxnID(ctx, sender, txn.DeviceID, txn.key())
}

// MaxEventBytes is the spec's limit on a PDU.
const MaxEventBytes = 65536

// Send builds, authorises and persists one event. With a txn, a repeated
// transaction returns the first event and stores nothing.
func (s *Service) Send(ctx context.Context, roomID string, p Proto, txn *Txn) (string, error) {
	if p.Type == "m.room.member" && p.StateKey != nil && membershipOfContent(p.Content) == "invite" {
		if err := s.CheckInvite(ctx, *p.StateKey, p.Sender); err != nil {
			return "", err
		}
	}
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return "", err
	}
	defer r.mu.Unlock()
	// Transactions are checked optimistically: the common first attempt
	// costs no look-up, and a repeat is caught by the txn_ids key inside
	// the commit (or, if the event would now be refused, looked up here).
	earlier := func(err error) (string, error) {
		if txn != nil {
			if id, lerr := s.store.LookupTxnID(ctx, p.Sender, txn.DeviceID, txn.key()); lerr == nil {
				return id, nil
			}
		}
		return "", err
	}
	b := s.newBatch(r)
	if _, err := s.add(ctx, b, p); err != nil {
		return earlier(err)
	}
	b.events[0].txn = txn
	if err := s.Commit(ctx, b); err != nil {
		if errors.Is(err, store.ErrExists) && txn != nil {
			return earlier(err)
		}
		return "", err
	}
	return b.events[0].ev.ID, nil
}

// batch is a run of events built on top of a room's cached state, committed
// in one transaction. overlay holds the state the batch has changed.
type Batch struct {
	r       *Room
	roomID  string
	overlay map[pdu.StateTuple]*pdu.Event
	prev    []string
	depth   int64
	events  []*pending
	// For a new room: its alias and directory visibility.
	alias   string
	publish bool
	// origin is the sending server for events received over federation.
	origin string
	// announcedBy is the server that announces the batch's events built
	// here (see Committed.AnnouncedBy).
	announcedBy string
}

type pending struct {
	pos      int64
	ev       *pdu.Event
	replaced *pdu.Event // state event this one replaces, if any
	txn      *Txn
	remote   bool // received over federation: may replace a stored outlier
}

func (s *Service) newBatch(r *Room) *Batch {
	return &Batch{r: r, roomID: r.id, overlay: map[pdu.StateTuple]*pdu.Event{}, prev: r.extremities, depth: r.depth}
}

func (b *Batch) Lookup(t pdu.StateTuple) *pdu.Event {
	if ev, ok := b.overlay[t]; ok {
		return ev
	}
	return b.r.state[t]
}

// add builds and authorises one event against the batch's state.
func (s *Service) add(ctx context.Context, b *Batch, p Proto) (*pdu.Event, error) {
	v := b.r.version
	if p.Content == nil {
		p.Content = json.RawMessage("{}")
	}
	fields := eventauth.Fields{Version: v, Type: p.Type, Sender: p.Sender, StateKey: p.StateKey, Content: p.Content}
	var authIDs []string
	for _, t := range eventauth.SelectAuthEvents(fields) {
		if ev := b.Lookup(t); ev != nil {
			authIDs = append(authIDs, ev.ID)
		}
	}
	roomID := b.roomID
	if p.Type == "m.room.create" && v.RoomIDFromCreate {
		roomID = ""
	}
	proto := pdu.Proto{
		RoomID: roomID, Sender: p.Sender, Type: p.Type, StateKey: p.StateKey, Content: p.Content,
		PrevEvents: b.prev, AuthEvents: authIDs, Depth: b.depth + 1,
		OriginServerTS: time.Now().UnixMilli(), Redacts: p.Redacts,
	}
	if p.OriginTS > 0 {
		proto.OriginServerTS = p.OriginTS
	}
	if p.Type == "m.room.create" {
		proto.OriginServerTS = s.createTS()
	}
	if v.EventFormat == roomversion.FormatV1 {
		// Version 1 and 2 events reference others with their hashes.
		var err error
		if proto.RefHashes, err = s.refHashes(ctx, b, append(slices.Clone(b.prev), authIDs...)); err != nil {
			return nil, err
		}
	}
	ev, err := pdu.Build(proto, v, s.serverName, s.key)
	if err != nil {
		if len(p.Content) > MaxEventBytes {
			return nil, errcode.TooLarge("event too large")
		}
		return nil, errcode.BadJSON("invalid event: %v", err)
	}
	if len(ev.JSON()) > MaxEventBytes {
		return nil, errcode.TooLarge("event is larger than %d bytes", MaxEventBytes)
	}
	if err := eventauth.Check(ev, eventauth.AuthEventsFunc(b.Lookup), eventauth.WithSignatureCheck(s.signedBy)); err != nil {
		var na *eventauth.NotAllowed
		if errors.As(err, &na) {
			if na.Malformed {
				return nil, errcode.BadJSON("%s", na.Reason)
			}
			return nil, errcode.Forbidden("%s", na.Reason)
		}
		return nil, fmt.Errorf("auth: %w", err)
	}
	pe := &pending{ev: ev}
	if ev.IsState() {
		pe.replaced = b.Lookup(ev.Tuple())
		b.overlay[ev.Tuple()] = ev
	}
	if b.roomID == "" {
		b.roomID = "!" + ev.ID[1:]
	}
	b.prev, b.depth = []string{ev.ID}, ev.Depth
	b.events = append(b.events, pe)
	return ev, nil
}

// signedBy reports whether a server signed an event. Events built here are
// signed by this server only; federation will verify remote signatures.
func (s *Service) signedBy(ev *pdu.Event, server string) bool {
	if server != s.serverName {
		return false
	}
	sigs, err := signing.Signatures(ev.JSON())
	if err != nil {
		return false
	}
	_, ok := sigs[server][s.key.ID()]
	return ok
}

// createTS returns a timestamp for a create event that is later than any
// given before: from room version 12 the room id is the create event's hash,
// so two rooms created by one user in the same millisecond would collide.
func (s *Service) createTS() int64 {
	for {
		last := s.lastCreateTS.Load()
		ts := max(time.Now().UnixMilli(), last+1)
		if s.lastCreateTS.CompareAndSwap(last, ts) {
			return ts
		}
	}
}

// refHashes returns the reference hashes of events, for format v1 PDUs.
func (s *Service) refHashes(ctx context.Context, b *Batch, ids []string) (map[string]string, error) {
	out := make(map[string]string, len(ids))
	for _, id := range ids {
		var ev *pdu.Event
		for _, pe := range b.events {
			if pe.ev.ID == id {
				ev = pe.ev
			}
		}
		if ev == nil {
			var err error
			if ev, err = s.Event(ctx, id); err != nil {
				return nil, fmt.Errorf("referenced event %s: %w", id, err)
			}
		}
		h := ev.ReferenceHash()
		out[id] = signing.EncodeBase64(h[:])
	}
	return out, nil
}

// commit persists a batch in one transaction, then updates the room cache
// and wakes up syncs. The caller holds b.r.mu.
func (s *Service) Commit(ctx context.Context, b *Batch) error {
	r := b.r
	group, chain := r.group, r.chain
	var lastPos int64
	members := map[string]string{} // user → membership changed by the batch
	var recorded []int64
	var rows []*store.EventRow
	err := s.store.InTxGrouped(ctx, func(tx *store.Tx) error {
		// A grouped commit may run this again after a rollback: start from
		// the cached state and take back what the last attempt published.
		group, chain, lastPos = r.group, r.chain, 0
		clear(members)
		for _, pos := range recorded {
			s.unread.forget(b.roomID, pos)
		}
		recorded = recorded[:0]
		if len(rows) > 0 {
			s.recent.drop(b.roomID)
			rows = rows[:0]
		}
		if !r.loaded {
			creator := b.events[0].ev.Sender
			if err := tx.CreateRoom(ctx, store.Room{RoomID: b.roomID, Version: r.version.ID, Creator: creator}); err != nil {
				if errors.Is(err, store.ErrExists) {
					return errcode.RoomInUse("room already exists")
				}
				return err
			}
			if b.alias != "" {
				if err := tx.PutAlias(ctx, b.alias, b.roomID, creator); errors.Is(err, store.ErrExists) {
					return errcode.RoomInUse("room alias already taken")
				} else if err != nil {
					return err
				}
			}
			if b.publish {
				if err := tx.SetRoomPublished(ctx, b.roomID, true); err != nil {
					return err
				}
			}
		}
		if len(r.extremities) > 1 || r.recorded {
			// The batch's first event merges a fork (or follows a recorded
			// extremity): the room is linear again.
			if err := tx.ClearExtremities(ctx, b.roomID); err != nil {
				return err
			}
		}
		if err := deleteRemoteOutliers(ctx, tx, b); err != nil {
			return err
		}
		for _, pe := range b.events {
			ev := pe.ev
			pos := tx.Alloc(s.store.Streams.Events)
			lastPos = pos
			pe.pos = pos
			row, err := s.persist(ctx, tx, b, pe, group, func() error {
				if !ev.IsState() {
					return nil
				}
				k := store.StateKey{Type: ev.Type, StateKey: *ev.StateKey}
				// The state after ev, built only when a snapshot is due.
				full := func() store.StateMap {
					m := r.StateIDs()
					for _, q := range b.events {
						if q == pe {
							break
						}
						if q.ev.IsState() {
							m[store.StateKey{Type: q.ev.Type, StateKey: *q.ev.StateKey}] = q.ev.ID
						}
					}
					m[k] = ev.ID
					return m
				}
				var err error
				group, chain, err = tx.NewStateGroup(ctx, b.roomID, group, chain, store.StateMap{k: ev.ID}, len(r.state)+len(b.overlay), full)
				if err != nil {
					return err
				}
				if err := tx.SetCurrentState(ctx, b.roomID, k, ev.ID); err != nil {
					return err
				}
				if ev.Type == "m.room.member" {
					m := MembershipOf(ev)
					members[*ev.StateKey] = m
					return s.setMembership(ctx, tx, store.Membership{RoomID: b.roomID, UserID: *ev.StateKey, Membership: m, EventID: ev.ID, Pos: pos})
				}
				return nil
			})
			if err != nil {
				return err
			}
			rows = append(rows, row)
			// Local events extend the graph linearly, so the newest event is
			// the room's only forward extremity and nothing is written for
			// it (see load); forks arrive with federation.
		}
		if group != r.group {
			if err := tx.SetRoomStateGroup(ctx, b.roomID, group); err != nil {
				return err
			}
		}
		// Publish the room's newest position and its unread entries before
		// the stream position can become visible (that happens as the
		// transaction ends): a sync that sees the new position must neither
		// skip this room as idle nor miss an unread message. On rollback
		// the latest position is merely too high (a wasted query) and the
		// unread entries are taken back below.
		s.setLatest(b.roomID, lastPos)
		if len(members) > 0 {
			s.noteMembershipChange(lastPos)
		}
		for _, row := range rows {
			s.recent.add(row, r.latestPos)
		}
		for _, pe := range b.events {
			if s.countsMessages(pe.ev) {
				s.unread.record(b.roomID, pe.pos, pe.ev.Sender, r.latestPos)
				recorded = append(recorded, pe.pos)
			}
		}
		return nil
	})
	if err != nil {
		for _, pos := range recorded {
			s.unread.forget(b.roomID, pos)
		}
		if len(rows) > 0 {
			s.recent.drop(b.roomID)
		}
		return err
	}
	// Committed: publish the new state to the cache.
	if !r.loaded {
		r.id = b.roomID
		r.state = map[pdu.StateTuple]*pdu.Event{}
		r.setMembers(map[string]string{})
		r.loaded, r.used = true, time.Now()
		s.mu.Lock()
		s.rooms[b.roomID] = r
		s.mu.Unlock()
		s.versions.Store(b.roomID, r.version)
	}
	for t, ev := range b.overlay {
		r.state[t] = ev
	}
	r.updateMembers(members)
	for _, pe := range b.events {
		s.events.put(pe.ev.ID, pe.ev)
	}
	r.group, r.chain = group, chain
	s.rememberVisibility(r)
	r.extremities, r.depth, r.latestPos = b.prev, b.depth, lastPos
	r.recorded = false // cleared above when it was set
	s.announce(r, b, members, lastPos)
	return nil
}

// stateIDs returns the room's current state as ids. Caller holds r.mu.
func (r *Room) StateIDs() store.StateMap {
	m := make(store.StateMap, len(r.state)+8)
	for t, ev := range r.state {
		m[store.StateKey{Type: t.Type, StateKey: t.StateKey}] = ev.ID
	}
	return m
}

// unsignedFor is the server-computed unsigned data stored with an event.
func unsignedFor(pe *pending) []byte {
	if pe.replaced == nil {
		return []byte("{}")
	}
	u := map[string]any{
		"replaces_state": pe.replaced.ID,
		"prev_content":   pe.replaced.Content,
		"prev_sender":    pe.replaced.Sender,
	}
	data, _ := json.Marshal(u)
	return data
}

// applyRedaction redacts the target of a redaction event when the rules of
// "Handling redactions" allow it: the target is in the same room and the
// redaction's sender has the redact power level or sent the target.
func (s *Service) applyRedaction(ctx context.Context, tx *store.Tx, b *Batch, red *pdu.Event) error {
	row, err := tx.GetEvent(ctx, red.Redacts)
	if errors.Is(err, store.ErrNotFound) {
		return nil // the spec lets a redaction of an unknown event through
	}
	if err != nil {
		return err
	}
	if row.RoomID != b.roomID || row.Redacted {
		return nil
	}
	if row.Type == "m.room.create" {
		return nil
	}
	pl := eventauth.RoomPowerLevels(b.Lookup(pdu.StateTuple{Type: "m.room.create"}), b.Lookup(pdu.StateTuple{Type: "m.room.power_levels"}))
	if row.Sender != red.Sender && pl.UserLevel(red.Sender) < pl.Redact() {
		return nil
	}
	redacted, err := pdu.Redact(row.JSON(), b.r.version)
	if err != nil {
		return fmt.Errorf("redact %s: %w", row.EventID, err)
	}
	var u map[string]json.RawMessage
	if err := json.Unmarshal(row.Unsigned, &u); err != nil || u == nil {
		u = map[string]json.RawMessage{}
	}
	// A redacted state event keeps no trace of the content it replaced.
	delete(u, "prev_content")
	u["redacted_because"] = s.ClientJSON(red.JSON(), red.ID, b.roomID, nil)
	unsigned, _ := json.Marshal(u)
	if err := tx.RedactEvent(ctx, row, redacted, unsigned); err != nil {
		return err
	}
	if err := tx.DeleteMediaRefs(ctx, row.EventID); err != nil {
		return err
	}
	s.recent.drop(b.roomID) // its rows may hold the redacted event
	tx.OnCommit(func() {
		s.events.drop(row.EventID)
		s.bases.drop(row.EventID)
		s.forms.drop(row.EventID)
		s.views.drop(b.roomID)
		// A redacted current state event stays in the state, redacted.
		if ev, err := pdu.Parse(redacted, b.r.version); err == nil && ev.IsState() {
			if cur := b.r.state[ev.Tuple()]; cur != nil && cur.ID == ev.ID {
				b.r.state[ev.Tuple()] = ev
			}
		}
	})
	return nil
}

// localMediaIDs returns the ids of this server's media named by mxc URIs in
// an event's content, so that media whose every reference is redacted can
// be purged.
func localMediaIDs(content []byte, serverName string) []string {
	prefix := []byte("mxc://" + serverName + "/")
	var ids []string
	for rest := content; ; {
		i := bytes.Index(rest, prefix)
		if i < 0 {
			return ids
		}
		rest = rest[i+len(prefix):]
		n := 0
		for n < len(rest) && isMediaIDByte(rest[n]) {
			n++
		}
		if n > 0 && n <= 255 && (n == len(rest) || rest[n] == '"') && !slices.Contains(ids, string(rest[:n])) {
			ids = append(ids, string(rest[:n]))
		}
		rest = rest[n:]
	}
}

func isMediaIDByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// CheckRedactionTarget refuses the redaction of an event this server does
// not have in a room no other server takes part in, where no such event
// can exist. In a federated room the event may yet arrive (or exist only
// elsewhere), so its redaction is sent all the same.
func (s *Service) CheckRedactionTarget(ctx context.Context, roomID, eventID string) error {
	if ev, err := s.Event(ctx, eventID); err == nil {
		if pdu.RoomIDForCreate(ev) != roomID {
			return errcode.NotFound("event %s is not in this room", eventID)
		}
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	servers, err := s.RoomServers(ctx, roomID)
	if err != nil {
		return err
	}
	if len(servers) <= 1 {
		return errcode.NotFound("unknown event %s", eventID)
	}
	return nil
}

// SendState sends a client's state event, unless the room's current state
// already holds the same content from the same sender: then that event's
// id is the answer, as setting state twice changes nothing (clients
// re-send their settings, and a duplicate would notify every member).
func (s *Service) SendState(ctx context.Context, roomID string, p Proto) (string, error) {
	return s.sendState(ctx, roomID, p, nil)
}

// DelayedTxnDevice stands, in the device of an event's transaction, for
// the server sending a delayed event (MSC4140) for its user: no device id
// holds a space. The transaction id is the delay id, which the sender's
// clients see in unsigned as org.matrix.msc4140.delay_id; and a delayed
// event so cannot enter a room twice.
const DelayedTxnDevice = " msc4140"

// SendDelayed sends a delayed event (MSC4140) as SendState (a state
// event) or Send does, under the transaction of its delay id.
func (s *Service) SendDelayed(ctx context.Context, roomID string, p Proto, delayID string) (string, error) {
	txn := &Txn{DeviceID: DelayedTxnDevice, ID: delayID, Scope: "msc4140"}
	if p.StateKey != nil {
		return s.sendState(ctx, roomID, p, txn)
	}
	return s.Send(ctx, roomID, p, txn)
}

func (s *Service) sendState(ctx context.Context, roomID string, p Proto, txn *Txn) (string, error) {
	if p.StateKey != nil && p.Type == "m.room.member" && *p.StateKey == p.Sender {
		p.Content = s.withoutStaleAuthoriser(ctx, roomID, p.Sender, p.Content)
	}
	if p.StateKey != nil && p.Type != "m.room.member" {
		r, err := s.LockRoom(ctx, roomID)
		if err != nil {
			return "", err
		}
		cur := r.state[pdu.StateTuple{Type: p.Type, StateKey: *p.StateKey}]
		r.mu.Unlock()
		if cur != nil && cur.Sender == p.Sender && sameJSON(cur.Content, p.Content) {
			return cur.ID, nil
		}
	}
	return s.Send(ctx, roomID, p, txn)
}

// withoutStaleAuthoriser drops join_authorised_via_users_server from a
// join of a user already joined (a profile change): only a join into the
// room is authorised by someone, and nobody's server signs the profile
// change for them.
func (s *Service) withoutStaleAuthoriser(ctx context.Context, roomID, userID string, content json.RawMessage) json.RawMessage {
	var c map[string]json.RawMessage
	if json.Unmarshal(content, &c) != nil {
		return content
	}
	if _, ok := c["join_authorised_via_users_server"]; !ok || membershipOfContent(content) != "join" {
		return content
	}
	r, err := s.LockRoom(ctx, roomID)
	if err != nil {
		return content
	}
	cur := r.state[pdu.StateTuple{Type: "m.room.member", StateKey: userID}]
	r.mu.Unlock()
	if cur == nil || MembershipOf(cur) != "join" {
		return content
	}
	delete(c, "join_authorised_via_users_server")
	return mustJSON(c)
}

// sameJSON reports whether two JSON values are equal as values.
func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
