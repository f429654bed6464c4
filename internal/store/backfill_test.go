package store

import (
	"context"
	"strings"
	"testing"
)

func TestBackfillBandAndExtremities(t *testing.T) {
	if BackfillBand != -1099511627776 || !strings.Contains(timelinePos, "-1099511627776") {
		t.Fatal("the band's literal in RoomEvents must match BackfillBand")
	}
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		room := "!r:hs.test"
		row := func(pos int64, id string, group int64) *EventRow {
			return &EventRow{Pos: pos, EventID: id, RoomID: room, Type: "m.room.message", Sender: "@a:hs.test", PDU: []byte("{}"), Unsigned: []byte("{}"), StateGroup: group}
		}
		err := s.InTx(ctx, func(tx *Tx) error {
			if err := tx.InsertEvent(ctx, row(5, "$live", 1)); err != nil {
				return err
			}
			if err := tx.InsertOutlier(ctx, row(-3, "$outlier", -1)); err != nil {
				return err
			}
			if err := tx.AddBackwardExtremity(ctx, room, "$outlier", 4); err != nil {
				return err
			}
			return tx.AddBackwardExtremity(ctx, room, "$unknown", 3)
		})
		if err != nil {
			t.Fatal(err)
		}
		if m, _ := s.MinEventPos(ctx); m != -3 {
			t.Fatalf("outliers continue from %d", m)
		}
		if m, _ := s.MinBackfillPos(ctx); m != BackfillBand {
			t.Fatalf("empty band starts at %d", m)
		}
		ext, err := s.BackwardExtremities(ctx, room, 1<<40, 10)
		if err != nil || len(ext) != 2 || ext[0].EventID != "$outlier" {
			t.Fatalf("extremities %v %v", ext, err)
		}
		err = s.InTx(ctx, func(tx *Tx) error {
			for _, r := range []*EventRow{row(BackfillBand-1, "$outlier", 1), row(BackfillBand-2, "$old", 1), row(BackfillBand-3, "$live", 1)} {
				if _, err := tx.InsertBackfilled(ctx, r); err != nil {
					return err
				}
			}
			known, err := tx.KnownEventIDs(ctx, []string{"$outlier", "$old", "$unknown"})
			if err != nil || !known["$outlier"] || !known["$old"] || known["$unknown"] {
				t.Errorf("known %v %v", known, err)
			}
			return tx.DeleteBackwardExtremities(ctx, room, []string{"$outlier", "$old"})
		})
		if err != nil {
			t.Fatal(err)
		}
		// The outlier was promoted; the live event kept its place.
		rows, err := s.RoomEvents(ctx, room, -1<<62, 1<<62, true, 10)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range rows {
			got = append(got, r.EventID)
		}
		if strings.Join(got, ",") != "$live,$outlier,$old" {
			t.Fatalf("timeline %v", got)
		}
		// Sync reads from zero: no backfilled event.
		if rows, _ := s.RoomEvents(ctx, room, 0, 1<<62, true, 10); len(rows) != 1 {
			t.Fatalf("sync window: %d rows", len(rows))
		}
		if m, _ := s.MinBackfillPos(ctx); m != BackfillBand-2 {
			t.Fatalf("band continues from %d", m)
		}
		if m, _ := s.MinEventPos(ctx); m != 0 {
			t.Fatalf("outliers continue from %d", m)
		}
		if ok, _ := s.HasBackwardExtremities(ctx, room); !ok {
			t.Fatal("the unknown extremity was lost")
		}
	})
}
