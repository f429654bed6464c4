package store

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// PushAction is a push_actions row: an event that notifies a user.
type PushAction struct {
	UserID    string
	Pos       int64
	RoomID    string
	EventID   string
	ThreadID  string // "main" or the thread root
	Highlight bool
	Actions   []byte
	TS        int64
}

// placeholders appends "($k, …, $k+n-1)" groups for rows of n columns.
func valuesList(b *strings.Builder, rows, cols, first int) {
	k := first
	for r := 0; r < rows; r++ {
		if r > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for c := 0; c < cols; c++ {
			if c > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(b, "$%d", k)
			k++
		}
		b.WriteByte(')')
	}
}

// insertChunk returns how many rows one INSERT writes. PostgreSQL gets
// multi-row statements (one round trip for many rows, 9 columns stay far
// below its parameter limit); SQLite gets single-row ones, because a
// multi-row INSERT inside a transaction writes a statement journal to a
// temporary file, which cost more than the rows themselves.
func (tx *Tx) insertChunk() int {
	if tx.s.Engine == SQLite {
		return 1
	}
	return 200
}

// bulkChunk bounds the rows of one multi-row statement: 9 columns stay far
// below PostgreSQL's parameter limit; the SQLite driver looks each
// parameter's name up in a list, which makes long statements quadratic.
func (tx *Tx) bulkChunk() int {
	if tx.s.Engine == SQLite {
		return 16
	}
	return 200
}

// InsertPushActions stores notifications, several rows per statement, in
// key order: a statement then touches few pages, which keeps SQLite's
// statement journal (written for every multi-row INSERT) small. It runs
// in transactions of its own (see CompactStaged).
func (tx *Tx) InsertPushActions(ctx context.Context, rows []PushAction) error {
	slices.SortFunc(rows, func(a, b PushAction) int {
		return cmp.Or(cmp.Compare(a.UserID, b.UserID), cmp.Compare(a.RoomID, b.RoomID), cmp.Compare(a.ThreadID, b.ThreadID), cmp.Compare(a.Pos, b.Pos))
	})
	for len(rows) > 0 {
		n := min(len(rows), tx.bulkChunk())
		var b strings.Builder
		b.WriteString(`INSERT INTO push_actions (user_id, room_id, stream_pos, event_id, thread_id, highlight, actions, ts) VALUES `)
		valuesList(&b, n, 8, 1)
		args := make([]any, 0, n*8)
		for _, r := range rows[:n] {
			args = append(args, r.UserID, r.RoomID, r.Pos, r.EventID, r.ThreadID, r.Highlight, string(r.Actions), r.TS)
		}
		if _, err := tx.q.ExecContext(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("insert push actions: %w", err)
		}
		rows = rows[n:]
	}
	return nil
}

// readUpTo is the position a user has read a push action's thread up to
// by receipts: the latest public or private receipt, unthreaded or for
// that thread. It expects the push_actions row as "a".
const readUpTo = `COALESCE((SELECT MAX(r.event_pos) FROM receipts r WHERE r.room_id = a.room_id AND r.receipt_type IN ('m.read', 'm.read.private')
		AND r.user_id = a.user_id AND r.thread_id IN ('', a.thread_id)), 0)`

// sentUpTo is the position of the user's latest event in a push action's
// room and thread, which marks what comes before it as read as well.
const sentUpTo = `COALESCE((SELECT o.stream_pos FROM push_read o WHERE o.user_id = a.user_id AND o.room_id = a.room_id AND o.thread_id = a.thread_id), 0)`

// stagedReadUpTo is readUpTo for a push_staging row "s" and the user in
// the placeholder $n.
func stagedReadUpTo(n int) string {
	return fmt.Sprintf(`COALESCE((SELECT MAX(r.event_pos) FROM receipts r WHERE r.room_id = s.room_id AND r.receipt_type IN ('m.read', 'm.read.private')
		AND r.user_id = $%d AND r.thread_id IN ('', s.thread_id)), 0)`, n)
}

