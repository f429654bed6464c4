package store

import (
	"context"
	"fmt"
	"strings"
)

// SearchDoc is the searchable plain text of the event at Pos: its
// body, name or topic (by its type, see searchFieldTypes).
type SearchDoc struct {
	Pos  int64
	Body string
}

// searchFieldTypes are the event types whose text each searchable key is.
var searchFieldTypes = map[string]string{
	"content.body":  "m.room.message",
	"content.name":  "m.room.name",
	"content.topic": "m.room.topic",
}

// IndexSearchDoc adds an event's text to the search index.
func (tx *Tx) IndexSearchDoc(ctx context.Context, d SearchDoc) error {
	if err := tx.execLater(ctx, nil, searchDialects[tx.s.Engine].insert, d.Pos, d.Body); err != nil {
		return fmt.Errorf("index search doc: %w", err)
	}
	return nil
}

// DeleteSearchDoc removes an event from the search index (redactions).
func (tx *Tx) DeleteSearchDoc(ctx context.Context, pos int64) error {
	if _, err := tx.q.ExecContext(ctx, searchDialects[tx.s.Engine].remove, pos); err != nil {
		return fmt.Errorf("delete search doc: %w", err)
	}
	return nil
}

// RoomEncrypted reports whether a room's current state, as this
// transaction sees it, has turned on end-to-end encryption.
func (tx *Tx) RoomEncrypted(ctx context.Context, roomID string) (bool, error) {
	var n int
	err := tx.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM room_state WHERE room_id = $1 AND type = 'm.room.encryption' AND state_key = ''`, roomID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("room encrypted: %w", err)
	}
	return n > 0, nil
}

// SearchRange is a room a search may look into, up to MaxPos (0: no bound;
// a user who left sees nothing after their leave).
type SearchRange struct {
	RoomID string
	MaxPos int64
}

// SearchQuery is a full-text query. Terms are plain words, never query
// syntax: the store quotes each one and matches it as a prefix, all terms
// required.
type SearchQuery struct {
	Terms  []string
	Rooms  []SearchRange
	Fields []string // empty: every field
	Sender string   // "": any sender
	Recent bool     // newest first; otherwise best rank first
	// After is where the previous page stopped (Before 0: the start):
	// recent order continues below position Before, rank order below
	// (Score, Before).
	Before int64
	Score  float64
	Limit  int
}

// SearchHit is one matching event.
type SearchHit struct {
	Pos     int64
	EventID string
	RoomID  string
	Rank    float64 // higher is better
}

// searchDialect is the one place where the engines differ for search: the
// table of texts, the full-text match and its rank. The rest of the
// statement is shared; the event's room, sender and type come from its
// row in events (aliased e).
type searchDialect struct {
	insert string // adds a text: $1 position, $2 text
	remove string // deletes the text at position $1
	from   string // the texts joined to the match and to their events
	where  string // the match condition, using $1
	rank   string // a relevance score, higher is better
	// pos is the text's stream position; on SQLite the full-text index's
	// own rowid, which FTS5 can walk in order and bound, so that a
	// "recent" page stops after its first rows instead of sorting them all.
	pos string
}

var searchDialects = map[Engine]searchDialect{
	SQLite: {
		// REPLACE: FTS5 does not refuse a second row with the same rowid.
		insert: `INSERT OR REPLACE INTO search_text (rowid, body) VALUES ($1, $2)`,
		remove: `DELETE FROM search_text WHERE rowid = $1`,
		from:   `search_text JOIN events e ON e.stream_pos = search_text.rowid`,
		where:  `search_text MATCH $1`,
		rank:   `-bm25(search_text)`,
		pos:    `search_text.rowid`,
	},
	Postgres: {
		insert: `INSERT INTO search_text (stream_pos, body) VALUES ($1, $2) ON CONFLICT DO NOTHING`,
		remove: `DELETE FROM search_text WHERE stream_pos = $1`,
		from:   `search_text d CROSS JOIN to_tsquery('simple', $1) AS q(query) JOIN events e ON e.stream_pos = d.stream_pos`,
		where:  `to_tsvector('simple', d.body) @@ q.query`,
		rank:   `CAST(ts_rank(to_tsvector('simple', d.body), q.query) AS DOUBLE PRECISION)`,
		pos:    `d.stream_pos`,
	},
}

// matchText renders terms as the engine's query syntax: each term quoted
// (so no user input is ever read as an operator) and matched as a prefix.
func (s *Store) matchText(terms []string) string {
	parts := make([]string, len(terms))
	for i, t := range terms {
		if s.Engine == Postgres {
			parts[i] = "'" + strings.ReplaceAll(t, "'", "''") + "':*"
		} else {
			parts[i] = `"` + strings.ReplaceAll(t, `"`, `""`) + `"*`
		}
	}
	if s.Engine == Postgres {
		return strings.Join(parts, " & ")
	}
	return strings.Join(parts, " ")
}

