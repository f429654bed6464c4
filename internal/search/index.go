package search

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/store"
)

// Searchable keys (the spec's room_events keys).
const (
	KeyBody  = "content.body"
	KeyName  = "content.name"
	KeyTopic = "content.topic"
)

// RoomState looks at a room's cached current state while its writer holds
// it (rooms.Service.InspectLocked); state is nil for a room not loaded.
type RoomState func(roomID string, f func(joined map[string]struct{}, state map[pdu.StateTuple]*pdu.Event))

// Indexer returns the search rooms.Indexer: it runs inside the transaction
// that persists ev. Only m.room.message, m.room.name and m.room.topic are
// indexed, so encrypted events (m.room.encrypted) never are, and nothing
// is indexed from a room once it is encrypted (the spec leaves encrypted
// rooms out of search, plain-text messages sent there included); a
// redaction that took effect removes its target. Whether a room is
// encrypted comes from its cached state (inspect) when it is loaded,
// instead of a query per message.
func Indexer(inspect RoomState) func(ctx context.Context, tx *store.Tx, ev *pdu.Event, pos int64) error {
	return func(ctx context.Context, tx *store.Tx, ev *pdu.Event, pos int64) error {
		return index(ctx, tx, ev, pos, inspect)
	}
}

func index(ctx context.Context, tx *store.Tx, ev *pdu.Event, pos int64, inspect RoomState) error {
	if ev.Type == "m.room.redaction" {
		if ev.Redacts == "" {
			return nil
		}
		// The pipeline applied (or refused) the redaction earlier in this
		// transaction: the row says whether it took effect.
		row, err := tx.GetEvent(ctx, ev.Redacts)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if !row.Redacted || row.RoomID != ev.RoomID {
			return nil
		}
		return tx.DeleteSearchDoc(ctx, row.Pos)
	}
	text := searchableText(ev)
	// PostgreSQL text cannot hold NUL, which JSON may carry as \u0000.
	text = strings.ReplaceAll(text, "\x00", " ")
	if strings.TrimSpace(text) == "" {
		return nil
	}
	known, enc := false, false
	inspect(ev.RoomID, func(_ map[string]struct{}, state map[pdu.StateTuple]*pdu.Event) {
		// A room being created is not loaded yet: its state is in tx.
		if state != nil {
			known = true
			_, enc = state[pdu.StateTuple{Type: "m.room.encryption"}]
		}
	})
	if !known {
		var err error
		if enc, err = tx.RoomEncrypted(ctx, ev.RoomID); err != nil {
			return err
		}
	}
	if enc {
		return nil
	}
	return tx.IndexSearchDoc(ctx, store.SearchDoc{Pos: pos, Body: text})
}

// searchableText returns the plain text an event is found by: that of
// the key its type has (content.body, .name or .topic).
func searchableText(ev *pdu.Event) string {
	switch ev.Type {
	case "m.room.message":
		if ev.StateKey != nil {
			return ""
		}
		var c struct {
			Body any `json:"body"`
		}
		_ = json.Unmarshal(ev.Content, &c)
		s, _ := c.Body.(string)
		return s
	case "m.room.name":
		if ev.StateKey == nil || *ev.StateKey != "" {
			return ""
		}
		var c struct {
			Name any `json:"name"`
		}
		_ = json.Unmarshal(ev.Content, &c)
		s, _ := c.Name.(string)
		return s
	case "m.room.topic":
		if ev.StateKey == nil || *ev.StateKey != "" {
			return ""
		}
		var c struct {
			Topic any `json:"topic"`
			Rich  struct {
				Text []struct {
					Body     any    `json:"body"`
					MimeType string `json:"mimetype"`
				} `json:"m.text"`
			} `json:"m.topic"`
		}
		_ = json.Unmarshal(ev.Content, &c)
		s, _ := c.Topic.(string)
		parts := []string{s}
		for _, t := range c.Rich.Text {
			// The text/plain representation (the default mimetype).
			if b, ok := t.Body.(string); ok && (t.MimeType == "" || t.MimeType == "text/plain") && b != s {
				parts = append(parts, b)
			}
		}
		return strings.Join(parts, "\n")
	}
	return ""
}
