package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// The data-protection requests of package gdpr: what an export reads of
// a user, and what an erasure deletes.

// ErasedUsers returns the erased accounts with the events stream position
// at their erasure (see MarkErased).
func (s *Store) ErasedUsers(ctx context.Context) (map[string]int64, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT user_id, up_to_pos FROM erased_users`)
	if err != nil {
		return nil, fmt.Errorf("erased users: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var u string
		var p int64
		if err := rows.Scan(&u, &p); err != nil {
			return nil, err
		}
		out[u] = p
	}
	return out, rows.Err()
}

// MarkErased records that userID was erased when the events stream was at
// upTo: the events they sent up to there are served redacted to those
// who did not see them. Erasing again moves the position forward.
func (tx *Tx) MarkErased(ctx context.Context, userID string, upTo, nowMS int64) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO erased_users (user_id, up_to_pos, erased_ts) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO UPDATE SET up_to_pos = excluded.up_to_pos, erased_ts = excluded.erased_ts`, userID, upTo, nowMS)
	if err != nil {
		return fmt.Errorf("mark erased: %w", err)
	}
	return nil
}

// UserColumns are the column names that hold a user id; a column of one
// of these names holds personal data of that user.
var UserColumns = []string{"user_id", "sender", "reporter", "target_user", "signer_user", "notify_user", "creator", "requester", "quarantined_by"}

// KeptUserColumns are the table.column pairs an erasure keeps, and why
// (docs/operations.md lists them too). Every other column of UserColumns
// loses the user's rows, but content_reports.reporter, which is blanked.
var KeptUserColumns = map[string]string{
	"users.user_id":                "the account stays, deactivated and erased, so that its id is never given again",
	"erased_users.user_id":         "the record of the erasure, which keeps the user's events redacted",
	"room_members.user_id":         "the user's (leave) membership: part of each room's state",
	"events.sender":                "the events stay for those who saw them; others get them redacted",
	"event_relations.sender":       "relations of the kept events",
	"space_children.sender":        "space child state events, kept with the events",
	"device_list_changes.user_id":  "stream positions telling other users that the user's devices are gone",
	"device_list_outbound.user_id": "pending notices to other servers that the user's devices are gone",
	"rooms.creator":                "room metadata, as in the room's create event",
	"room_aliases.creator":         "room metadata",
	"content_reports.user_id":      "moderators' reports about the user",
	"blocked_rooms.user_id":        "an administrator's action (audit record)",
	"room_delete_tasks.requester":  "an administrator's action (audit record)",
	"media.quarantined_by":         "an administrator's action (audit record)",
}

// TableColumn is a column of a table.
type TableColumn struct{ Table, Column string }

func (c TableColumn) String() string { return c.Table + "." + c.Column }

// UserColumnsInSchema lists the columns named as in UserColumns of every
// table, read from the schema, so that tables added later are erased (and
// checked) too.
func (s *Store) UserColumnsInSchema(ctx context.Context) ([]TableColumn, error) {
	in := "'" + strings.Join(UserColumns, "', '") + "'"
	q := `SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
		WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND p.name IN (` + in + `)`
	if s.Engine == Postgres {
		q = `SELECT c.table_name, c.column_name FROM information_schema.columns c JOIN information_schema.tables t
			ON t.table_schema = c.table_schema AND t.table_name = c.table_name
			WHERE c.column_name IN (` + in + `) AND c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'`
	}
	rows, err := s.r.QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("user columns: %w", err)
	}
	defer rows.Close()
	var out []TableColumn
	for rows.Next() {
		var c TableColumn
		if err := rows.Scan(&c.Table, &c.Column); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, rows.Err()
}

// searchEraseSQL deletes the search rows of a sender's events.
var searchEraseSQL = map[Engine]string{
	SQLite:   `DELETE FROM search_text WHERE rowid IN (SELECT stream_pos FROM events WHERE sender = $1)`,
	Postgres: `DELETE FROM search_text WHERE stream_pos IN (SELECT stream_pos FROM events WHERE sender = $1)`,
}

