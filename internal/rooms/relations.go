package rooms

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// maxAnnotationKeyBytes bounds the aggregation key of an annotation that
// is indexed: a longer key is stored with its event but never aggregated
// nor listed as a relation.
const maxAnnotationKeyBytes = 256

// relatesTo is the cleartext m.relates_to of an event's content (also of
// encrypted events, which carry it outside the ciphertext).
type relatesTo struct {
	RelType string          `json:"rel_type"`
	EventID string          `json:"event_id"`
	Key     json.RawMessage `json:"key"`
}

// parseRelation returns an event content's m.relates_to when it names a
// rel_type and a parent; nil otherwise (including rich replies, which
// carry no rel_type).
func parseRelation(content []byte) *relatesTo {
	if !bytes.Contains(content, []byte(`"m.relates_to"`)) {
		return nil
	}
	var c struct {
		RelatesTo json.RawMessage `json:"m.relates_to"`
	}
	if json.Unmarshal(content, &c) != nil || len(c.RelatesTo) == 0 {
		return nil
	}
	var r relatesTo
	if json.Unmarshal(c.RelatesTo, &r) != nil || r.RelType == "" || r.EventID == "" {
		return nil
	}
	return &r
}

// RelationOfPDU is the rel_type and parent of a stored PDU's content,
// "" for an event that relates to nothing (as parseRelation reads it).
func RelationOfPDU(pduJSON []byte) (relType, parent string) {
	var p struct {
		Content json.RawMessage `json:"content"`
	}
	if json.Unmarshal(pduJSON, &p) != nil {
		return "", ""
	}
	if r := parseRelation(p.Content); r != nil {
		return r.RelType, r.EventID
	}
	return "", ""
}

// relTypeOfPDU is the rel_type of a stored PDU's content, "" for none.
func relTypeOfPDU(pduJSON []byte) string {
	t, _ := RelationOfPDU(pduJSON)
	return t
}

// indexRelation is the Indexer of the relations index: it records a
// child event with its parent, and forgets a child once it is redacted.
func (s *Service) indexRelation(ctx context.Context, tx *store.Tx, ev *pdu.Event, pos int64) error {
	if ev.Type == "m.room.redaction" && ev.Redacts != "" {
		// applyRedaction ran before the indexers: if the target is now
		// redacted, its relationship is broken.
		row, err := tx.GetEvent(ctx, ev.Redacts)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if row.Redacted {
			parent, relType, err := tx.DeleteRelation(ctx, row.EventID)
			if err != nil || parent == "" {
				return err
			}
			if !bundledRelTypes[relType] {
				return nil
			}
			if err := tx.RecomputeAggregate(ctx, parent, relType); err != nil {
				return err
			}
			s.relationsChanged(tx, parent)
		}
		return nil
	}
	rel := parseRelation(ev.Content)
	if rel == nil || rel.EventID == ev.ID {
		return nil
	}
	parent, err := tx.GetEvent(ctx, rel.EventID)
	if errors.Is(err, store.ErrNotFound) {
		return nil // unknown parent: not a relationship the server can use
	}
	if err != nil {
		return err
	}
	if parent.RoomID != ev.RoomID {
		return nil // relationships never cross rooms
	}
	local := id.UserID(ev.Sender).Server() == id.ServerName(s.serverName)
	r := store.Relation{
		EventID: ev.ID, RoomID: ev.RoomID, RelatesTo: parent.EventID, RelType: rel.RelType,
		EventType: ev.Type, Sender: ev.Sender, OriginTS: ev.OriginServerTS, Pos: pos, Valid: true,
	}
	switch rel.RelType {
	case "m.annotation":
		var key string
		if json.Unmarshal(rel.Key, &key) != nil || key == "" || len(key) > maxAnnotationKeyBytes {
			return nil
		}
		r.Key.String, r.Key.Valid = key, true
		if local {
			dup, err := tx.HasAnnotation(ctx, parent.EventID, ev.Sender, ev.Type, key)
			if err != nil {
				return err
			}
			if dup {
				return &errcode.Error{Code: "M_DUPLICATE_ANNOTATION", Status: http.StatusBadRequest, Message: "you already sent this annotation"}
			}
		}
	case "m.replace":
		// An invalid replacement is kept as a child but never aggregated.
		r.Valid = parent.Sender == ev.Sender && parent.Type == ev.Type &&
			!parent.StateKey.Valid && !ev.IsState() && relTypeOfPDU(parent.JSON()) != "m.replace" &&
			(ev.Type == "m.room.encrypted" || hasObject(ev.Content, "m.new_content"))
	case "m.thread":
		if relTypeOfPDU(parent.JSON()) != "" {
			if local {
				return errcode.Unknown("cannot start a thread from an event with a relation")
			}
			r.Valid = false
		}
	}
	if err := tx.InsertRelation(ctx, r); err != nil {
		return err
	}
	if !r.Valid || !bundledRelTypes[r.RelType] {
		return nil
	}
	rank := pos
	if r.RelType == "m.replace" {
		rank = r.OriginTS
	}
	if err := tx.AddToAggregate(ctx, r.RelatesTo, r.RoomID, r.RelType, r.EventID, rank, pos, parent.Pos); err != nil {
		return err
	}
	s.relationsChanged(tx, r.RelatesTo)
	return nil
}

