package store

import (
	"context"
	"fmt"
)

// AggregateSummary is one row of relation_aggregates: the latest valid
// child of a parent for one rel_type (Rank is its origin_server_ts for
// m.replace, its position otherwise) and the number of such children.
type AggregateSummary struct {
	Parent  string
	RelType string
	EventID string
	Count   int
	MaxPos  int64
	Rank    int64
}

// maxRangeSpread bounds how many positions per wanted parent a range scan
// may cover before a lookup by event id is cheaper (sparse pages, such as
// filtered ones, span many events they do not show).
const maxRangeSpread = 4

// aggregateRangeQuery reads the aggregates of a room's parents in a range
// of positions from the covering index relation_aggregates_room_pos.
const aggregateRangeQuery = `SELECT parent, rel_type, latest_event, cnt, max_pos, rank_ts FROM relation_aggregates WHERE room_id = $1 AND parent_pos >= $2 AND parent_pos <= $3`

// AggregateSummaries returns the relation_aggregates rows of parents
// without touching events. When every parent is in roomID and they are
// most of the room's events between positions lo and hi (dense, as the
// candidates of a /messages page are, or when lo..hi is narrow), one index
// range scan over the room's aggregates reads them (rows of other parents
// in the range are skipped); otherwise they are looked up by event id.
func (s *Store) AggregateSummaries(ctx context.Context, roomID string, lo, hi int64, parents map[string]bool, dense bool) ([]AggregateSummary, error) {
	if len(parents) == 0 {
		return nil, nil
	}
	var query string
	var args []any
	if roomID != "" && hi >= lo && (dense || hi-lo < int64(maxRangeSpread*len(parents)+32)) {
		query = aggregateRangeQuery
		args = []any{roomID, lo, hi}
	} else {
		ids := make([]string, 0, len(parents))
		for p := range parents {
			ids = append(ids, p)
		}
		query, args = inList(`SELECT parent, rel_type, latest_event, cnt, max_pos, rank_ts FROM relation_aggregates WHERE parent IN (`, ids, `)`)
	}
	rows, err := s.reader().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("relation aggregates: %w", err)
	}
	defer rows.Close()
	out := make([]AggregateSummary, 0, len(parents))
	var r AggregateSummary
	for rows.Next() {
		if err := rows.Scan(&r.Parent, &r.RelType, &r.EventID, &r.Count, &r.MaxPos, &r.Rank); err != nil {
			return nil, err
		}
		if parents[r.Parent] {
			out = append(out, r)
		}
	}
	return out, rows.Err()
}

// References returns the valid m.reference children of parents, newest
// first, at most maxBundledReferences per parent.
func (s *Store) References(ctx context.Context, parents []string) ([]BundleRow, error) {
	if len(parents) == 0 {
		return nil, nil
	}
	q, args := inList(`SELECT relates_to, event_id, stream_pos FROM event_relations WHERE relates_to IN (`, parents, `) AND rel_type = 'm.reference' AND valid = TRUE ORDER BY stream_pos DESC`)
	rows, err := s.reader().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("references: %w", err)
	}
	defer rows.Close()
	var out []BundleRow
	n := map[string]int{}
	for rows.Next() {
		r := BundleRow{RelType: "m.reference", Count: 1}
		if err := rows.Scan(&r.Parent, &r.EventID, &r.MaxPos); err != nil {
			return nil, err
		}
		if n[r.Parent]++; n[r.Parent] <= maxBundledReferences {
			out = append(out, r)
		}
	}
	return out, rows.Err()
}