// EraseUserRows deletes, in one transaction, what the database holds of
// a user (GDPR erasure), but KeptUserColumns: their rows in every table
// with a column of UserColumns, and the search rows of their events. The
// user's media must have been deleted before (with its blobs). It marks
// the user erased at upTo (MarkErased) in the same transaction, and
// returns how many rows went, by table.column.
func (s *Store) EraseUserRows(ctx context.Context, userID string, upTo, nowMS int64) (map[string]int64, error) {
	cols, err := s.UserColumnsInSchema(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	err = s.InTx(ctx, func(tx *Tx) error {
		clear(out)
		exec := func(name, q string, args ...any) error {
			res, err := tx.execOnce(ctx, q, args...)
			if err != nil {
				return fmt.Errorf("erase %s: %w", name, err)
			}
			if n, _ := res.RowsAffected(); n > 0 {
				out[name] += n
			}
			return nil
		}
		if err := exec("search_text", searchEraseSQL[s.Engine], userID); err != nil {
			return err
		}
		for _, c := range cols {
			switch {
			case KeptUserColumns[c.String()] != "":
				continue
			case c.String() == "content_reports.reporter":
				if err := exec(c.String(), `UPDATE content_reports SET reporter = '' WHERE reporter = $1`, userID); err != nil {
					return err
				}
			default:
				if err := exec(c.String(), `DELETE FROM `+c.Table+` WHERE `+c.Column+` = $1`, userID); err != nil {
					return err
				}
			}
		}
		return tx.MarkErased(ctx, userID, upTo, nowMS)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UserTraces counts a user's rows in every column of UserColumns, by
// table.column (zeros left out), and their events' search rows (as
// "search_text"). After an erasure only KeptUserColumns may count.
func (s *Store) UserTraces(ctx context.Context, userID string) (map[string]int64, error) {
	cols, err := s.UserColumnsInSchema(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	count := func(name, q string) error {
		var n int64
		if err := s.r.QueryRowContext(ctx, q, userID).Scan(&n); err != nil {
			return fmt.Errorf("count %s: %w", name, err)
		}
		if n > 0 {
			out[name] = n
		}
		return nil
	}
	for _, c := range cols {
		if err := count(c.String(), `SELECT COUNT(*) FROM `+c.Table+` WHERE `+c.Column+` = $1`); err != nil {
			return nil, err
		}
	}
	q := `SELECT COUNT(*) FROM search_text JOIN events e ON e.stream_pos = search_text.rowid WHERE e.sender = $1`
	if s.Engine == Postgres {
		q = `SELECT COUNT(*) FROM search_text d JOIN events e ON e.stream_pos = d.stream_pos WHERE e.sender = $1`
	}
	if err := count("search_text", q); err != nil {
		return nil, err
	}
	return out, nil
}

// CountEventsBySender counts the events a user sent.
func (s *Store) CountEventsBySender(ctx context.Context, sender string) (int64, error) {
	var n int64
	err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM events WHERE sender = $1`, sender).Scan(&n)
	return n, err
}

// EachEventBySender calls f with each event a user sent, in stream order,
// from one statement read as it goes (memory stays bounded whatever the
// count); f must not use the store's reader pool for long.
func (s *Store) EachEventBySender(ctx context.Context, sender string, f func(*EventRow) error) error {
	rows, err := s.reader().QueryContext(ctx, `SELECT `+eventCols+` FROM events WHERE sender = $1 ORDER BY stream_pos`, sender)
	if err != nil {
		return fmt.Errorf("events by sender: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return err
		}
		if err := f(e); err != nil {
			return err
		}
	}
	return rows.Err()
}

// UserRows returns a user's rows of one table (those whose column equals
// userID) as column → value objects, ordered by the table's columns: text
// that holds a JSON object or array is given as that JSON. Columns in
// omit are left out (secrets: hashes, keys).
func (s *Store) UserRows(ctx context.Context, table, column, userID string, omit ...string) ([]map[string]any, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT * FROM `+table+` WHERE `+column+` = $1`, userID)
	if err != nil {
		return nil, fmt.Errorf("rows of %s: %w", table, err)
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	for rows.Next() {
		vals := make([]any, len(names))
		ptrs := make([]any, len(names))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		m := make(map[string]any, len(names))
		for i, n := range names {
			if contains(omit, n) {
				continue
			}
			m[n] = exportValue(vals[i])
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// exportValue makes a scanned value JSON-friendly: bytes as text, text
// holding a JSON object or array as that JSON.
func exportValue(v any) any {
	var s string
	switch x := v.(type) {
	case []byte:
		s = string(x)
	case string:
		s = x
	case sql.RawBytes:
		s = string(x)
	default:
		return v
	}
	if t := strings.TrimSpace(s); len(t) > 1 && (t[0] == '{' || t[0] == '[') && json.Valid([]byte(t)) {
		return json.RawMessage(t)
	}
	return s
}

// LocalMediaOf returns every medium a local user uploaded or reserved
// (quarantined ones included), oldest first.
func (s *Store) LocalMediaOf(ctx context.Context, userID string) ([]Media, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT `+mediaReadCols+` FROM media WHERE user_id = $1 AND origin = '' ORDER BY created_ts, media_id`, userID)
	if err != nil {
		return nil, fmt.Errorf("media of user: %w", err)
	}
	defer rows.Close()
	var out []Media
	for rows.Next() {
		m, err := scanMedia(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	return out, rows.Err()
}
