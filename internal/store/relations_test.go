package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestRelationsBackfill stores events with relations as a server from
// before the relations index did, then runs the migration that adds the
// index (and those after it): it indexes them with the rules new events
// follow.
func TestRelationsBackfill(t *testing.T) {
	forEachEngineAt(t, 11, func(t *testing.T, s *Store) {
		ctx := context.Background()
		pos := int64(1000)
		put := func(id, sender, typ, stateKey, content string, redacted bool) {
			t.Helper()
			pos++
			e := &EventRow{Pos: pos, EventID: id, RoomID: "!r:x", Type: typ, Sender: sender, OriginTS: pos, Unsigned: []byte("{}"), Redacted: redacted,
				PDU: []byte(fmt.Sprintf(`{"type":%q,"sender":%q,"content":%s}`, typ, sender, content))}
			if stateKey != "" {
				e.StateKey = sql.NullString{String: stateKey, Valid: true}
			}
			insertOldEvent(t, s, e, "")
		}
		rel := func(relType, parent string, extra string) string {
			return fmt.Sprintf(`{"body":"x",%s"m.relates_to":{"rel_type":%q,"event_id":%q}}`, extra, relType, parent)
		}
		put("$orig", "@a:x", "m.room.message", "", `{"body":"original"}`, false)
		put("$edit1", "@a:x", "m.room.message", "", rel("m.replace", "$orig", `"m.new_content":{"body":"1"},`), false)
		put("$edit2", "@a:x", "m.room.message", "", rel("m.replace", "$orig", `"m.new_content":{"body":"2"},`), false)
		put("$bobedit", "@b:x", "m.room.message", "", rel("m.replace", "$orig", `"m.new_content":{"body":"b"},`), false)
		put("$nonew", "@a:x", "m.room.message", "", rel("m.replace", "$orig", ""), false)
		put("$reply", "@b:x", "m.room.message", "", rel("m.thread", "$orig", ""), false)
		put("$react", "@b:x", "m.reaction", "", `{"m.relates_to":{"rel_type":"m.annotation","event_id":"$orig","key":"👍"}}`, false)
		put("$huge", "@b:x", "m.reaction", "", fmt.Sprintf(`{"m.relates_to":{"rel_type":"m.annotation","event_id":"$orig","key":%q}}`, strings.Repeat("k", 300)), false)
		put("$gone", "@b:x", "m.room.message", "", rel("m.thread", "$orig", ""), true)
		put("$lost", "@b:x", "m.room.message", "", rel("m.thread", "$nowhere", ""), false)
		put("$reply2", "@b:x", "m.room.message", "", rel("m.thread", "$reply", ""), false)
		put("$plain", "@b:x", "m.room.message", "", `{"body":"not related","m.relates_to":"nonsense"}`, false)
		put("$nul", "@b:x", "m.reaction", "", `{"body":"\u0000","m.relates_to":{"rel_type":"m.annotation","event_id":"$orig","key":"k"}}`, false)
		put("$nulparent", "@a:x", "m.room.message", "", `{"body":"\u0000"}`, false)
		put("$nuledit", "@a:x", "m.room.message", "", rel("m.replace", "$nulparent", `"m.new_content":{"body":"1"},`), false)

		s.migrateRest(t)

		rows, err := s.w.QueryContext(ctx, `SELECT event_id, relates_to, rel_type, valid FROM event_relations ORDER BY stream_pos`)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for rows.Next() {
			var id, parent, relType string
			var valid bool
			if err := rows.Scan(&id, &parent, &relType, &valid); err != nil {
				t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%s>%s %s %v", id, parent, relType, valid))
		}
		rows.Close()
		want := []string{
			"$edit1>$orig m.replace true", "$edit2>$orig m.replace true", "$bobedit>$orig m.replace false",
			"$nonew>$orig m.replace false", "$reply>$orig m.thread true", "$react>$orig m.annotation true",
			"$reply2>$reply m.thread false",
		}
		if s.Engine == SQLite {
			// PostgreSQL's jsonb cannot read it; SQLite can.
			want = append(want, "$nul>$orig m.annotation true")
		}
		want = append(want, "$nuledit>$nulparent m.replace true")
		if !slices.Equal(got, want) {
			t.Errorf("relations:\n got %v\nwant %v", got, want)
		}
		// By event id, and by the range of the parent's position (filled in
		// by migration 20).
		for _, room := range []string{"", "!r:x"} {
			agg, err := s.AggregateSummaries(ctx, room, 1001, 1001, map[string]bool{"$orig": true}, false)
			if err != nil {
				t.Fatal(err)
			}
			var aggs []string
			for _, a := range agg {
				aggs = append(aggs, fmt.Sprintf("%s %s %d", a.RelType, a.EventID, a.Count))
			}
			slices.Sort(aggs)
			if want := []string{"m.replace $edit2 2", "m.thread $reply 1"}; !slices.Equal(aggs, want) {
				t.Errorf("aggregates (room %q): %v, want %v", room, aggs, want)
			}
		}
		// And on the parent's row (filled in by migration 21), kept up to
		// date as children come and go.
		onRow := func() []string {
			t.Helper()
			row, err := s.GetEvent(ctx, "$orig")
			if err != nil {
				t.Fatal(err)
			}
			var aggs []string
			for _, a := range ParseAggregates(nil, row) {
				aggs = append(aggs, fmt.Sprintf("%s %s %d %d", a.RelType, a.EventID, a.Count, a.MaxPos))
			}
			slices.Sort(aggs)
			return aggs
		}
		if got, want := onRow(), []string{"m.replace $edit2 2 1003", "m.thread $reply 1 1006"}; !slices.Equal(got, want) {
			t.Errorf("aggregates on the row after the migration: %v, want %v", got, want)
		}
		err = s.InTx(ctx, func(tx *Tx) error {
			if err := tx.AddToAggregate(ctx, "$orig", "!r:x", "m.reference", "$ref", 2000, 2000, 1001); err != nil {
				return err
			}
			return tx.AddToAggregate(ctx, "$orig", "!r:x", "m.thread", "$reply9", 2001, 2001, 1001)
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := onRow(), []string{"m.reference $ref 1 2000", "m.replace $edit2 2 1003", "m.thread $reply9 2 2001"}; !slices.Equal(got, want) {
			t.Errorf("aggregates on the row after new children: %v, want %v", got, want)
		}
		if err := s.InTx(ctx, func(tx *Tx) error { return tx.RecomputeAggregate(ctx, "$orig", "m.thread") }); err != nil {
			t.Fatal(err)
		}
		if got, want := onRow(), []string{"m.reference $ref 1 2000", "m.replace $edit2 2 1003", "m.thread $reply 1 1006"}; !slices.Equal(got, want) {
			t.Errorf("aggregates on the row after a recount: %v, want %v", got, want)
		}
		if row, err := s.GetEvent(ctx, "$plain"); err != nil || !row.AggregatesRead || row.Aggregates != "" {
			t.Errorf("event without children: %+v %v", row, err)
		}
	})
}
