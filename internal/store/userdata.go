package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// AccountData is an account_data row; RoomID is "" for global data.
type AccountData struct {
	UserID  string
	RoomID  string
	Type    string
	Content []byte
	Pos     int64
}

// DeletedAccountData is the content of deleted account data (MSC3391):
// the row stays, so that incremental syncs tell clients of the deletion.
const DeletedAccountData = "{}"

// AccountDataDeleted reports whether stored content marks a deletion.
func AccountDataDeleted(content []byte) bool { return string(content) == DeletedAccountData }

// PutAccountData stores account data and advances its stream.
func (tx *Tx) PutAccountData(ctx context.Context, userID, roomID, typ string, content []byte) (int64, error) {
	pos := tx.Alloc(tx.s.Streams.AccountData)
	_, err := tx.q.ExecContext(ctx, `INSERT INTO account_data (user_id, room_id, type, content, stream_pos) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos`,
		userID, roomID, typ, string(content), pos)
	return pos, err
}

// DeleteAccountData marks an item of account data deleted (see
// DeletedAccountData) when it is there and not deleted yet; it reports
// whether it was.
func (tx *Tx) DeleteAccountData(ctx context.Context, userID, roomID, typ string) (bool, error) {
	pos := tx.Alloc(tx.s.Streams.AccountData)
	res, err := tx.q.ExecContext(ctx, `UPDATE account_data SET content = $1, stream_pos = $2
		WHERE user_id = $3 AND room_id = $4 AND type = $5 AND content <> $6`,
		DeletedAccountData, pos, userID, roomID, typ, DeletedAccountData)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// GetAccountData returns one item or ErrNotFound.
func (s *Store) GetAccountData(ctx context.Context, userID, roomID, typ string) ([]byte, error) {
	var c string
	err := s.reader().QueryRowContext(ctx, `SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3`, userID, roomID, typ).Scan(&c)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return []byte(c), err
}

// AccountDataSince returns a user's account data changed in (from, to].
func (s *Store) AccountDataSince(ctx context.Context, userID string, from, to int64) ([]AccountData, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT user_id, room_id, type, content, stream_pos FROM account_data
		WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos`, userID, from, to)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []AccountData
	for rows.Next() {
		var a AccountData
		var c string
		if err := rows.Scan(&a.UserID, &a.RoomID, &a.Type, &c, &a.Pos); err != nil {
			return nil, err
		}
		a.Content = []byte(c)
		out = append(out, a)
	}
	return out, rows.Err()
}

// Receipt is a receipts row.
type Receipt struct {
	RoomID   string
	Type     string
	UserID   string
	ThreadID string // "" for unthreaded
	EventID  string
	EventPos int64
	TS       int64
	Pos      int64
}

// PutReceipt stores a receipt unless the user already has one at a later
// event for the same type and thread. It returns false when nothing changed.
func (tx *Tx) PutReceipt(ctx context.Context, r Receipt) (bool, error) {
	pos := tx.Alloc(tx.s.Streams.Receipts)
	res, err := tx.q.ExecContext(ctx, `INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_pos, ts, stream_pos)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET event_id = excluded.event_id, event_pos = excluded.event_pos, ts = excluded.ts, stream_pos = excluded.stream_pos
		WHERE receipts.event_pos < excluded.event_pos`,
		r.RoomID, r.Type, r.UserID, r.ThreadID, r.EventID, r.EventPos, r.TS, pos)
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// ReceiptsSince returns the receipts of rooms changed in (from, to].
func (s *Store) ReceiptsSince(ctx context.Context, roomIDs []string, from, to int64) ([]Receipt, error) {
	if len(roomIDs) == 0 {
		return nil, nil
	}
	q, args := inList(`SELECT room_id, receipt_type, user_id, thread_id, event_id, event_pos, ts, stream_pos FROM receipts WHERE room_id IN (`, roomIDs,
		`) AND stream_pos > $`+itoa(len(roomIDs)+1)+` AND stream_pos <= $`+itoa(len(roomIDs)+2)+` ORDER BY stream_pos`, from, to)
	rows, err := s.reader().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Receipt
	for rows.Next() {
		var r Receipt
		if err := rows.Scan(&r.RoomID, &r.Type, &r.UserID, &r.ThreadID, &r.EventID, &r.EventPos, &r.TS, &r.Pos); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// CountUnread counts the events after a user's latest read receipt
// (public or private, unthreaded or main) that notify by default: messages,
// encrypted events, stickers and polls sent by others. One query: it runs
// for every room of every sync.
func (s *Store) CountUnread(ctx context.Context, roomID, userID string, upTo int64) (int64, error) {
	var n int64
	// Bounded: clients show large counts as "99+", and an unbounded count
	// would make every sync of a busy room slower.
	err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE room_id = $1 AND sender <> $2
		AND stream_pos > (SELECT COALESCE(MAX(event_pos), 0) FROM receipts WHERE room_id = $3 AND user_id = $4
			AND receipt_type IN ('m.read', 'm.read.private') AND thread_id IN ('', 'main'))
		AND stream_pos <= $5
		AND state_key IS NULL AND type IN ('m.room.message', 'm.room.encrypted', 'm.sticker', 'm.poll.start', 'org.matrix.msc3381.poll.start')
		AND redacted = FALSE LIMIT 1000) AS unread`, roomID, userID, roomID, userID, upTo).Scan(&n)
	return n, err
}

