package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
)

// Bulk writes for large state (a joined room's state, a full state group):
// multi-row INSERTs instead of one statement per row.

// bulkSizes returns the row counts of the multi-row statements used: a
// few fixed sizes, so that the statement cache holds a handful of texts
// per table. PostgreSQL takes 256 rows a statement (a round trip each);
// SQLite, which looks "$n" parameters up by name in a list (time
// quadratic in their number), about 96 values.
func bulkSizes(e Engine, cols int) []int {
	if e != SQLite {
		return []int{256, 64, 16, 4, 1}
	}
	top := max(1, 96/cols)
	return []int{top, max(1, top/4), 1}
}

// bulkTexts caches the statement texts by prefix, suffix and size.
var bulkTexts sync.Map

func bulkText(prefix string, cols int, suffix string, n int) string {
	key := fmt.Sprintf("%s\x00%s\x00%d\x00%d", prefix, suffix, cols, n)
	if q, ok := bulkTexts.Load(key); ok {
		return q.(string)
	}
	var b strings.Builder
	b.WriteString(prefix)
	p := 1
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := range cols {
			if c > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "$%d", p)
			p++
		}
		b.WriteByte(')')
	}
	b.WriteString(suffix)
	q := b.String()
	bulkTexts.Store(key, q)
	return q
}

