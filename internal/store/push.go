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

// PushAction is a push_actions row: an event that notifies a user. The
// row keeps the event's position, not its id (EventID is read from events).
type PushAction struct {
	UserID    string
	Pos       int64
	RoomID    string
	EventID   string
	ThreadID  string // "main" or the thread root
	Highlight bool
	Actions   []byte
	TS        int64
	// Counted is what the row adds to the user's count: 1, or for an
	// exception to a room-wide notification 0 (notified otherwise) or -1
	// (not notified).
	Counted int
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
		b.WriteString(`INSERT INTO push_actions (user_id, room_id, stream_pos, thread_id, highlight, actions, ts, counted) VALUES `)
		valuesList(&b, n, 8, 1)
		args := make([]any, 0, n*8)
		for _, r := range rows[:n] {
			args = append(args, r.UserID, r.RoomID, r.Pos, r.ThreadID, r.Highlight, string(r.Actions), r.TS, r.Counted)
		}
		if _, err := tx.q.ExecContext(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("insert push actions: %w", err)
		}
		rows = rows[n:]
	}
	return nil
}

// stagedReadUpTo is the position the user (a placeholder) has read a
// push_staging row "s"'s thread up to by receipts: the latest public or
// private receipt, unthreaded or for that thread.
func stagedReadUpTo(user string) string {
	return `COALESCE((SELECT MAX(r.event_pos) FROM receipts r WHERE r.room_id = s.room_id AND r.receipt_type IN ('m.read', 'm.read.private')
		AND r.user_id = ` + user + ` AND r.thread_id IN ('', s.thread_id)), 0)`
}

// stagedSentUpTo is the position of the user's latest event in the room
// and thread of a push_staging row "s", which marks what comes before it
// as read as well; room is the room's id as the statement has it. (Naming
// the room through the rooms counted rather than s keeps PostgreSQL from
// running the lookup for every staged row of every room before the join:
// 44,000 lookups, and a plan costly enough to be compiled, for 100 rooms.)
func stagedSentUpTo(user, room string) string {
	return `COALESCE((SELECT o.stream_pos FROM push_read o WHERE o.user_id = ` + user + ` AND o.room_id = ` + room + ` AND o.thread_id = s.thread_id), 0)`
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
	// Skip: not notified, an exception to a room-wide notification.
	Skip bool `json:"x,omitempty"`
}

// StagedPush is a push_staging row: an event and the users it notifies.
type StagedPush struct {
	Pos      int64
	RoomID   string
	EventID  string
	ThreadID string
	TS       int64
	// Everyone, when set, are the actions of a room-wide notification
	// (see push_room_actions): Recipients are then its exceptions.
	Everyone   json.RawMessage
	Recipients []StagedRecipient
}