// searchWhere builds the shared conditions after the match ($1).
func (s *Store) searchWhere(q SearchQuery, withCursor bool) (string, []any) {
	d := searchDialects[s.Engine]
	args := []any{s.matchText(q.Terms)}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	var b strings.Builder
	b.WriteString(" FROM " + d.from + " WHERE " + d.where + " AND (")
	var open []string
	for _, r := range q.Rooms {
		if r.MaxPos == 0 {
			open = append(open, r.RoomID)
		}
	}
	n := 0
	if len(open) > 0 {
		b.WriteString("e.room_id IN (")
		for i, id := range open {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(arg(id))
		}
		b.WriteString(")")
		n++
	}
	for _, r := range q.Rooms {
		if r.MaxPos == 0 {
			continue
		}
		if n > 0 {
			b.WriteString(" OR ")
		}
		b.WriteString("(e.room_id = " + arg(r.RoomID) + " AND e.stream_pos <= " + arg(r.MaxPos) + ")")
		n++
	}
	b.WriteString(")")
	if len(q.Fields) > 0 {
		b.WriteString(" AND e.type IN (")
		for i, f := range q.Fields {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(arg(searchFieldTypes[f]))
		}
		b.WriteString(")")
	}
	if q.Sender != "" {
		b.WriteString(" AND e.sender = " + arg(q.Sender))
	}
	switch {
	case !withCursor || q.Before <= 0:
	case q.Recent:
		b.WriteString(" AND " + d.pos + " < " + arg(q.Before))
	default:
		b.WriteString(" AND (" + d.rank + " < " + arg(q.Score) + " OR (" + d.rank + " = " + arg(q.Score) + " AND " + d.pos + " < " + arg(q.Before) + "))")
	}
	return b.String(), args
}

// Search returns up to q.Limit matching events in the requested order.
func (s *Store) Search(ctx context.Context, q SearchQuery) ([]SearchHit, error) {
	if len(q.Terms) == 0 || len(q.Rooms) == 0 || q.Limit <= 0 {
		return nil, nil
	}
	d := searchDialects[s.Engine]
	where, args := s.searchWhere(q, true)
	order := " ORDER BY score DESC, " + d.pos + " DESC"
	if q.Recent {
		order = " ORDER BY " + d.pos + " DESC"
	}
	args = append(args, q.Limit)
	limit := fmt.Sprintf(" LIMIT $%d", len(args))
	// The statement text varies with the number of rooms: run it
	// unprepared rather than fill the statement cache.
	rows, err := s.r.QueryContext(ctx, "SELECT e.stream_pos, e.event_id, e.room_id, "+d.rank+" AS score"+where+order+limit, args...)
	if err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	defer rows.Close()
	var out []SearchHit
	for rows.Next() {
		var h SearchHit
		if err := rows.Scan(&h.Pos, &h.EventID, &h.RoomID, &h.Rank); err != nil {
			return nil, fmt.Errorf("search: %w", err)
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// SearchCount counts the matches of q (ignoring its cursor and limit).
func (s *Store) SearchCount(ctx context.Context, q SearchQuery) (int64, error) {
	if len(q.Terms) == 0 || len(q.Rooms) == 0 {
		return 0, nil
	}
	where, args := s.searchWhere(q, false)
	var n int64
	if err := s.r.QueryRowContext(ctx, "SELECT COUNT(*)"+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("search count: %w", err)
	}
	return n, nil
}