// stagedSentUpTo is sentUpTo for a push_staging row "s" and the user in
// the placeholder $n.
func stagedSentUpTo(n int) string {
	return fmt.Sprintf(`COALESCE((SELECT o.stream_pos FROM push_read o WHERE o.user_id = $%d AND o.room_id = s.room_id AND o.thread_id = s.thread_id), 0)`, n)
}

// MarkSent records that a user sent an event at pos in a room's thread
// ("main" for the main timeline), in the event's transaction.
func (tx *Tx) MarkSent(ctx context.Context, userID, roomID, threadID string, pos int64) error {
	return tx.execLater(ctx, nil, `INSERT INTO push_read (user_id, room_id, thread_id, stream_pos) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET stream_pos = excluded.stream_pos WHERE push_read.stream_pos < excluded.stream_pos`,
		userID, roomID, threadID, pos)
}

// StagedRecipient is one recipient of a staged push.
type StagedRecipient struct {
	UserID    string          `json:"u"`
	Highlight bool            `json:"h,omitempty"`
	Actions   json.RawMessage `json:"a"`
}

// StagedPush is a push_staging row: an event and the users it notifies.
type StagedPush struct {
	Pos        int64
	RoomID     string
	EventID    string
	ThreadID   string
	TS         int64
	Recipients []StagedRecipient
}

// find returns the recipient entry of a user, or nil.
func findRecipient(recipients string, userID string) *StagedRecipient {
	// Cheap test first: most staged rows are for other users.
	quoted, _ := json.Marshal(userID) // as the recipients JSON writes it
	if !strings.Contains(recipients, string(quoted)) {
		return nil
	}
	var rs []StagedRecipient
	if json.Unmarshal([]byte(recipients), &rs) != nil {
		return nil
	}
	for i := range rs {
		if rs[i].UserID == userID {
			return &rs[i]
		}
	}
	return nil
}

// StagePush stores what an event means for its recipients, in the event's
// transaction.
func (tx *Tx) StagePush(ctx context.Context, p StagedPush) error {
	recipients, err := json.Marshal(p.Recipients)
	if err != nil {
		return err
	}
	return tx.execLater(ctx, nil, `INSERT INTO push_staging (stream_pos, room_id, event_id, thread_id, ts, recipients) VALUES ($1, $2, $3, $4, $5, $6)`,
		p.Pos, p.RoomID, p.EventID, p.ThreadID, p.TS, string(recipients))
}