// stagedFor is what a staged push means for a user who was joined at its
// position: their recipient entry, the room-wide one, or nil.
func stagedFor(recipients, everyone, userID string) *StagedRecipient {
	r := findRecipient(recipients, userID)
	switch {
	case r != nil && r.Skip:
		return nil
	case r != nil:
		return r
	case everyone != "":
		return &StagedRecipient{UserID: userID, Actions: json.RawMessage(everyone)}
	}
	return nil
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
	var everyone *string
	if p.Everyone != nil {
		s := string(p.Everyone)
		everyone = &s
	}
	return tx.execLater(ctx, nil, `INSERT INTO push_staging (stream_pos, room_id, event_id, thread_id, ts, recipients, everyone) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		p.Pos, p.RoomID, p.EventID, p.ThreadID, p.TS, string(recipients), everyone)
}

// StagedPushes returns the oldest staged pushes.
func (s *Store) StagedPushes(ctx context.Context, limit int) ([]StagedPush, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT stream_pos, room_id, event_id, thread_id, ts, recipients, everyone FROM push_staging ORDER BY stream_pos LIMIT $1`, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []StagedPush
	for rows.Next() {
		var p StagedPush
		var recipients string
		var everyone sql.NullString
		if err := rows.Scan(&p.Pos, &p.RoomID, &p.EventID, &p.ThreadID, &p.TS, &recipients, &everyone); err != nil {
			return nil, err
		}
		if everyone.Valid {
			p.Everyone = json.RawMessage(everyone.String)
		}
		if err := json.Unmarshal([]byte(recipients), &p.Recipients); err != nil {
			return nil, fmt.Errorf("staged push %d: %w", p.Pos, err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// CompactStaged moves staged pushes into push_actions, one row per
// recipient (a room-wide one into push_room_actions, its exceptions into
// push_actions), in one transaction. Only rows still staged move: a
// redaction may have deleted one since it was read.
func (s *Store) CompactStaged(ctx context.Context, ps []StagedPush) error {
	byPos := make(map[int64]StagedPush, len(ps))
	for _, p := range ps {
		byPos[p.Pos] = p
	}
	return s.InTx(ctx, func(tx *Tx) error {
		var rows []PushAction
		var roomRows []StagedPush
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
				counted := 1
				if p.Everyone != nil {
					counted = 0
					roomRows = append(roomRows, p)
				}
				for _, r := range p.Recipients {
					a := PushAction{UserID: r.UserID, Pos: p.Pos, RoomID: p.RoomID, EventID: p.EventID, ThreadID: p.ThreadID, Highlight: r.Highlight, Actions: r.Actions, TS: p.TS, Counted: counted}
					if r.Skip {
						a.Highlight, a.Actions, a.Counted = false, json.RawMessage(`[]`), -1
					}
					rows = append(rows, a)
				}
			}
			deleted.Close()
			if err := deleted.Err(); err != nil {
				return err
			}
			ps = ps[n:]
		}
		if err := tx.insertRoomActions(ctx, roomRows); err != nil {
			return err
		}
		rows, err := tx.unread(ctx, rows)
		if err != nil {
			return err
		}
		return tx.InsertPushActions(ctx, rows)
	})
}

// VacuumStaged lets PostgreSQL reuse the space of the staged rows moved
// out (a no-op on SQLite, which reuses freed pages by itself).
// push_staging is a queue: every row is deleted within seconds, and until
// a VACUUM its dead rows keep their pages, so the table grew by a row per
// notifying event when autovacuum was off or lagging. The table holds a
// few seconds of rows, so this costs little.
func (s *Store) VacuumStaged(ctx context.Context) error {
	if s.Engine != Postgres {
		return nil
	}
	_, err := s.w.ExecContext(ctx, `VACUUM push_staging`)
	return err
}

// insertRoomActions stores room-wide notifications. The event's id is
// that of its position (migration 30), as for push_actions.
func (tx *Tx) insertRoomActions(ctx context.Context, ps []StagedPush) error {
	for len(ps) > 0 {
		n := min(len(ps), tx.bulkChunk())
		var b strings.Builder
		b.WriteString(`INSERT INTO push_room_actions (room_id, thread_id, stream_pos, actions, ts) VALUES `)
		valuesList(&b, n, 5, 1)
		args := make([]any, 0, n*5)
		for _, p := range ps[:n] {
			args = append(args, p.RoomID, p.ThreadID, p.Pos, string(p.Everyone), p.TS)
		}
		if _, err := tx.q.ExecContext(ctx, b.String(), args...); err != nil {
			return fmt.Errorf("insert room push actions: %w", err)
		}
		ps = ps[n:]
	}
	return nil
}

// unread returns the notifications of rows that highlight or that no read
// receipt covers yet: those read while they were staged are of no more
// use (see DropReadNotifications).
func (tx *Tx) unread(ctx context.Context, rows []PushAction) ([]PushAction, error) {
	type key struct{ room, user, thread string }
	var rooms []string
	seen := map[string]bool{}
	for _, r := range rows {
		if !seen[r.RoomID] {
			seen[r.RoomID] = true
			rooms = append(rooms, r.RoomID)
		}
	}
	read := map[key]int64{}
	for len(rooms) > 0 {
		n := min(len(rooms), 100)
		q, args := inList(`SELECT room_id, user_id, thread_id, MAX(event_pos) FROM receipts WHERE room_id IN (`, rooms[:n],
			`) AND receipt_type IN ('m.read', 'm.read.private') GROUP BY room_id, user_id, thread_id`)
		res, err := tx.q.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("read receipts: %w", err)
		}
		for res.Next() {
			var k key
			var pos int64
			if err := res.Scan(&k.room, &k.user, &k.thread, &pos); err != nil {
				res.Close()
				return nil, err
			}
			read[k] = pos
		}
		res.Close()
		if err := res.Err(); err != nil {
			return nil, err
		}
		rooms = rooms[n:]
	}
	out := rows[:0]
	for _, r := range rows {
		upTo := max(read[key{r.RoomID, r.UserID, ""}], read[key{r.RoomID, r.UserID, r.ThreadID}])
		if r.Highlight || r.Pos > upTo {
			out = append(out, r)
		}
	}
	return out, nil
}

// DropReadNotifications deletes, in the transaction of a local user's read
// receipt at pos in a room's thread ("" unthreaded: every thread), the
// notifications it covers that did not highlight: unread counts start
// after the receipt, so only GET /notifications could still show them, as
// read. Highlights stay listed there.
func (tx *Tx) DropReadNotifications(ctx context.Context, userID, roomID, threadID string, pos int64) error {
	if threadID == "" {
		return tx.execLater(ctx, nil, `DELETE FROM push_actions WHERE user_id = $1 AND room_id = $2 AND stream_pos <= $3 AND highlight = FALSE`,
			userID, roomID, pos)
	}
	return tx.execLater(ctx, nil, `DELETE FROM push_actions WHERE user_id = $1 AND room_id = $2 AND thread_id = $3 AND stream_pos <= $4 AND highlight = FALSE`,
		userID, roomID, threadID, pos)
}

// ForgetPushes deletes the notifications an event (at pos, now redacted)
// gave to users, in the redaction's transaction.
func (tx *Tx) ForgetPushes(ctx context.Context, roomID string, pos int64, users []string) error {
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM push_staging WHERE stream_pos = $1`, pos); err != nil {
		return err
	}
	for _, thread := range []string{`thread_id = 'main'`, `thread_id < 'main'`} {
		if _, err := tx.q.ExecContext(ctx, `DELETE FROM push_room_actions WHERE room_id = $1 AND stream_pos = $2 AND `+thread, roomID, pos); err != nil {
			return err
		}
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

// maxCountRooms bounds the rooms of one counting statement (PostgreSQL
// reads push_staging once per statement; SQLite's parameters, positional
// since stmtcache numbers them, bind in linear time).
func (s *Store) maxCountRooms() int { return 1000 }

// CountRange says which notifications of a room to count: those after
// From that the user has not read.
type CountRange struct {
	RoomID string
	From   int64
}

// query is a statement written in order: add numbers each "?" of a
// fragment as the next placeholder ($n), so that they ascend in order of
// appearance as SQLite needs.
type query struct {
	b    strings.Builder
	args []any
}

func (q *query) add(frag string, args ...any) {
	if n := strings.Count(frag, "?"); n != len(args) {
		panic(fmt.Sprintf("store: %d placeholders, %d arguments in %q", n, len(args), frag))
	}
	for _, part := range strings.SplitAfter(frag, "?") {
		if strings.HasSuffix(part, "?") {
			q.args = append(q.args, args[0])
			args = args[1:]
			q.b.WriteString(part[:len(part)-1] + "$" + itoa(len(q.args)))
			continue
		}
		q.b.WriteString(part)
	}
}

// repeat returns n copies of v.
func repeat(v any, n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = v
	}
	return out
}

// joinedFloor is the position the user's (a placeholder's) current
// membership of room began at, or notJoined when they are not joined.
func joinedFloor(room, notJoined string) string {
	return `COALESCE((SELECT m.joined_pos FROM room_members m WHERE m.room_id = ` + room + ` AND m.user_id = ? AND m.membership = 'join'), ` + notJoined + `)`
}

// notificationCountsQuery is NotificationCounts' statement and arguments.
func (s *Store) notificationCountsQuery(userID string, ranges []CountRange, upTo int64) (string, []any) {
	// The statement is written in order, each "?" numbered as it comes:
	// SQLite numbers parameters by first appearance.
	var q query
	// The rooms and their ranges: on PostgreSQL two arrays, on SQLite
	// JSON (json_each), so that the statement's text does not grow with
	// the rooms and is prepared once per connection: parsing and planning
	// a thousand rooms' lists cost PostgreSQL more than counting, and
	// SQLite took longer to prepare them (15 ms) than to run them.
	// SQLite's is one materialized table (l0) that every part reads, so
	// that a part driven by another table (staging) looks rooms up in an
	// automatic index on it rather than scanning the JSON per row.
	if s.Engine == SQLite {
		pairs := make([][2]any, len(ranges))
		for i, r := range ranges {
			pairs[i] = [2]any{r.RoomID, r.From}
		}
		p, _ := json.Marshal(pairs)
		q.add(`WITH l0 (column1, column2) AS MATERIALIZED (SELECT CAST(j.value ->> 0 AS TEXT), CAST(j.value ->> 1 AS BIGINT) FROM json_each(?) AS j)
		`, string(p))
	}
	values := func() {
		if s.Engine == Postgres {
			ids, froms := make([]string, len(ranges)), make([]int64, len(ranges))
			for i, r := range ranges {
				ids[i], froms[i] = r.RoomID, r.From
			}
			q.add("SELECT * FROM unnest(CAST(? AS TEXT[]), CAST(? AS BIGINT[])) AS u (column1, column2)", ids, froms)
			return
		}
		q.add("SELECT column1, column2 FROM l0")
	}
	in, inArgs := "SELECT column1 FROM l0", []any(nil)
	if s.Engine == Postgres {
		ids := make([]string, len(ranges))
		for i, r := range ranges {
			ids[i] = r.RoomID
		}
		in, inArgs = "SELECT unnest(CAST(? AS TEXT[]))", []any{ids}
	}
	// floor: notifications count from the start of the user's current
	// membership of the room; room-wide ones none when not joined.
	floor, ownFloor := joinedFloor("l.column1", itoa(1<<62)), joinedFloor("l.column1", "0")
	mainRead := `COALESCE((SELECT MAX(r.event_pos) FROM receipts r WHERE r.room_id = l.column1 AND r.receipt_type IN ('m.read', 'm.read.private')
		AND r.user_id = ? AND r.thread_id IN ('', 'main')), 0)`
	read := `COALESCE((SELECT MAX(r.event_pos) FROM receipts r WHERE r.room_id = a.room_id AND r.receipt_type IN ('m.read', 'm.read.private')
		AND r.user_id = ? AND r.thread_id IN ('', a.thread_id)), 0)`
	sent := `COALESCE((SELECT o.stream_pos FROM push_read o WHERE o.user_id = ? AND o.room_id = a.room_id AND o.thread_id = a.thread_id), 0)`
	// SQLite's planner, left to itself, drives a big batch from the
	// user's push actions (every room of theirs, each row then matched
	// against the batch): CROSS JOIN keeps the batch's rooms outside, each
	// an index range.
	join := "JOIN"
	if s.Engine == SQLite {
		join = "CROSS JOIN"
	}
	// The user's own rows, main timeline then threads ("$…" sorts before
	// "main"), then the room-wide rows the same two ways.
	for i, t := range []struct{ table, counted, highlight, user, floored string }{
		{"push_actions", "SUM(a.counted)", "SUM(CASE WHEN a.highlight THEN 1 ELSE 0 END)", "a.user_id = ? AND ", "a.stream_pos > " + ownFloor},
		{"push_room_actions", "COUNT(*)", "0", "", "a.stream_pos > " + floor},
	} {
		if i > 0 {
			q.add("\n\t\tUNION ALL\n")
		}
		users := func(frag string) []any { return repeat(userID, strings.Count(frag, "?")) }
		q.add(`SELECT 0, a.room_id, a.thread_id, ` + t.counted + `, ` + t.highlight + `, '', '', 0 FROM (`)
		values()
		on := `) AS l ` + join + ` ` + t.table + ` a ON ` + t.user + `a.room_id = l.column1 AND a.thread_id = 'main' AND a.stream_pos > l.column2
				AND a.stream_pos > ` + mainRead + ` AND ` + t.floored + `
			WHERE a.stream_pos <= ? AND a.stream_pos > ` + sent + ` GROUP BY a.room_id, a.thread_id`
		q.add(on, append(append(users(t.user+mainRead+t.floored), upTo), userID)...)
		q.add(`
		UNION ALL
		SELECT 0, a.room_id, a.thread_id, ` + t.counted + `, ` + t.highlight + `, '', '', 0 FROM (`)
		values()
		on = `) AS l ` + join + ` ` + t.table + ` a ON ` + t.user + `a.room_id = l.column1 AND a.thread_id < 'main' AND a.stream_pos > l.column2 AND ` + t.floored + `
			WHERE a.stream_pos <= ? AND a.stream_pos > ` + read + ` AND a.stream_pos > ` + sent + ` GROUP BY a.room_id, a.thread_id`
		q.add(on, append(append(users(t.user+t.floored), upTo), userID, userID)...)
	}
	// Staged rows: their recipients are read in Go; the row carries the
	// user's read position in its thread and the floor.
	q.add(`
		UNION ALL
		SELECT 1, s.room_id, s.thread_id, s.stream_pos, `+stagedReadUpTo("?")+`, s.recipients, COALESCE(s.everyone, ''),
			CASE WHEN s.everyone IS NULL THEN `+joinedFloor("s.room_id", "0")+` ELSE `+joinedFloor("s.room_id", itoa(1<<62))+` END
			FROM (`, userID, userID, userID)
	values()
	q.add(`) AS l JOIN push_staging s ON s.room_id = l.column1 AND s.stream_pos > l.column2 WHERE s.stream_pos <= ? AND s.stream_pos > `+stagedSentUpTo("?", "l.column1"), upTo, userID)
	q.add(`
		UNION ALL
		SELECT 2, r.room_id, r.thread_id, MAX(r.event_pos), 0, '', '', 0 FROM receipts r WHERE r.room_id IN (`+in+`)
			AND r.user_id = ? AND r.receipt_type IN ('m.read', 'm.read.private') GROUP BY r.room_id, r.thread_id`, append(slices.Clone(inArgs), userID)...)
	q.add(`
		UNION ALL
		SELECT 3, o.room_id, o.thread_id, o.stream_pos, 0, '', '', 0 FROM push_read o WHERE o.user_id = ? AND o.room_id IN (`+in+`)`, append([]any{userID}, inArgs...)...)
	return q.b.String(), q.args
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
	if n := s.maxCountRooms(); len(ranges) > n {
		first, reads, err := s.NotificationCounts(ctx, userID, ranges[:n], upTo)
		if err != nil {
			return nil, nil, err
		}
		rest, moreReads, err := s.NotificationCounts(ctx, userID, ranges[n:], upTo)
		for k, v := range moreReads {
			reads[k] = v
		}
		return append(first, rest...), reads, err
	}
	text, args := s.notificationCountsQuery(userID, ranges, upTo)
	rows, err := s.reader().QueryContext(ctx, text, args...)
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
		var room, thread, recipients, everyone string
		var a, b, floor int64
		if err := rows.Scan(&staged, &room, &thread, &a, &b, &recipients, &everyone, &floor); err != nil {
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
		if r := stagedFor(recipients, everyone, userID); r != nil && a > b && a > floor {
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
// (0: from the newest), newest first. Those a receipt read that did not
// highlight go once moved out of staging (see DropReadNotifications).
func (s *Store) Notifications(ctx context.Context, userID string, before int64, limit int, onlyHighlight bool) ([]Notification, error) {
	if before <= 0 {
		before = 1 << 62
	}
	only := 0
	if onlyHighlight {
		only = 1
	}
	// readCase is 1 when the user read the row "x" (receipt or own event).
	readCase := func(x, user string) string {
		return `CASE WHEN ` + x + `.stream_pos <= COALESCE((SELECT MAX(r.event_pos) FROM receipts r WHERE r.room_id = ` + x + `.room_id AND r.receipt_type IN ('m.read', 'm.read.private')
				AND r.user_id = ` + user + ` AND r.thread_id IN ('', ` + x + `.thread_id)), 0)
			OR ` + x + `.stream_pos <= COALESCE((SELECT o.stream_pos FROM push_read o WHERE o.user_id = ` + user + ` AND o.room_id = ` + x + `.room_id AND o.thread_id = ` + x + `.thread_id), 0)
			THEN 1 ELSE 0 END`
	}
	// $1 user, $2 before, $3 only highlights (an integer flag for both
	// engines), $4 limit. Room-wide rows count for the rooms the user is
	// joined to since the join, unless the user has a row of their own or
	// sent the event.
	rows, err := s.reader().QueryContext(ctx, `SELECT * FROM (SELECT a.stream_pos, a.room_id, COALESCE((SELECT e.event_id FROM events e WHERE e.stream_pos = a.stream_pos), ''), a.thread_id, a.highlight, a.actions, a.ts,
			`+readCase("a", "$1")+`, '', '', 0
			FROM push_actions a WHERE a.user_id = $1 AND a.stream_pos < $2 AND a.counted >= 0 AND (a.highlight = TRUE OR $3 = 0) ORDER BY a.stream_pos DESC LIMIT $4) x
		UNION ALL
		SELECT * FROM (SELECT p.stream_pos, p.room_id, COALESCE((SELECT e.event_id FROM events e WHERE e.stream_pos = p.stream_pos), ''), p.thread_id, FALSE, p.actions, p.ts, `+readCase("p", "$1")+`, '', '', 0
			FROM room_members m JOIN push_room_actions p ON m.user_id = $1 AND p.room_id = m.room_id AND p.stream_pos > m.joined_pos AND p.stream_pos < $2
			WHERE m.membership = 'join' AND $3 = 0
				AND NOT EXISTS (SELECT 1 FROM push_actions e WHERE e.user_id = $1 AND e.room_id = p.room_id AND e.thread_id = p.thread_id AND e.stream_pos = p.stream_pos)
				AND NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_pos = p.stream_pos AND e.sender = $1)
			ORDER BY p.stream_pos DESC LIMIT $4) y
		UNION ALL
		SELECT s.stream_pos, s.room_id, s.event_id, s.thread_id, FALSE, '', s.ts, `+readCase("s", "$1")+`, s.recipients, COALESCE(s.everyone, ''),
			COALESCE((SELECT m.joined_pos FROM room_members m WHERE m.room_id = s.room_id AND m.user_id = $1 AND m.membership = 'join'), -1)
			FROM push_staging s WHERE s.stream_pos < $2 AND NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_pos = s.stream_pos AND e.sender = $1)`, userID, before, only, limit)
	if err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	defer rows.Close()
	var out []Notification
	for rows.Next() {
		var n Notification
		var actions, recipients, everyone string
		var read int
		var floor int64
		if err := rows.Scan(&n.Pos, &n.RoomID, &n.EventID, &n.ThreadID, &n.Highlight, &actions, &n.TS, &read, &recipients, &everyone, &floor); err != nil {
			return nil, err
		}
		n.UserID, n.Actions, n.Read = userID, []byte(actions), read == 1
		if recipients != "" {
			r := findRecipient(recipients, userID)
			if everyone != "" && (floor < 0 || n.Pos <= floor) {
				r = nil // room-wide, and the user was not joined then
			} else if everyone != "" {
				r = stagedFor(recipients, everyone, userID)
			}
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

// GlobalAccountDataUsers lists the users who have one type of global
// account data.
func (s *Store) GlobalAccountDataUsers(ctx context.Context, typ string) ([]string, error) {
	return queryStrings(ctx, s.reader(), `SELECT user_id FROM account_data WHERE room_id = '' AND type = $1`, typ)
}

// GlobalAccountDataOf is Store.GlobalAccountDataOf inside a transaction
// (a join's: the joiner's push rules), where it rides with the writes
// before it (queryEach).
func (tx *Tx) GlobalAccountDataOf(ctx context.Context, typ string, userIDs []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for len(userIDs) > 0 {
		n := min(len(userIDs), 500)
		q, args := accountDataOfQuery(typ, userIDs[:n])
		err := tx.queryEach(ctx, func(scan func(...any) error) error {
			var u, c string
			if err := scan(&u, &c); err != nil {
				return err
			}
			out[u] = []byte(c)
			return nil
		}, q, args...)
		if err != nil {
			return nil, err
		}
		userIDs = userIDs[n:]
	}
	return out, nil
}

// accountDataOfQuery reads one type of global account data of users.
func accountDataOfQuery(typ string, userIDs []string) (string, []any) {
	var b strings.Builder
	b.WriteString(`SELECT user_id, content FROM account_data WHERE room_id = '' AND type = $1 AND user_id IN (`)
	args := []any{typ}
	for i, u := range userIDs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i+2)
		args = append(args, u)
	}
	b.WriteString(`)`)
	return b.String(), args
}

func globalAccountDataOf(ctx context.Context, q querier, typ string, userIDs []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for len(userIDs) > 0 {
		n := min(len(userIDs), 500)
		query, args := accountDataOfQuery(typ, userIDs[:n])
		rows, err := q.QueryContext(ctx, query, args...)
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
