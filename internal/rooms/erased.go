package rooms

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// Erased senders (GDPR erasure, package gdpr): the events a user sent up
// to their erasure are served redacted to every reader who was not joined
// to the room when the event was sent — Synapse's rule: who was there
// still sees what they saw; who joins later, or reads a world-readable
// room from outside, sees the redacted form. The stored events do not
// change (other readers need them); a copy is redacted per read.

// erasedSenders is the set of erased users, loaded from the store on
// first use. It is safe for concurrent use.
type erasedSenders struct {
	mu     sync.RWMutex
	loaded bool
	upTo   map[string]int64 // user → events position at their erasure
}

// LoadErased reads the erased users at start, so that no read pays for
// it later (erasedUpTo would load them on first use otherwise).
func (s *Service) LoadErased(ctx context.Context) error {
	_, err := s.erasedUpTo(ctx, "")
	return err
}

// erasedUpTo returns the events position up to which sender's events are
// erased, or 0 when they are not.
func (s *Service) erasedUpTo(ctx context.Context, sender string) (int64, error) {
	e := &s.erased
	e.mu.RLock()
	loaded, p := e.loaded, e.upTo[sender]
	e.mu.RUnlock()
	if loaded {
		return p, nil
	}
	m, err := s.store.ErasedUsers(ctx)
	if err != nil {
		return 0, fmt.Errorf("erased users: %w", err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.loaded {
		for u, p := range e.upTo { // marked while the read ran
			m[u] = max(m[u], p)
		}
		e.upTo, e.loaded = m, true
	}
	return e.upTo[sender], nil
}

// SenderErased records, after its commit, that userID was erased at the
// events position upTo (store.Tx.MarkErased).
func (s *Service) SenderErased(userID string, upTo int64) {
	e := &s.erased
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.upTo == nil {
		e.upTo = map[string]int64{}
	}
	e.upTo[userID] = max(e.upTo[userID], upTo)
}

// Shown is the form of a visible row (CanSee said yes) that the viewer
// gets: the row itself, or a redacted copy (Pruned) when its sender was
// erased after sending it and the viewer was not joined when it was sent.
func (v *Viewer) Shown(ctx context.Context, row *store.EventRow) (*store.EventRow, error) {
	upTo, err := v.s.erasedUpTo(ctx, row.Sender)
	if err != nil || upTo == 0 || row.Pos > upTo || row.Redacted {
		return row, err
	}
	if v.joinedAt(row) || v.MembershipAt(ctx, row) == "join" {
		return row, nil
	}
	return v.s.pruned(ctx, row)
}

// pruned returns a redacted copy of row, for one reader.
func (s *Service) pruned(ctx context.Context, row *store.EventRow) (*store.EventRow, error) {
	version, err := s.VersionOf(ctx, row.RoomID)
	if err != nil {
		return nil, err
	}
	redacted, err := pdu.Redact(row.JSON(), version)
	if err != nil {
		return nil, fmt.Errorf("redact %s: %w", row.EventID, err)
	}
	var u map[string]json.RawMessage
	if json.Unmarshal(row.Unsigned, &u) != nil || u == nil {
		u = map[string]json.RawMessage{}
	}
	delete(u, "prev_content")
	unsigned, _ := json.Marshal(u)
	c := &store.EventRow{Pos: row.Pos, EventID: row.EventID, RoomID: row.RoomID, Type: row.Type, StateKey: row.StateKey,
		Sender: row.Sender, Depth: row.Depth, OriginTS: row.OriginTS, PDU: redacted, Unsigned: unsigned,
		StateGroup: row.StateGroup, Redacted: true, Pruned: true}
	return c, nil
}