// Presence is a presence row.
type Presence struct {
	UserID       string
	State        string
	StatusMsg    sql.NullString
	LastActiveTS int64
	Pos          int64
}

// PutPresence stores a user's presence.
func (tx *Tx) PutPresence(ctx context.Context, p Presence) (int64, error) {
	pos := tx.Alloc(tx.s.Streams.Presence)
	_, err := tx.q.ExecContext(ctx, `INSERT INTO presence (user_id, state, status_msg, last_active_ts, stream_pos) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id) DO UPDATE SET state = excluded.state, status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts, stream_pos = excluded.stream_pos`,
		p.UserID, p.State, p.StatusMsg, p.LastActiveTS, pos)
	return pos, err
}

// TouchPresence records that users are still active in the state they
// have (user → last active, ms): last_active_ts only, without a new stream
// position, since nothing anyone sees changed enough to be sent again; a
// newer time stored meanwhile (a change of state) is kept. All in one
// transaction: the sync service gathers the touches of its online users
// and writes them every half minute.
func (s *Store) TouchPresence(ctx context.Context, touches map[string]int64) error {
	if len(touches) == 0 {
		return nil
	}
	if s.Engine == Postgres {
		return s.touchPresenceSet(ctx, touches)
	}
	return s.InTx(ctx, func(tx *Tx) error {
		for userID, ts := range touches {
			if _, err := tx.q.ExecContext(ctx, `UPDATE presence SET last_active_ts = $1 WHERE user_id = $2 AND last_active_ts < $1`, ts, userID); err != nil {
				return err
			}
		}
		return nil
	})
}

// touchPresenceSet is TouchPresence on PostgreSQL: one UPDATE per 500
// users (a statement per user cost a thousand idle pollers as much
// database time as all else they do).
func (s *Store) touchPresenceSet(ctx context.Context, touches map[string]int64) error {
	rows := make([][]any, 0, len(touches))
	for userID, ts := range touches {
		rows = append(rows, []any{userID, ts})
	}
	return s.InTx(ctx, func(tx *Tx) error {
		return tx.updateFromValues(ctx, `UPDATE presence SET last_active_ts = v.column2 FROM (VALUES `, []string{"TEXT", "BIGINT"},
			`) AS v WHERE presence.user_id = v.column1 AND presence.last_active_ts < v.column2`, rows)
	})
}