// StagedPushes returns the oldest staged pushes.
func (s *Store) StagedPushes(ctx context.Context, limit int) ([]StagedPush, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT stream_pos, room_id, event_id, thread_id, ts, recipients FROM push_staging ORDER BY stream_pos LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StagedPush
	for rows.Next() {
		var p StagedPush
		var recipients string
		if err := rows.Scan(&p.Pos, &p.RoomID, &p.EventID, &p.ThreadID, &p.TS, &recipients); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(recipients), &p.Recipients); err != nil {
			return nil, fmt.Errorf("staged push %d: %w", p.Pos, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// CompactStaged moves staged pushes into push_actions, one row per
// recipient, in one transaction. Only rows still staged move: a
// redaction may have deleted one since it was read.
func (s *Store) CompactStaged(ctx context.Context, ps []StagedPush) error {
	byPos := make(map[int64]StagedPush, len(ps))
	for _, p := range ps {
		byPos[p.Pos] = p
	}
	return s.InTx(ctx, func(tx *Tx) error {
		var rows []PushAction
		for len(ps) > 0 {
			n := min(len(ps), tx.bulkChunk())
			args := make([]any, n)
			for i, p := range ps[:n] {
				args[i] = p.Pos
			}
			deleted, err := tx.q.QueryContext(ctx, `DELETE FROM push_staging WHERE stream_pos IN (`+placeholderList(1, n)+`) RETURNING stream_pos`, args...)
			if err != nil {
				return err
			}
			for deleted.Next() {
				var pos int64
				if err := deleted.Scan(&pos); err != nil {
					deleted.Close()
					return err
				}
				p := byPos[pos]
				for _, r := range p.Recipients {
					rows = append(rows, PushAction{UserID: r.UserID, Pos: p.Pos, RoomID: p.RoomID, EventID: p.EventID, ThreadID: p.ThreadID, Highlight: r.Highlight, Actions: r.Actions, TS: p.TS})
				}
			}
			deleted.Close()
			if err := deleted.Err(); err != nil {
				return err
			}
			ps = ps[n:]
		}
		return tx.InsertPushActions(ctx, rows)
	})
}

// ForgetPushes deletes the notifications an event (at pos, now redacted)
// gave to users, in the redaction's transaction.
func (tx *Tx) ForgetPushes(ctx context.Context, roomID string, pos int64, users []string) error {
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM push_staging WHERE stream_pos = $1`, pos); err != nil {
		return err
	}
	for len(users) > 0 {
		n := min(len(users), 100)
		args := make([]any, 0, n+2)
		for _, u := range users[:n] {
			args = append(args, u)
		}
		args = append(args, roomID, pos)
		// The main timeline by key, threads (few rows) by scanning: the
		// redacted content no longer says which thread it was in.
		for _, thread := range []string{`thread_id = 'main'`, `thread_id < 'main'`} {
			q := `DELETE FROM push_actions WHERE user_id IN (` + placeholderList(1, n) + `) AND room_id = $` + itoa(n+1) + ` AND ` +
				thread + ` AND stream_pos = $` + itoa(n+2)
			if _, err := tx.q.ExecContext(ctx, q, args...); err != nil {
				return err
			}
		}
		users = users[n:]
	}
	return nil
}

// ThreadCount is the unread notifications of one thread of a room.
type ThreadCount struct {
	RoomID    string
	ThreadID  string
	Notify    int64
	Highlight int64
}

// placeholderList returns "$k, …" for n values from k on.
func placeholderList(k, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", k+i)
	}
	return b.String()
}

// maxCountRooms bounds the rooms of one counting statement.
const maxCountRooms = 100

// CountRange says which notifications of a room to count: those after
// From that the user has not read.
type CountRange struct {
	RoomID string
	From   int64
}

// NotificationCounts counts a user's unread notifications with positions
// in (From, upTo] of some rooms, per thread, and returns the read receipts
// it counted against (room → thread id, "" for unthreaded → event
// position). The main timeline is one index range per room (from the
// later of From and its read position, however many notifications the
// user read before); threads, which are few, are checked against their
// receipts row by row. It is one statement over push_actions,
// push_staging and receipts: one snapshot, so a notification moving
// between the tables is counted once and the receipts match the counts.
func (s *Store) NotificationCounts(ctx context.Context, userID string, ranges []CountRange, upTo int64) ([]ThreadCount, map[string]map[string]int64, error) {
	if len(ranges) == 0 {
		return nil, nil, nil
	}
	if len(ranges) > maxCountRooms {
		// Bounded statements: the SQLite driver binds parameters by name
		// in quadratic time.
		first, reads, err := s.NotificationCounts(ctx, userID, ranges[:maxCountRooms], upTo)
		if err != nil {
			return nil, nil, err
		}
		rest, moreReads, err := s.NotificationCounts(ctx, userID, ranges[maxCountRooms:], upTo)
		for k, v := range moreReads {
			reads[k] = v
		}
		return append(first, rest...), reads, err
	}
	n := len(ranges)
	args := make([]any, 0, 7*n+8)
	var b strings.Builder
	values := func() {
		for i, r := range ranges {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "(CAST($%d AS TEXT), CAST($%d AS BIGINT))", len(args)+1, len(args)+2)
			args = append(args, r.RoomID, r.From)
		}
	}
	b.WriteString(`SELECT 0, a.room_id, a.thread_id, COUNT(*), SUM(CASE WHEN a.highlight THEN 1 ELSE 0 END), '' FROM (VALUES `)
	values()
	fmt.Fprintf(&b, `) AS l JOIN push_actions a ON a.user_id = $%d AND a.room_id = l.column1 AND a.thread_id = 'main' AND a.stream_pos > l.column2
		AND a.stream_pos > COALESCE((SELECT MAX(r.event_pos) FROM receipts r WHERE r.room_id = l.column1 AND r.receipt_type IN ('m.read', 'm.read.private')
			AND r.user_id = $%d AND r.thread_id IN ('', 'main')), 0)
		WHERE a.stream_pos <= $%d AND a.stream_pos > `+sentUpTo+` GROUP BY a.room_id, a.thread_id
		UNION ALL
		SELECT 0, a.room_id, a.thread_id, COUNT(*), SUM(CASE WHEN a.highlight THEN 1 ELSE 0 END), '' FROM (VALUES `, len(args)+1, len(args)+2, len(args)+3)
	args = append(args, userID, userID, upTo)
	values()
	// Thread roots are event ids, which start with "$": they sort before "main".
	fmt.Fprintf(&b, `) AS l JOIN push_actions a ON a.user_id = $%d AND a.room_id = l.column1 AND a.thread_id < 'main' AND a.stream_pos > l.column2
		WHERE a.stream_pos <= $%d AND a.stream_pos > `+readUpTo+` AND a.stream_pos > `+sentUpTo+`
		GROUP BY a.room_id, a.thread_id
		UNION ALL
		SELECT 1, s.room_id, s.thread_id, s.stream_pos, %s, s.recipients FROM (VALUES `,
		len(args)+1, len(args)+2, stagedReadUpTo(len(args)+3))
	args = append(args, userID, upTo, userID)
	values()
	fmt.Fprintf(&b, `) AS l JOIN push_staging s ON s.room_id = l.column1 AND s.stream_pos > l.column2 WHERE s.stream_pos <= $%d AND s.stream_pos > %s
		UNION ALL
		SELECT 2, r.room_id, r.thread_id, MAX(r.event_pos), 0, '' FROM receipts r WHERE r.room_id IN (%s)
			AND r.user_id = $%d AND r.receipt_type IN ('m.read', 'm.read.private') GROUP BY r.room_id, r.thread_id
		UNION ALL
		SELECT 3, o.room_id, o.thread_id, o.stream_pos, 0, '' FROM push_read o WHERE o.user_id = $%d AND o.room_id IN (%s)`,
		len(args)+1, stagedSentUpTo(len(args)+2), placeholderList(len(args)+3, n), len(args)+3+n, len(args)+4+n, placeholderList(len(args)+5+n, n))
	args = append(args, upTo, userID)
	for _, r := range ranges {
		args = append(args, r.RoomID)
	}
	args = append(args, userID, userID)
	for _, r := range ranges {
		args = append(args, r.RoomID)
	}
	rows, err := s.reader().QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, nil, fmt.Errorf("notification counts: %w", err)
	}
	defer rows.Close()
	reads := map[string]map[string]int64{}
	type key struct{ room, thread string }
	idx := map[key]int{}
	var out []ThreadCount
	add := func(room, thread string, notify, highlight int64) {
		k := key{room, thread}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, ThreadCount{RoomID: room, ThreadID: thread})
		}
		out[i].Notify += notify
		out[i].Highlight += highlight
	}
	for rows.Next() {
		var staged int
		var room, thread, recipients string
		var a, b int64
		if err := rows.Scan(&staged, &room, &thread, &a, &b, &recipients); err != nil {
			return nil, nil, err
		}
		switch staged {
		case 0:
			add(room, thread, a, b)
			continue
		case 2, 3:
			// Receipts, and (prefixed) positions of the user's own events.
			if reads[room] == nil {
				reads[room] = map[string]int64{}
			}
			if staged == 3 {
				thread = "sent:" + thread
			}
			reads[room][thread] = a
			continue
		}
		// A staged notification: a is its position, b the user's read
		// position in its thread.
		if r := findRecipient(recipients, userID); r != nil && a > b {
			h := int64(0)
			if r.Highlight {
				h = 1
			}
			add(room, thread, 1, h)
		}
	}
	return out, reads, rows.Err()
}

// Notification is a push action with its read state.
type Notification struct {
	PushAction
	Read bool
}

// Notifications returns a user's notifications before position before
// (0: from the newest), newest first.
func (s *Store) Notifications(ctx context.Context, userID string, before int64, limit int, onlyHighlight bool) ([]Notification, error) {
	if before <= 0 {
		before = 1 << 62
	}
	// $3 is a boolean flag, compared with an integer for both engines.
	only := 0
	if onlyHighlight {
		only = 1
	}
	rows, err := s.reader().QueryContext(ctx, `SELECT * FROM (SELECT a.stream_pos, a.room_id, a.event_id, a.thread_id, a.highlight, a.actions, a.ts,
			CASE WHEN a.stream_pos <= COALESCE((SELECT MAX(r.event_pos) FROM receipts r WHERE r.room_id = a.room_id AND r.receipt_type IN ('m.read', 'm.read.private')
				AND r.user_id = a.user_id AND r.thread_id IN ('', a.thread_id)), 0)
			OR a.stream_pos <= COALESCE((SELECT o.stream_pos FROM push_read o WHERE o.user_id = a.user_id AND o.room_id = a.room_id AND o.thread_id = a.thread_id), 0)
			THEN 1 ELSE 0 END, ''
			FROM push_actions a WHERE a.user_id = $1 AND a.stream_pos < $2 AND (a.highlight = TRUE OR $3 = 0) ORDER BY a.stream_pos DESC LIMIT $4) x
		UNION ALL
		SELECT s.stream_pos, s.room_id, s.event_id, s.thread_id, FALSE, '', s.ts,
			CASE WHEN s.stream_pos <= COALESCE((SELECT MAX(r.event_pos) FROM receipts r WHERE r.room_id = s.room_id AND r.receipt_type IN ('m.read', 'm.read.private')
				AND r.user_id = $5 AND r.thread_id IN ('', s.thread_id)), 0)
			OR s.stream_pos <= COALESCE((SELECT o.stream_pos FROM push_read o WHERE o.user_id = $6 AND o.room_id = s.room_id AND o.thread_id = s.thread_id), 0)
			THEN 1 ELSE 0 END, s.recipients
			FROM push_staging s WHERE s.stream_pos < $7`, userID, before, only, limit, userID, userID, before)
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	defer rows.Close()
	var out []Notification
	for rows.Next() {
		var n Notification
		var actions, recipients string
		var read int
		if err := rows.Scan(&n.Pos, &n.RoomID, &n.EventID, &n.ThreadID, &n.Highlight, &actions, &n.TS, &read, &recipients); err != nil {
			return nil, err
		}
		n.UserID, n.Actions, n.Read = userID, []byte(actions), read == 1
		if recipients != "" {
			r := findRecipient(recipients, userID)
			if r == nil || (onlyHighlight && !r.Highlight) {
				continue
			}
			n.Highlight, n.Actions = r.Highlight, r.Actions
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Notification) int { return cmp.Compare(b.Pos, a.Pos) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// GlobalAccountDataOf returns one type of global account data of several
// users (those who have it).
func (s *Store) GlobalAccountDataOf(ctx context.Context, typ string, userIDs []string) (map[string][]byte, error) {
	return globalAccountDataOf(ctx, s.reader(), typ, userIDs)
}

// GlobalAccountDataOf is Store.GlobalAccountDataOf inside a transaction.
func (tx *Tx) GlobalAccountDataOf(ctx context.Context, typ string, userIDs []string) (map[string][]byte, error) {
	return globalAccountDataOf(ctx, tx.q, typ, userIDs)
}

func globalAccountDataOf(ctx context.Context, q querier, typ string, userIDs []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for len(userIDs) > 0 {
		n := min(len(userIDs), 500)
		var b strings.Builder
		b.WriteString(`SELECT user_id, content FROM account_data WHERE room_id = '' AND type = $1 AND user_id IN (`)
		args := []any{typ}
		for i, u := range userIDs[:n] {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "$%d", i+2)
			args = append(args, u)
		}
		b.WriteString(`)`)
		rows, err := q.QueryContext(ctx, b.String(), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var u, c string
			if err := rows.Scan(&u, &c); err != nil {
				rows.Close()
				return nil, err
			}
			out[u] = []byte(c)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
		userIDs = userIDs[n:]
	}
	return out, nil
}

// Pusher is a pushers row.
type Pusher struct {
	UserID            string
	AppID             string
	Pushkey           string
	DeviceID          string
	Kind              string
	AppDisplayName    string
	DeviceDisplayName string
	ProfileTag        string
	Lang              string
	Data              []byte
	PushkeyTS         int64
}

const pusherCols = `user_id, app_id, pushkey, device_id, kind, app_display_name, device_display_name, profile_tag, lang, data, pushkey_ts`

func scanPushers(rows *sql.Rows) ([]Pusher, error) {
	defer rows.Close()
	var out []Pusher
	for rows.Next() {
		var p Pusher
		var data string
		if err := rows.Scan(&p.UserID, &p.AppID, &p.Pushkey, &p.DeviceID, &p.Kind, &p.AppDisplayName, &p.DeviceDisplayName, &p.ProfileTag, &p.Lang, &data, &p.PushkeyTS); err != nil {
			return nil, err
		}
		p.Data = []byte(data)
		out = append(out, p)
	}
	return out, rows.Err()
}

// PutPusher creates or updates a user's pusher; with exclusive, the same
// app id and pushkey of other users are deleted. It returns the users
// whose pushers changed.
func (tx *Tx) PutPusher(ctx context.Context, p Pusher, exclusive bool) ([]string, error) {
	changed := []string{p.UserID}
	if exclusive {
		rows, err := tx.q.QueryContext(ctx, `DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3 RETURNING user_id`, p.AppID, p.Pushkey, p.UserID)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var u string
			if err := rows.Scan(&u); err != nil {
				rows.Close()
				return nil, err
			}
			changed = append(changed, u)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	_, err := tx.q.ExecContext(ctx, `INSERT INTO pushers (`+pusherCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
		ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET device_id = excluded.device_id, kind = excluded.kind,
		app_display_name = excluded.app_display_name, device_display_name = excluded.device_display_name,
		profile_tag = excluded.profile_tag, lang = excluded.lang, data = excluded.data`,
		p.UserID, p.AppID, p.Pushkey, p.DeviceID, p.Kind, p.AppDisplayName, p.DeviceDisplayName, p.ProfileTag, p.Lang, string(p.Data), p.PushkeyTS)
	return changed, err
}

// DeletePusher deletes one pusher of a user and what it still had to send.
func (s *Store) DeletePusher(ctx context.Context, userID, appID, pushkey string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, `DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, userID, appID, pushkey); err != nil {
			return err
		}
		_, err := tx.q.ExecContext(ctx, `DELETE FROM push_queue WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, userID, appID, pushkey)
		return err
	})
}