// bundledRelTypes are the relationships the server aggregates.
var bundledRelTypes = map[string]bool{"m.replace": true, "m.thread": true, "m.reference": true}

// hasObject reports whether content has a JSON object under key.
func hasObject(content []byte, key string) bool {
	var c map[string]json.RawMessage
	if json.Unmarshal(content, &c) != nil {
		return false
	}
	v := bytes.TrimSpace(c[key])
	return len(v) > 0 && v[0] == '{'
}

// BundleCache holds the bundled aggregations of parent events over every
// child (no reader's ignore list applied), as package roomread computes
// them: the values are roomread's, nil ones mark parents without
// aggregated children. The pipeline drops a parent's entry whenever a
// relation to it is written or removed, inside the transaction and again
// once it committed, and moves Gen each time, so that a reader never
// caches what it read before a change (see PutAll). The zero value is
// ready to use.
type BundleCache struct {
	cache atomic.Pointer[genCache[any]]
	gen   atomic.Uint64
}

const bundleCacheSize = 4000

// BundleCache is the cache of bundled aggregations.
func (s *Service) BundleCache() *BundleCache { return &s.rel }

func (c *BundleCache) entries() *genCache[any] {
	if g := c.cache.Load(); g != nil {
		return g
	}
	c.cache.CompareAndSwap(nil, newGenCache[any](bundleCacheSize))
	return c.cache.Load()
}

// Get returns the cached aggregations of a parent event.
func (c *BundleCache) Get(parent string) (any, bool) { return c.entries().get(parent) }

// Gen is the cache's generation, read before the aggregations that PutAll
// is then given are read from the database.
func (c *BundleCache) Gen() uint64 { return c.gen.Load() }

// PutAll caches entries[i] for parents[i] unless a relation changed since
// gen was read.
func (c *BundleCache) PutAll(gen uint64, parents []string, entries []any) {
	g := c.entries()
	if c.gen.Load() == gen {
		g.putAll(parents, entries)
	}
}

// Forget empties the cache, so that the next pages compute their
// aggregations from the database (used to measure that cost).
func (c *BundleCache) Forget() {
	c.gen.Add(1)
	c.cache.Store(newGenCache[any](bundleCacheSize))
}

// relationsChanged forgets a parent's cached aggregations, now (inside the
// transaction that changes them) and again once the change committed.
func (s *Service) relationsChanged(tx *store.Tx, parent string) {
	c := s.rel.entries()
	s.rel.gen.Add(1)
	c.drop(parent)
	tx.OnCommitted(func() {
		s.rel.gen.Add(1)
		c.drop(parent)
	})
}