// updateFromValues runs an UPDATE … FROM (VALUES …) on PostgreSQL over
// rows, 500 a statement: pre and post surround the list, types are the
// columns' (column1, column2, …). Lists are padded to three sizes by
// repeating the first row, which updates nothing twice, so that few texts
// are prepared. The statements wait for the transaction's end (execLater).
func (tx *Tx) updateFromValues(ctx context.Context, pre string, types []string, post string, rows [][]any) error {
	for len(rows) > 0 {
		n := min(len(rows), 500)
		chunk := slices.Clone(rows[:n])
		for _, size := range []int{16, 128, 500} {
			if n <= size {
				for range size - n {
					chunk = append(chunk, rows[0])
				}
				break
			}
		}
		var b strings.Builder
		b.WriteString(pre)
		args := make([]any, 0, len(chunk)*len(types))
		for i, row := range chunk {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("(")
			for j, typ := range types {
				if j > 0 {
					b.WriteString(", ")
				}
				args = append(args, row[j])
				fmt.Fprintf(&b, "CAST($%d AS %s)", len(args), typ)
			}
			b.WriteString(")")
		}
		b.WriteString(post)
		if err := tx.execLater(ctx, nil, b.String(), args...); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// GetPresence returns a user's presence or ErrNotFound.
func (s *Store) GetPresence(ctx context.Context, userID string) (*Presence, error) {
	var p Presence
	err := s.reader().QueryRowContext(ctx, `SELECT user_id, state, status_msg, last_active_ts, stream_pos FROM presence WHERE user_id = $1`, userID).
		Scan(&p.UserID, &p.State, &p.StatusMsg, &p.LastActiveTS, &p.Pos)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &p, err
}

// PresenceSince returns the presence changed in (from, to] of the users who
// share a joined room with userID (and userID itself).
func (s *Store) PresenceSince(ctx context.Context, userID string, from, to int64) ([]Presence, error) {
	// Driven by the changes in the range (few: the stream moves only when
	// a state changes), each checked against the rooms of its user (an
	// index probe of the reader's membership per room), not by listing
	// everyone the reader shares a room with. "LIMIT 1 OFFSET 0" keeps
	// PostgreSQL from turning the EXISTS into a hash of all the reader's
	// co-members, which for a member of a 10,000-member room read 10,000
	// rows per sync (an OFFSET stops that rewrite; SQLite runs the EXISTS
	// per row anyway and wants a LIMIT before an OFFSET).
	rows, err := s.reader().QueryContext(ctx, `SELECT p.user_id, p.state, p.status_msg, p.last_active_ts, p.stream_pos FROM presence p
		WHERE p.stream_pos > $1 AND p.stream_pos <= $2 AND (p.user_id = $3 OR EXISTS (
			SELECT 1 FROM room_members o WHERE o.user_id = p.user_id AND o.membership = 'join'
				AND EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = o.room_id AND m.user_id = $4 AND m.membership = 'join')
			LIMIT 1 OFFSET 0))
		ORDER BY p.stream_pos`, from, to, userID, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Presence
	for rows.Next() {
		var p Presence
		if err := rows.Scan(&p.UserID, &p.State, &p.StatusMsg, &p.LastActiveTS, &p.Pos); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// SharesRoom reports whether two users are both joined to (or one is
// invited to a room the other is joined to) some room.
func (s *Store) SharesRoom(ctx context.Context, a, b string) (bool, error) {
	var n int
	err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM room_members x JOIN room_members y ON x.room_id = y.room_id
		WHERE x.user_id = $1 AND y.user_id = $2 AND x.membership IN ('join', 'invite') AND y.membership IN ('join', 'invite')`, a, b).Scan(&n)
	return n > 0, err
}

// PutAlias maps an alias to a room; ErrExists when taken.
func (tx *Tx) PutAlias(ctx context.Context, alias, roomID, creator string) error {
	res, err := tx.q.ExecContext(ctx, `INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3) ON CONFLICT (alias) DO NOTHING`, alias, roomID, creator)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

// GetAlias returns the room and creator of an alias or ErrNotFound.
func (s *Store) GetAlias(ctx context.Context, alias string) (roomID, creator string, err error) {
	err = s.reader().QueryRowContext(ctx, `SELECT room_id, creator FROM room_aliases WHERE alias = $1`, alias).Scan(&roomID, &creator)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", ErrNotFound
	}
	return roomID, creator, err
}

// DeleteAlias removes an alias.
func (tx *Tx) DeleteAlias(ctx context.Context, alias string) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM room_aliases WHERE alias = $1`, alias)
	return err
}

// RoomAliases lists the local aliases of a room.
func (s *Store) RoomAliases(ctx context.Context, roomID string) ([]string, error) {
	return queryStrings(ctx, s.reader(), `SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias`, roomID)
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

// PresenceOf returns the stored presence of the given users (those who
// have none are left out).
func (s *Store) PresenceOf(ctx context.Context, userIDs []string) ([]Presence, error) {
	var out []Presence
	for start := 0; start < len(userIDs); start += 500 {
		chunk := userIDs[start:min(len(userIDs), start+500)]
		q, args := inList(`SELECT user_id, state, status_msg, last_active_ts, stream_pos FROM presence WHERE user_id IN (`, chunk, `)`)
		rows, err := s.reader().QueryContext(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var p Presence
			if err := rows.Scan(&p.UserID, &p.State, &p.StatusMsg, &p.LastActiveTS, &p.Pos); err != nil {
				rows.Close()
				return nil, err
			}
			out = append(out, p)
		}
		if err := rows.Err(); err != nil {
			rows.Close()
			return nil, err
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