// DeletePushersOfDevices deletes the pushers set by deleted devices and
// reports whether there were any.
func (s *Store) DeletePushersOfDevices(ctx context.Context, userID string, deviceIDs []string) (bool, error) {
	var found bool
	for _, d := range deviceIDs {
		res, err := s.writer().ExecContext(ctx, `DELETE FROM pushers WHERE user_id = $1 AND device_id = $2`, userID, d)
		if err != nil {
			return false, err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			found = true
		}
	}
	return found, nil
}

// Pushers returns a user's pushers.
func (s *Store) Pushers(ctx context.Context, userID string) ([]Pusher, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT `+pusherCols+` FROM pushers WHERE user_id = $1 ORDER BY app_id, pushkey`, userID)
	if err != nil {
		return nil, err
	}
	return scanPushers(rows)
}

// GetPusher returns one pusher or ErrNotFound.
func (s *Store) GetPusher(ctx context.Context, userID, appID, pushkey string) (*Pusher, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT `+pusherCols+` FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3`, userID, appID, pushkey)
	if err != nil {
		return nil, err
	}
	ps, err := scanPushers(rows)
	if err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, ErrNotFound
	}
	return &ps[0], nil
}

// PusherKey names a pusher.
type PusherKey struct{ UserID, AppID, Pushkey string }

