package store

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// TestAggregateRangeUsesIndex checks that the range scan that bundles a
// page reads only the covering index on both engines.
func TestAggregateRangeUsesIndex(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		conn, err := s.w.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		var plan strings.Builder
		if s.Engine == SQLite {
			rows, err := conn.QueryContext(ctx, "EXPLAIN QUERY PLAN "+aggregateRangeQuery, "!r:x", 1, 100)
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			for rows.Next() {
				var id, parent, unused int
				var detail string
				if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
					t.Fatal(err)
				}
				plan.WriteString(detail + "\n")
			}
			if !strings.Contains(plan.String(), "COVERING INDEX relation_aggregates_room_pos") {
				t.Fatalf("plan:\n%s", plan.String())
			}
			return
		}
		// An empty table is cheaper to read whole: ask whether the index
		// can serve the query at all.
		if _, err := conn.ExecContext(ctx, "SET enable_seqscan = off"); err != nil {
			t.Fatal(err)
		}
		rows, err := conn.QueryContext(ctx, "EXPLAIN "+strings.NewReplacer("$1", "'!r:x'", "$2", "1", "$3", "100").Replace(aggregateRangeQuery))
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan.WriteString(line + "\n")
		}
		if !strings.Contains(plan.String(), "Index Only Scan using relation_aggregates_room_pos") {
			t.Fatalf("plan:\n%s", plan.String())
		}
	})
}

// Records of a row's aggregates that do not parse are skipped, the others
// kept.
func TestParseAggregates(t *testing.T) {
	row := &EventRow{EventID: "$p", Aggregates: "m.replace\x1f$e\x1f2\x1f10\x1f99\x1e" + "broken\x1e" + "m.thread\x1f$t\x1fx\x1f1\x1f1\x1e" + "m.reference\x1f$r\x1f1\x1f12\x1f12"}
	got := ParseAggregates(nil, row)
	want := []AggregateSummary{
		{Parent: "$p", RelType: "m.replace", EventID: "$e", Count: 2, MaxPos: 10, Rank: 99},
		{Parent: "$p", RelType: "m.reference", EventID: "$r", Count: 1, MaxPos: 12, Rank: 12},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
	if got := ParseAggregates(nil, &EventRow{}); len(got) != 0 {
		t.Fatalf("empty: %+v", got)
	}
}