// insertRows runs prefix + "($1, …), (…)" + suffix over rows of cols
// values each.
func (tx *Tx) insertRows(ctx context.Context, prefix string, cols int, suffix string, rows [][]any) error {
	sizes := bulkSizes(tx.s.Engine, cols)
	args := make([]any, 0, sizes[0]*cols)
	stmts := map[int]*sql.Stmt{}
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	for len(rows) > 0 {
		n := 1
		for _, size := range sizes {
			if len(rows) >= size {
				n = size
				break
			}
		}
		args = args[:0]
		for _, r := range rows[:n] {
			args = append(args, r...)
		}
		q := bulkText(prefix, cols, suffix, n)
		var err error
		if len(rows) < 2*n {
			_, err = tx.q.ExecContext(ctx, q, args...)
		} else {
			// Many chunks of this size follow: prepare the statement for
			// this transaction rather than have each run parse it.
			st := stmts[n]
			if st == nil {
				if st, err = tx.prepareInTx(ctx, q); err != nil {
					return err
				}
				stmts[n] = st
			}
			_, err = st.ExecContext(ctx, args...)
		}
		if err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// prepareInTx returns q prepared for the transaction: from the statement
// cache when there, else prepared on the transaction's connection.
func (tx *Tx) prepareInTx(ctx context.Context, q string) (*sql.Stmt, error) {
	if tx.pg != nil {
		return tx.pg.prepare(ctx, q)
	}
	ct := tx.q.(cachedTx)
	if st := ct.cached(q); st != nil {
		return ct.tx.StmtContext(ctx, st), nil
	}
	return ct.tx.PrepareContext(ctx, q)
}

// insertStateEntries writes the entries of a state group.
// maxLaterEntries bounds the entries written by one deferred statement.
const maxLaterEntries = 64

func (tx *Tx) insertStateEntries(ctx context.Context, group int64, entries StateMap) error {
	const prefix = `INSERT INTO state_group_entries (group_id, type, state_key, event_id) VALUES `
	if n := len(entries); n > 0 && n <= maxLaterEntries {
		// A delta: one statement that waits for the transaction's next
		// round trip (execLater) rather than costing its own.
		args := make([]any, 0, 4*n)
		for k, ev := range entries {
			args = append(args, group, k.Type, k.StateKey, ev)
		}
		return tx.execLater(ctx, nil, bulkText(prefix, 4, ``, n), args...)
	}
	rows := make([][]any, 0, len(entries))
	for k, ev := range entries {
		rows = append(rows, []any{group, k.Type, k.StateKey, ev})
	}
	if err := tx.insertRows(ctx, prefix, 4, ``, rows); err != nil {
		return fmt.Errorf("insert state group entries: %w", err)
	}
	return nil
}

// SetCurrentStateMany records several entries of a room's current state
// (SetCurrentState for many keys).
func (tx *Tx) SetCurrentStateMany(ctx context.Context, roomID string, st StateMap) error {
	rows := make([][]any, 0, len(st))
	for k, ev := range st {
		rows = append(rows, []any{roomID, k.Type, k.StateKey, ev})
	}
	if err := tx.insertRows(ctx, `INSERT INTO room_state (room_id, type, state_key, event_id) VALUES `, 4,
		` ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id`, rows); err != nil {
		return fmt.Errorf("set current state: %w", err)
	}
	return nil
}

// SetMemberships records several users' memberships (SetMembership for
// many users; each user at most once).
func (tx *Tx) SetMemberships(ctx context.Context, ms []Membership) error {
	rows := make([][]any, 0, len(ms))
	for _, m := range ms {
		rows = append(rows, []any{m.RoomID, m.UserID, m.Membership, m.EventID, m.Pos, joinedPos(m)})
	}
	// forgotten takes its default; joined_pos is where a join begins.
	if err := tx.insertRows(ctx, `INSERT INTO room_members (room_id, user_id, membership, event_id, stream_pos, joined_pos) VALUES `, 6,
		` ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, stream_pos = excluded.stream_pos, forgotten = FALSE,
			joined_pos = `+keepJoinedPos, rows); err != nil {
		return fmt.Errorf("set memberships: %w", err)
	}
	return tx.recountJoined(ctx, ms)
}

// recountJoined sets the joined member count and the member summary of
// the rooms of ms afresh (after writes that bypass SetMembership's
// bookkeeping).
func (tx *Tx) recountJoined(ctx context.Context, ms []Membership) error {
	done := map[string]bool{}
	for _, m := range ms {
		if done[m.RoomID] {
			continue
		}
		done[m.RoomID] = true
		n, err := tx.CountJoined(ctx, m.RoomID)
		if err != nil {
			return err
		}
		if err := tx.SetSummaryJoined(ctx, m.RoomID, n); err != nil {
			return err
		}
		if err := tx.recountMemberSummary(ctx, m.RoomID); err != nil {
			return err
		}
	}
	return nil
}

// InsertOutliers stores events outside every timeline (InsertOutlier for
// many events); events already stored are left as they are.
func (tx *Tx) InsertOutliers(ctx context.Context, es []*EventRow) error {
	rows := make([][]any, 0, len(es))
	for _, e := range es {
		if e.Pos >= 0 {
			return fmt.Errorf("outlier %s needs a negative position", e.EventID)
		}
		rows = append(rows, e.insertArgs())
	}
	if err := tx.insertRows(ctx, `INSERT INTO events (`+eventInsertCols+`) VALUES `, 14, ` ON CONFLICT (event_id) DO NOTHING`, rows); err != nil {
		return fmt.Errorf("insert outliers: %w", err)
	}
	return nil
}

// EventStateGroups returns the state group of those of ids that are
// stored (-1 for outliers, whose state is unknown).
func (s *Store) EventStateGroups(ctx context.Context, ids []string) (map[string]int64, error) {
	out := make(map[string]int64, len(ids))
	for start := 0; start < len(ids); start += 500 {
		q, args := inList(`SELECT event_id, state_group FROM events WHERE event_id IN (`, ids[start:min(len(ids), start+500)], `)`)
		rows, err := s.reader().QueryContext(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			var g int64
			if err := rows.Scan(&id, &g); err != nil {
				rows.Close()
				return nil, err
			}
			out[id] = g
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DeleteOutliers removes those of ids that are stored as outliers
// (DeleteOutlier for many events).
func (tx *Tx) DeleteOutliers(ctx context.Context, ids []string) error {
	for start := 0; start < len(ids); start += 500 {
		q, args := inList(`DELETE FROM events WHERE stream_pos < 0 AND event_id IN (`, ids[start:min(len(ids), start+500)], `)`)
		if _, err := tx.q.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("delete outliers: %w", err)
		}
	}
	return nil
}