// AllPusherKeys lists every pusher (to know, without a query per event,
// who has any).
func (s *Store) AllPusherKeys(ctx context.Context) ([]PusherKey, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT user_id, app_id, pushkey FROM pushers WHERE kind = 'http'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []PusherKey
	for rows.Next() {
		var k PusherKey
		if err := rows.Scan(&k.UserID, &k.AppID, &k.Pushkey); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// QueuedPush is a push_queue row.
type QueuedPush struct {
	ID       int64
	UserID   string
	AppID    string
	Pushkey  string
	RoomID   string
	EventID  string
	Pos      int64
	Actions  []byte
	Attempts int
	NextTry  int64
}

// EnqueuePushes queues pushes in the event's transaction.
func (tx *Tx) EnqueuePushes(ctx context.Context, qs []QueuedPush) error {
	for len(qs) > 0 {
		n := min(len(qs), tx.insertChunk())
		var b strings.Builder
		b.WriteString(`INSERT INTO push_queue (user_id, app_id, pushkey, room_id, event_id, stream_pos, actions, attempts, next_try_ts) VALUES `)
		valuesList(&b, n, 9, 1)
		args := make([]any, 0, n*9)
		for _, q := range qs[:n] {
			args = append(args, q.UserID, q.AppID, q.Pushkey, q.RoomID, q.EventID, q.Pos, string(q.Actions), q.Attempts, q.NextTry)
		}
		if _, err := tx.q.ExecContext(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("enqueue pushes: %w", err)
		}
		qs = qs[n:]
	}
	return nil
}

// DuePushes returns queued pushes due at now, oldest first.
func (s *Store) DuePushes(ctx context.Context, now int64, limit int) ([]QueuedPush, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT id, user_id, app_id, pushkey, room_id, event_id, stream_pos, actions, attempts, next_try_ts
		FROM push_queue WHERE next_try_ts <= $1 ORDER BY id LIMIT $2`, now, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []QueuedPush
	for rows.Next() {
		var q QueuedPush
		var actions string
		if err := rows.Scan(&q.ID, &q.UserID, &q.AppID, &q.Pushkey, &q.RoomID, &q.EventID, &q.Pos, &actions, &q.Attempts, &q.NextTry); err != nil {
			return nil, err
		}
		q.Actions = []byte(actions)
		out = append(out, q)
	}
	return out, rows.Err()
}

// NextPushDue returns when the earliest queued push is due; false when
// the queue is empty.
func (s *Store) NextPushDue(ctx context.Context) (int64, bool, error) {
	var ts sql.NullInt64
	err := s.reader().QueryRowContext(ctx, `SELECT MIN(next_try_ts) FROM push_queue`).Scan(&ts)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return ts.Int64, ts.Valid, err
}

// DeleteQueuedPush removes a delivered (or abandoned) push.
func (s *Store) DeleteQueuedPush(ctx context.Context, id int64) error {
	_, err := s.writer().ExecContext(ctx, `DELETE FROM push_queue WHERE id = $1`, id)
	return err
}

// RetryQueuedPush schedules another attempt.
func (s *Store) RetryQueuedPush(ctx context.Context, id int64, attempts int, next int64) error {
	_, err := s.writer().ExecContext(ctx, `UPDATE push_queue SET attempts = $1, next_try_ts = $2 WHERE id = $3`, attempts, next, id)
	return err
}
