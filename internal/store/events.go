package store

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
)

// EventRow is a stored event.
type EventRow struct {
	Pos        int64
	EventID    string
	RoomID     string
	Type       string
	StateKey   sql.NullString
	Sender     string
	Depth      int64
	OriginTS   int64
	PDU        []byte // canonical JSON of the PDU (redacted form once redacted); read it with JSON
	Unsigned   []byte // server-computed unsigned data, JSON object
	StateGroup int64  // state before the event
	Redacted   bool
	TxnDevice  sql.NullString
	TxnID      sql.NullString
	// TxnKey identifies the client transaction (its id scoped by endpoint)
	// for idempotency; written, never read back into rows.
	TxnKey sql.NullString
	// Aggregates is the event's relation aggregates as kept on its row
	// (see ParseAggregates); AggregatesRead tells that they were read with
	// the row, so are as fresh as it is (rows built in memory have none).
	Aggregates     string
	AggregatesRead bool
	// Pruned marks a copy of a row redacted for one reader (its sender
	// was erased, see rooms.Viewer.Shown): its client form is never
	// cached, nor shown with bundled aggregations.
	Pruned bool

	lazy *lazyPDU // the stored form, until JSON decodes it
}

// lazyPDU is the stored form of a row's PDU, decoded on first use. Rows
// are shared between goroutines once read, hence the mutex.
type lazyPDU struct {
	mu             sync.Mutex
	size           int // of stored, which decoding drops
	stored         []byte
	roomID, sender string
	pdu            []byte
}

// JSON returns the event's PDU: PDU for a row built in memory; a row read
// from the database decodes its stored form on first use, so that a page
// whose client forms are cached decodes nothing. Nil if it does not
// decode, which only a damaged database can cause.
func (e *EventRow) JSON() []byte {
	if e.PDU != nil || e.lazy == nil {
		return e.PDU
	}
	l := e.lazy
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stored != nil {
		l.pdu, _ = decodePDU(l.stored, l.roomID, l.sender)
		l.stored = nil
	}
	return l.pdu
}

// JSONOnce is JSON for a caller that needs the PDU once (to cache what
// it makes of it): a row not decoded yet stays so, keeping only its
// compressed form, about half the size, in caches that hold rows.
func (e *EventRow) JSONOnce() []byte {
	if e.PDU != nil || e.lazy == nil {
		return e.PDU
	}
	l := e.lazy
	l.mu.Lock()
	stored, decoded := l.stored, l.pdu
	l.mu.Unlock()
	if stored == nil {
		return decoded
	}
	pdu, _ := decodePDU(stored, l.roomID, l.sender)
	return pdu
}

// StoredSize is the size of the row's PDU as it was read from the
// database: compressed, or as it is when PDU holds it.
func (e *EventRow) StoredSize() int {
	if e.lazy != nil {
		return e.lazy.size
	}
	return len(e.PDU)
}

// HasURL reports whether the event's content has a url (the contains_url
// filter of /messages and /search).
func (e *EventRow) HasURL() bool {
	var c struct {
		Content struct {
			URL json.RawMessage `json:"url"`
		} `json:"content"`
	}
	_ = json.Unmarshal(e.JSON(), &c)
	return c.Content.URL != nil
}

// eventInsertCols are the columns an event row is written with (the
// values of insertArgs); eventCols (read) add its relation aggregates.
const (
	eventInsertCols = `stream_pos, event_id, room_id, type, state_key, sender, depth, origin_ts, pdu, unsigned, state_group, redacted, txn_device, txn_id`
	eventCols       = eventInsertCols + `, rel_summary`
)

// insertArgs are the values of eventInsertCols, the PDU in its stored
// form (see pducodec.go).
func (e *EventRow) insertArgs() []any {
	return []any{e.Pos, e.EventID, e.RoomID, e.Type, e.StateKey, e.Sender, e.Depth, e.OriginTS, encodePDU(e.JSON(), e.RoomID, e.Sender),
		string(e.Unsigned), e.StateGroup, e.Redacted, e.TxnDevice, e.TxnID}
}

