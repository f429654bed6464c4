package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
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

// ParseAggregates returns the aggregates kept on an event row (its
// rel_summary, see migration 0021), appended to dst; records that do not
// parse are skipped.
func ParseAggregates(dst []AggregateSummary, row *EventRow) []AggregateSummary {
	rest := row.Aggregates
	for rest != "" {
		rec := rest
		if i := strings.IndexByte(rest, 0x1e); i >= 0 {
			rec, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		var f [5]string
		n := 0
		for n < 4 {
			i := strings.IndexByte(rec, 0x1f)
			if i < 0 {
				break
			}
			f[n], rec = rec[:i], rec[i+1:]
			n++
		}
		if n != 4 {
			continue
		}
		f[4] = rec
		cnt, err1 := strconv.Atoi(f[2])
		maxPos, err2 := strconv.ParseInt(f[3], 10, 64)
		rank, err3 := strconv.ParseInt(f[4], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		dst = append(dst, AggregateSummary{Parent: row.EventID, RelType: f[0], EventID: f[1], Count: cnt, MaxPos: maxPos, Rank: rank})
	}
	return dst
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
