package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"
)

// Relation is one row of the relations index: a child event pointing at a
// parent in the same room through m.relates_to.
type Relation struct {
	EventID   string
	RoomID    string
	RelatesTo string
	RelType   string
	EventType string
	Sender    string
	Key       sql.NullString // aggregation key of annotations
	OriginTS  int64
	Pos       int64
	// Valid is false for a replacement that breaks the rules of m.replace:
	// it is listed as a child but never aggregated.
	Valid bool
}

// InsertRelation records a relation; a second write of the same child is a
// no-op.
func (tx *Tx) InsertRelation(ctx context.Context, r Relation) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO event_relations (event_id, room_id, relates_to, rel_type, event_type, sender, aggregation_key, origin_ts, stream_pos, valid)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (event_id) DO NOTHING`,
		r.EventID, r.RoomID, r.RelatesTo, r.RelType, r.EventType, r.Sender, r.Key, r.OriginTS, r.Pos, r.Valid)
	if err != nil {
		return fmt.Errorf("insert relation: %w", err)
	}
	return nil
}

// DeleteRelation forgets the relation of a child (once it is redacted)
// and returns the parent it pointed at and its rel_type ("" when it had
// none).
func (tx *Tx) DeleteRelation(ctx context.Context, eventID string) (parent, relType string, err error) {
	err = tx.q.QueryRowContext(ctx, `DELETE FROM event_relations WHERE event_id = $1 RETURNING relates_to, rel_type`, eventID).Scan(&parent, &relType)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", nil
	}
	return parent, relType, err
}

// HasAnnotation reports whether a sender already annotated a parent with an
// event of this type and key.
func (tx *Tx) HasAnnotation(ctx context.Context, parent, sender, eventType, key string) (bool, error) {
	var n int
	err := tx.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM event_relations
		WHERE relates_to = $1 AND rel_type = 'm.annotation' AND sender = $2 AND event_type = $3 AND aggregation_key = $4`,
		parent, sender, eventType, key).Scan(&n)
	return n > 0, err
}

// BundleRow is one aggregated row for a parent: for m.replace and m.thread
// the winning child (latest edit, latest thread event) with the number of
// children, for m.reference every child (up to a bound). MaxPos is the
// newest position among the children counted.
type BundleRow struct {
	Parent  string
	RelType string
	EventID string
	Count   int
	MaxPos  int64
}

// maxBundledReferences bounds the m.reference chunk of one parent.
const maxBundledReferences = 200