func scanEvent(row interface{ Scan(...any) error }) (*EventRow, error) {
	var e EventRow
	var pdu []byte
	var unsigned string
	var aggregates sql.NullString
	err := row.Scan(&e.Pos, &e.EventID, &e.RoomID, &e.Type, &e.StateKey, &e.Sender, &e.Depth, &e.OriginTS, &pdu, &unsigned, &e.StateGroup, &e.Redacted, &e.TxnDevice, &e.TxnID, &aggregates)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("scan event: %w", err)
	}
	if bytes.HasPrefix(pdu, zstdMagic) {
		e.lazy = &lazyPDU{size: len(pdu), stored: pdu, roomID: e.RoomID, sender: e.Sender}
	} else {
		e.PDU = pdu
	}
	e.Unsigned = []byte(unsigned)
	e.Aggregates, e.AggregatesRead = aggregates.String, true
	return &e, nil
}

func scanEvents(rows *sql.Rows, err error) ([]*EventRow, error) {
	if err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	defer rows.Close()
	var out []*EventRow
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// InsertEvent stores an event row; ErrExists when its client transaction
// (sender, device, TxnKey) already produced an event. The write may be
// deferred (see execLater), and so may the ErrExists: the transaction then
// fails with it when it ends.
func (tx *Tx) InsertEvent(ctx context.Context, e *EventRow) error {
	var txnKey []byte // NULL: no client transaction
	if e.TxnKey.Valid {
		txnKey = txnKeyHash(e.Sender, e.TxnDevice.String, e.TxnKey.String)
	}
	err := tx.execLater(ctx, txnConflict, `INSERT INTO events (`+eventInsertCols+`, txn_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		append(e.insertArgs(), txnKey)...)
	if err != nil && !errors.Is(err, ErrExists) {
		return fmt.Errorf("insert event: %w", err)
	}
	return err
}

// txnConflict makes ErrExists of the unique violation of a client
// transaction's second event (index events_txn).
func txnConflict(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == "events_txn" ||
		strings.Contains(err.Error(), "UNIQUE constraint failed: events.txn_key") {
		return fmt.Errorf("%w: %v", ErrExists, err)
	}
	return err
}

// RedactEvent replaces the PDU of a stored event (row, as read) by its
// redacted form and records the redaction in its unsigned data.
func (tx *Tx) RedactEvent(ctx context.Context, row *EventRow, redactedPDU, unsigned []byte) error {
	_, err := tx.q.ExecContext(ctx, `UPDATE events SET pdu = $1, unsigned = $2, redacted = TRUE WHERE event_id = $3`,
		encodePDU(redactedPDU, row.RoomID, row.Sender), string(unsigned), row.EventID)
	return err
}

// GetEvent returns one event or ErrNotFound.
func (s *Store) GetEvent(ctx context.Context, eventID string) (*EventRow, error) {
	return scanEvent(s.reader().QueryRowContext(ctx, `SELECT `+eventCols+` FROM events WHERE event_id = $1`, eventID))
}

// GetEventTx is GetEvent inside a write transaction.
func (tx *Tx) GetEvent(ctx context.Context, eventID string) (*EventRow, error) {
	return scanEvent(tx.q.QueryRowContext(ctx, `SELECT `+eventCols+` FROM events WHERE event_id = $1`, eventID))
}

// GetEvents returns the events with the given ids that exist, in any order.
func (s *Store) GetEvents(ctx context.Context, ids []string) ([]*EventRow, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	var out []*EventRow
	// Chunk to stay under SQLite's variable limit.
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(len(ids), start+500)]
		q, args := inList(`SELECT `+eventCols+` FROM events WHERE event_id IN (`, chunk, `)`)
		rows, err := scanEvents(s.reader().QueryContext(ctx, q, args...))
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}

// inList builds "prefix $1, $2, … suffix" with args.
func inList(prefix string, items []string, suffix string, extra ...any) (string, []any) {
	var b strings.Builder
	b.WriteString(prefix)
	args := make([]any, 0, len(items)+len(extra))
	for i, it := range items {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", i+1)
		args = append(args, it)
	}
	b.WriteString(suffix)
	args = append(args, extra...)
	return b.String(), args
}

// RoomEvents returns up to limit timeline events of a room with from <
// pos <= to, newest first when backwards, oldest first otherwise.
// Timeline positions are those of IsTimelinePos (-1099511627776 is
// BackfillBand).
func (s *Store) RoomEvents(ctx context.Context, roomID string, from, to int64, backwards bool, limit int) ([]*EventRow, error) {
	dir := "ASC"
	if backwards {
		dir = "DESC"
	}
	var q query
	q.add(`SELECT ` + eventCols + ` FROM events WHERE `)
	s.inRoomOrdered(&q, roomID)
	q.add(` AND stream_pos > ? AND stream_pos <= ? AND (stream_pos > 0 OR stream_pos < -1099511627776) ORDER BY room_id `+dir+`, stream_pos `+dir+` LIMIT ?`,
		from, to, limit)
	return scanEvents(s.reader().QueryContext(ctx, q.b.String(), q.args...))
}

// inRoomOrdered adds the condition that selects the events of a room to
// a statement ordered by (room_id, stream_pos) with a LIMIT, so that on
// PostgreSQL only events_room_pos can give the order. With "room_id = $1
// ORDER BY stream_pos" PostgreSQL may walk the primary key instead and
// filter on the room, betting that the room's events are spread over all
// positions: for the 10,000-member room of the sector benchmark, whose
// latest event lay 28,000 positions back, a custom plan of a lazy-loaded
// sync's timeline read 28,000 rows (60 ms) instead of 21. A range that
// holds one value keeps the room's statistics for the estimate, unlike
// an equality: PostgreSQL drops a column that equals a constant from the
// order, which both indexes then give. The index is positioned as by an
// equality (both bounds are inclusive, so the stream_pos bound is part
// of the start key). SQLite, which would not, keeps the equality.
func (s *Store) inRoomOrdered(q *query, roomID string) {
	if s.Engine == Postgres {
		q.add(`room_id >= ? AND room_id <= ?`, roomID, roomID)
		return
	}
	q.add(`room_id = ?`, roomID)
}

// roomTimelinesPG is RoomTimelines on PostgreSQL.
var roomTimelinesPG = fmt.Sprintf(`SELECT e.* FROM unnest($1::text[]) AS r(id) CROSS JOIN LATERAL (
	SELECT %s FROM events WHERE room_id = r.id AND stream_pos > 0 AND stream_pos <= $2 ORDER BY stream_pos DESC LIMIT $3) AS e`, eventCols)

// RoomTimelines returns, for each room, up to limit events with pos <= to,
// newest first, in one statement (per 50 rooms on SQLite): an initial sync
// needs the latest events of every room, and one round trip per room is
// what made it slow on PostgreSQL. There the statement has one text
// whatever the number of rooms (a LATERAL join over an array), so each
// connection prepares and plans it once.
func (s *Store) RoomTimelines(ctx context.Context, roomIDs []string, to int64, limit int) (map[string][]*EventRow, error) {
	var rows []*EventRow
	if s.Engine == Postgres {
		var err error
		rows, err = scanEvents(s.reader().QueryContext(ctx, roomTimelinesPG, roomIDs, to, limit))
		if err != nil {
			return nil, err
		}
	}
	for start := 0; start < len(roomIDs) && s.Engine != Postgres; start += 50 {
		chunk := roomIDs[start:min(len(roomIDs), start+50)]
		var b strings.Builder
		args := make([]any, 0, 3*len(chunk))
		for i, roomID := range chunk {
			if i > 0 {
				b.WriteString(" UNION ALL ")
			}
			n := 3 * i
			fmt.Fprintf(&b, "SELECT * FROM (SELECT %s FROM events WHERE room_id = $%d AND stream_pos > 0 AND stream_pos <= $%d ORDER BY stream_pos DESC LIMIT $%d) AS t%d",
				eventCols, n+1, n+2, n+3, i)
			args = append(args, roomID, to, limit)
		}
		more, err := scanEvents(s.reader().QueryContext(ctx, b.String(), args...))
		if err != nil {
			return nil, err
		}
		rows = append(rows, more...)
	}
	out := make(map[string][]*EventRow, len(roomIDs))
	for _, r := range rows {
		out[r.RoomID] = append(out[r.RoomID], r)
	}
	for _, rows := range out {
		slices.SortFunc(rows, func(a, b *EventRow) int { return cmp.Compare(b.Pos, a.Pos) })
	}
	return out, nil
}

// RoomStateEventsBetween returns the state events of a room with
// from < pos <= to, oldest first.
func (s *Store) RoomStateEventsBetween(ctx context.Context, roomID string, from, to int64) ([]*EventRow, error) {
	return scanEvents(s.reader().QueryContext(ctx, `SELECT `+eventCols+` FROM events
		WHERE room_id = $1 AND stream_pos > $2 AND stream_pos <= $3 AND state_key IS NOT NULL ORDER BY stream_pos`, roomID, from, to))
}

// EventAtOrBeforeTS returns the last event of a room at or before ts
// (backwards) or the first at or after it (forwards).
func (s *Store) EventNearTS(ctx context.Context, roomID string, ts int64, backwards bool) (*EventRow, error) {
	q := `SELECT ` + eventCols + ` FROM events WHERE room_id = $1 AND origin_ts <= $2 AND ` + timelinePos + ` ORDER BY origin_ts DESC, stream_pos DESC LIMIT 1`
	if !backwards {
		q = `SELECT ` + eventCols + ` FROM events WHERE room_id = $1 AND origin_ts >= $2 AND ` + timelinePos + ` ORDER BY origin_ts ASC, stream_pos ASC LIMIT 1`
	}
	return scanEvent(s.reader().QueryRowContext(ctx, q, roomID, ts))
}

// Room is a rooms row.
type Room struct {
	RoomID     string
	Version    string
	Creator    string
	CreatedTS  int64
	Published  bool
	StateGroup int64
}

// CreateRoom inserts a room row; ErrExists if the id is taken.
func (tx *Tx) CreateRoom(ctx context.Context, r Room) error {
	res, err := tx.q.ExecContext(ctx, `INSERT INTO rooms (room_id, room_version, creator, created_ts) VALUES ($1, $2, $3, $4) ON CONFLICT (room_id) DO NOTHING`,
		r.RoomID, r.Version, r.Creator, now())
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

// GetRoom returns a room or ErrNotFound.
func (s *Store) GetRoom(ctx context.Context, roomID string) (*Room, error) {
	var r Room
	err := s.reader().QueryRowContext(ctx, `SELECT room_id, room_version, creator, created_ts, published, state_group FROM rooms WHERE room_id = $1`, roomID).
		Scan(&r.RoomID, &r.Version, &r.Creator, &r.CreatedTS, &r.Published, &r.StateGroup)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &r, err
}

// RoomVersions returns the versions of rooms (those known), in one
// statement (per 500 rooms on SQLite): parsing the events of a thousand
// rooms read cold would otherwise ask after each room's version.
func (s *Store) RoomVersions(ctx context.Context, roomIDs []string) (map[string]string, error) {
	out := make(map[string]string, len(roomIDs))
	scan := func(rows *sql.Rows, err error) error {
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, v string
			if err := rows.Scan(&id, &v); err != nil {
				return err
			}
			out[id] = v
		}
		return rows.Err()
	}
	const q = `SELECT room_id, room_version FROM rooms WHERE room_id `
	if s.Engine == Postgres {
		return out, scan(s.reader().QueryContext(ctx, q+`= ANY($1)`, roomIDs))
	}
	for start := 0; start < len(roomIDs); start += 500 {
		q, args := inList(q+`IN (`, roomIDs[start:min(len(roomIDs), start+500)], `)`)
		if err := scan(s.reader().QueryContext(ctx, q, args...)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SetRoomStateGroup records the state group of a room's current state.
func (tx *Tx) SetRoomStateGroup(ctx context.Context, roomID string, group int64) error {
	return tx.execLater(ctx, nil, `UPDATE rooms SET state_group = $1 WHERE room_id = $2`, group, roomID)
}

// SetRoomPublished sets the room directory visibility.
func (tx *Tx) SetRoomPublished(ctx context.Context, roomID string, published bool) error {
	_, err := tx.q.ExecContext(ctx, `UPDATE rooms SET published = $1 WHERE room_id = $2`, published, roomID)
	return err
}

// Extremities returns a room's recorded forward extremities (none for a
// linear room, whose newest event is its only extremity).
func (s *Store) Extremities(ctx context.Context, roomID string) ([]string, error) {
	return queryStrings(ctx, s.reader(), `SELECT event_id FROM room_extremities WHERE room_id = $1 ORDER BY event_id`, roomID)
}

// ClearExtremities forgets a room's recorded forward extremities once a
// new event has merged them: a linear room records none (its newest event
// is the extremity).
func (tx *Tx) ClearExtremities(ctx context.Context, roomID string) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM room_extremities WHERE room_id = $1`, roomID)
	return err
}

func queryStrings(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// LookupTxnID returns the event id of an earlier transaction, or ErrNotFound.
func (s *Store) LookupTxnID(ctx context.Context, userID, deviceID, txnKey string) (string, error) {
	var id string
	err := s.reader().QueryRowContext(ctx, `SELECT event_id FROM events WHERE txn_key = $1`, txnKeyHash(userID, deviceID, txnKey)).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		// Transactions from before migration 8.
		err = s.reader().QueryRowContext(ctx, `SELECT event_id FROM txn_ids WHERE user_id = $1 AND device_id = $2 AND txn_id = $3`, userID, deviceID, txnKey).Scan(&id)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return id, err
}