// BundleRows aggregates the valid m.replace, m.thread and m.reference
// children of parents in one statement, leaving out children after maxPos
// and those sent by users in ignored. The latest edit is the one with the
// largest (origin_server_ts, event_id), the latest thread event the one
// with the largest stream position.
func (s *Store) BundleRows(ctx context.Context, parents []string, maxPos int64, ignored []string) ([]BundleRow, error) {
	if len(parents) == 0 {
		return nil, nil
	}
	var b strings.Builder
	args := make([]any, 0, len(parents)+len(ignored)+1)
	b.WriteString(`SELECT relates_to, rel_type, event_id, cnt, mx FROM (
		SELECT relates_to, rel_type, event_id,
			ROW_NUMBER() OVER (PARTITION BY relates_to, rel_type ORDER BY CASE WHEN rel_type = 'm.replace' THEN origin_ts ELSE stream_pos END DESC, event_id DESC) AS n,
			COUNT(*) OVER (PARTITION BY relates_to, rel_type) AS cnt,
			MAX(stream_pos) OVER (PARTITION BY relates_to, rel_type) AS mx
		FROM event_relations WHERE relates_to IN (`)
	for i, p := range parents {
		if i > 0 {
			b.WriteString(", ")
		}
		args = append(args, p)
		fmt.Fprintf(&b, "$%d", len(args))
	}
	b.WriteString(`) AND rel_type IN ('m.replace', 'm.thread', 'm.reference') AND valid = TRUE`)
	args = append(args, maxPos)
	fmt.Fprintf(&b, " AND stream_pos <= $%d", len(args))
	if len(ignored) > 0 {
		b.WriteString(" AND sender NOT IN (")
		for i, u := range ignored {
			if i > 0 {
				b.WriteString(", ")
			}
			args = append(args, u)
			fmt.Fprintf(&b, "$%d", len(args))
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, `) AS t WHERE n = 1 OR (rel_type = 'm.reference' AND n <= %d)`, maxBundledReferences)
	rows, err := s.reader().QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("bundle relations: %w", err)
	}
	defer rows.Close()
	var out []BundleRow
	for rows.Next() {
		var r BundleRow
		if err := rows.Scan(&r.Parent, &r.RelType, &r.EventID, &r.Count, &r.MaxPos); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// AddToAggregate counts a new valid m.replace, m.thread or m.reference
// child of parent in relation_aggregates, making it the latest when it
// ranks above the current one (rank: origin_server_ts for edits, the
// stream position otherwise; then the event id).
func (tx *Tx) AddToAggregate(ctx context.Context, parent, roomID, relType, eventID string, rank, pos, parentPos int64) error {
	err := tx.execLater(ctx, nil, `INSERT INTO relation_aggregates (parent, room_id, rel_type, latest_event, rank_ts, cnt, max_pos, parent_pos) VALUES ($1, $2, $3, $4, $5, 1, $6, $7)
		ON CONFLICT (parent, rel_type) DO UPDATE SET
			cnt = relation_aggregates.cnt + 1,
			max_pos = CASE WHEN excluded.max_pos > relation_aggregates.max_pos THEN excluded.max_pos ELSE relation_aggregates.max_pos END,
			latest_event = CASE WHEN excluded.rank_ts > relation_aggregates.rank_ts OR (excluded.rank_ts = relation_aggregates.rank_ts AND excluded.latest_event > relation_aggregates.latest_event)
				THEN excluded.latest_event ELSE relation_aggregates.latest_event END,
			rank_ts = CASE WHEN excluded.rank_ts > relation_aggregates.rank_ts THEN excluded.rank_ts ELSE relation_aggregates.rank_ts END`,
		parent, roomID, relType, eventID, rank, pos, parentPos)
	if err != nil {
		return fmt.Errorf("update relation aggregate: %w", err)
	}
	return tx.refreshRelSummary(ctx, parent)
}

// refreshRelSummary copies the relation_aggregates rows of parent onto its
// event row (see migration 0021 and ParseAggregates).
func (tx *Tx) refreshRelSummary(ctx context.Context, parent string) error {
	agg, sep := "group_concat", "char"
	if tx.s.Engine == Postgres {
		agg, sep = "string_agg", "chr"
	}
	f := " || " + sep + "(31) || "
	err := tx.execLater(ctx, nil, `UPDATE events SET rel_summary = (SELECT `+agg+`(a.rel_type`+f+`a.latest_event`+f+`a.cnt`+f+`a.max_pos`+f+`a.rank_ts, `+sep+`(30))
		FROM relation_aggregates a WHERE a.parent = $1) WHERE event_id = $1`, parent)
	if err != nil {
		return fmt.Errorf("update relation summary: %w", err)
	}
	return nil
}

// RecomputeAggregate rebuilds the relation_aggregates row of a parent and
// rel type from its remaining valid children (after one was redacted).
func (tx *Tx) RecomputeAggregate(ctx context.Context, parent, relType string) error {
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM relation_aggregates WHERE parent = $1 AND rel_type = $2`, parent, relType); err != nil {
		return err
	}
	_, err := tx.q.ExecContext(ctx, `INSERT INTO relation_aggregates (parent, room_id, rel_type, latest_event, rank_ts, cnt, max_pos, parent_pos)
		SELECT relates_to, room_id, rel_type, event_id, rnk, cnt, mx, (SELECT e.stream_pos FROM events e WHERE e.event_id = t.relates_to) FROM (
			SELECT relates_to, room_id, rel_type, event_id,
				CASE WHEN rel_type = 'm.replace' THEN origin_ts ELSE stream_pos END AS rnk,
				ROW_NUMBER() OVER (ORDER BY CASE WHEN rel_type = 'm.replace' THEN origin_ts ELSE stream_pos END DESC, event_id DESC) AS n,
				COUNT(*) OVER () AS cnt,
				MAX(stream_pos) OVER () AS mx
			FROM event_relations WHERE relates_to = $1 AND rel_type = $2 AND valid = TRUE
		) AS t WHERE n = 1`, parent, relType)
	if err != nil {
		return fmt.Errorf("recompute relation aggregate: %w", err)
	}
	return tx.refreshRelSummary(ctx, parent)
}

// ThreadParticipants returns, per thread root among roots, the senders of
// its valid thread events.
func (s *Store) ThreadParticipants(ctx context.Context, roots []string) (map[string][]string, error) {
	out := map[string][]string{}
	if len(roots) == 0 {
		return out, nil
	}
	q, args := inList(`SELECT DISTINCT relates_to, sender FROM event_relations WHERE relates_to IN (`, roots, `) AND rel_type = 'm.thread' AND valid = TRUE`)
	rows, err := s.reader().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("thread participants: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var root, sender string
		if err := rows.Scan(&root, &sender); err != nil {
			return nil, err
		}
		out[root] = append(out[root], sender)
	}
	return out, rows.Err()
}

// RelationsQuery selects children of one parent for /relations.
type RelationsQuery struct {
	RoomID    string
	Parent    string
	Depth     int    // 1: direct children only
	RelType   string // "" for any
	EventType string // "" for any
	After     int64  // stream_pos > After
	UpTo      int64  // stream_pos <= UpTo
	Forward   bool   // oldest first; newest first otherwise
	Limit     int
}

// Relations returns the children (and, with Depth > 1, their descendants)
// of an event within a window of positions.
func (s *Store) Relations(ctx context.Context, q RelationsQuery) ([]*EventRow, error) {
	order := "DESC"
	if q.Forward {
		order = "ASC"
	}
	// One text with the columns and the order spliced in, so that the
	// placeholders read in order.
	query := fmt.Sprintf(`WITH RECURSIVE tree(child, depth) AS (
			SELECT event_id, 1 FROM event_relations WHERE relates_to = $1
			UNION ALL
			SELECT r.event_id, tree.depth + 1 FROM event_relations r JOIN tree ON r.relates_to = tree.child WHERE tree.depth < $2
		)
		SELECT %s FROM events WHERE event_id IN (
			SELECT r.event_id FROM tree JOIN event_relations r ON r.event_id = tree.child
			WHERE r.room_id = $3 AND ($4 = '' OR r.rel_type = $4) AND ($5 = '' OR r.event_type = $5)
		) AND stream_pos > $6 AND stream_pos <= $7 ORDER BY stream_pos %s LIMIT $8`, eventCols, order)
	return scanEvents(s.reader().QueryContext(ctx, query, q.Parent, max(q.Depth, 1), q.RoomID, q.RelType, q.EventType, q.After, q.UpTo, q.Limit))
}

// ThreadRoot is a thread of a room with the position of its latest event.
type ThreadRoot struct {
	RootID    string
	LatestPos int64
}

// Threads lists a room's threads by latest activity, newest first: those
// whose latest event (counting events up to maxPos) is at or before
// before. With participant set, only threads whose root or a reply that
// user sent.
func (s *Store) Threads(ctx context.Context, roomID string, maxPos int64, participant string, before int64, limit int) ([]ThreadRoot, error) {
	var rows *sql.Rows
	var err error
	if maxPos == math.MaxInt64 {
		// Every reply counts: the aggregates know each thread's latest.
		rows, err = s.reader().QueryContext(ctx, `SELECT a.parent, a.max_pos FROM relation_aggregates a JOIN events e ON e.event_id = a.parent
			WHERE a.room_id = $1 AND a.rel_type = 'm.thread' AND a.max_pos <= $2
				AND ($3 = '' OR e.sender = $3 OR EXISTS (SELECT 1 FROM event_relations p WHERE p.relates_to = a.parent AND p.rel_type = 'm.thread' AND p.valid = TRUE AND p.sender = $3))
			ORDER BY a.max_pos DESC LIMIT $4`, roomID, before, participant, limit)
	} else {
		rows, err = s.reader().QueryContext(ctx, `SELECT r.relates_to, MAX(r.stream_pos) FROM event_relations r JOIN events e ON e.event_id = r.relates_to
			WHERE r.room_id = $1 AND r.rel_type = 'm.thread' AND r.valid = TRUE AND r.stream_pos <= $2
				AND ($3 = '' OR e.sender = $3 OR EXISTS (SELECT 1 FROM event_relations p WHERE p.relates_to = r.relates_to AND p.rel_type = 'm.thread' AND p.valid = TRUE AND p.sender = $3))
			GROUP BY r.relates_to HAVING MAX(r.stream_pos) <= $4 ORDER BY 2 DESC LIMIT $5`,
			roomID, maxPos, participant, before, limit)
	}
	if err != nil {
		return nil, fmt.Errorf("threads: %w", err)
	}
	defer rows.Close()
	var out []ThreadRoot
	for rows.Next() {
		var t ThreadRoot
		if err := rows.Scan(&t.RootID, &t.LatestPos); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}
