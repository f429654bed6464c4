package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// A message as this server stores one (canonical JSON, room version 10).
const samplePDU = `{"auth_events":["$wcco2nokJzNQ5NJisecNNgcjdMDJoQYwWAV23reepxA","$EETs3IweDRp7f3aa6ILDZyuhZYvSWp_s47yUB9E29Q4","$t4_71FMQw6cRD4zP6-u2O4YJw6y9Rlj0lJY1NObQUJg"],"content":{"body":"payment tax order council folder slides invoice friday meeting today payment holiday password friday","msgtype":"m.text"},"depth":230,"hashes":{"sha256":"ElkxHW1lHQVn23kbO7efNbhePwxnLslVaVvOKAlBGEM"},"origin_server_ts":1796587847938,"prev_events":["$C6rcxniKPr2PWr1wi2uvEfUb1RdATswRIPvOz7auLVQ"],"room_id":"!njvUPmOQhqOIToNOek:example.org","sender":"@member35:example.org","signatures":{"example.org":{"ed25519:a_IrrY":"b7w9Ee3PnEd34lVpSytkjRskSSAnqGZV3l00PoXGf9DhYA4cgTomtelIKBmqDp71EidC9TuvD/kNcYFtz9DkAg"}},"type":"m.room.message"}`

func TestPDUCodecRoundTrip(t *testing.T) {
	const room, sender = "!njvUPmOQhqOIToNOek:example.org", "@member35:example.org"
	cases := []struct {
		name, pdu, room, sender string
		compressed              bool
	}{
		{"message", samplePDU, room, sender, true},
		{"other room and sender", samplePDU, "!other:example.org", "@x:elsewhere", true},
		{"ids inside the content", strings.Replace(samplePDU, `"payment tax`, `"`+room+` `+sender+` example.org payment tax`, 1), room, sender, true},
		{"escaped control bytes", strings.Replace(samplePDU, `payment tax`, `\u0001\u0002\u0003 tax`, 1), room, sender, true},
		{"raw control bytes", strings.Replace(samplePDU, `payment tax`, "\x01\x02\x03 tax", 1), room, sender, false},
		{"sender without server", samplePDU, room, "@nobody", true},
		{"no room, no sender", samplePDU, "", "", true},
		{"tiny", `{}`, room, sender, false},
		{"empty", ``, room, sender, false},
		{"large", strings.Replace(samplePDU, `payment tax`, strings.Repeat("long text ", 5000), 1), room, sender, true},
	}
	for _, c := range cases {
		stored := encodePDU([]byte(c.pdu), c.room, c.sender)
		if got := bytes.HasPrefix(stored, zstdMagic); got != c.compressed {
			t.Errorf("%s: compressed %v, want %v", c.name, got, c.compressed)
		}
		back, err := decodePDU(stored, c.room, c.sender)
		if err != nil || string(back) != c.pdu {
			t.Errorf("%s: round trip gave %q, %v", c.name, back, err)
		}
	}
	stored := encodePDU([]byte(samplePDU), room, sender)
	t.Logf("a %d-byte message is stored in %d bytes", len(samplePDU), len(stored))
	if len(stored) > len(samplePDU)*2/3 {
		t.Errorf("a %d-byte message takes %d bytes", len(samplePDU), len(stored))
	}
	if _, err := decodePDU(append(bytes.Clone(zstdMagic), "garbage"...), room, sender); err == nil {
		t.Error("a corrupt value decodes")
	}
}

// The dictionary is part of the stored format: rows written with it can
// only be read with it.
func TestPDUDictionaryUnchanged(t *testing.T) {
	sum := sha256.Sum256([]byte(pduDict))
	if got := hex.EncodeToString(sum[:]); got != pduDictSHA256 {
		t.Fatalf("pduDict changed (sha256 %s): stored events would not decode; add a new dictionary with another id instead", got)
	}
}

func BenchmarkPDUEncode(b *testing.B) {
	for b.Loop() {
		encodePDU([]byte(samplePDU), "!njvUPmOQhqOIToNOek:example.org", "@member35:example.org")
	}
}

func BenchmarkPDUDecode(b *testing.B) {
	stored := encodePDU([]byte(samplePDU), "!njvUPmOQhqOIToNOek:example.org", "@member35:example.org")
	for b.Loop() {
		if _, err := decodePDU(stored, "!njvUPmOQhqOIToNOek:example.org", "@member35:example.org"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestEventStorageMigration writes events, search texts and notifications
// as a server before migration 25 did, runs it, and reads them back; also
// on a server that ran migration 26 first (it came out before 25).
func TestEventStorageMigration(t *testing.T) {
	t.Run("in order", func(t *testing.T) { testEventStorageMigration(t, false) })
	t.Run("26 first", func(t *testing.T) { testEventStorageMigration(t, true) })
}

func testEventStorageMigration(t *testing.T, after26 bool) {
	forEachEngineAt(t, 24, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const room, sender = "!njvUPmOQhqOIToNOek:example.org", "@member35:example.org"
		str := func(v string) sql.NullString { return sql.NullString{String: v, Valid: true} }
		evs := []*EventRow{
			{Pos: 10, EventID: "$msg", Type: "m.room.message", Depth: 230, OriginTS: 1796587847938, PDU: []byte(samplePDU),
				TxnDevice: str("DEV"), TxnID: str("t1")},
			{Pos: 11, EventID: "$name", Type: "m.room.name", StateKey: str(""), Depth: 231, OriginTS: 5, StateGroup: 7,
				PDU:      []byte(`{"content":{"name":"Budget office"},"room_id":"` + room + `","sender":"` + sender + `","state_key":"","type":"m.room.name"}`),
				Unsigned: []byte(`{"replaces_state":"$old"}`)},
			{Pos: 12, EventID: "$redacted", Type: "m.room.message", Redacted: true, PDU: []byte(`{"content":{},"room_id":"` + room + `","type":"m.room.message"}`),
				Unsigned: []byte(`{"redacted_because":{}}`)},
			{Pos: 13, EventID: "$escapes", Type: "m.room.message", PDU: []byte(`{"content":{"body":"\u0001 ünïcödé ` + room + `"},"room_id":"` + room + `"}`)},
			{Pos: -5, EventID: "$outlier", Type: "m.room.member", StateKey: str(sender), StateGroup: -1, PDU: []byte(`{"content":{"membership":"join"}}`)},
		}
		for _, e := range evs {
			e.RoomID, e.Sender = room, sender
			key := ""
			if e.TxnID.Valid {
				key = "send:" + e.TxnID.String
			}
			insertOldEvent(t, s, e, key)
		}
		for _, q := range []string{
			`UPDATE events SET rel_summary = 'm.thread' || char(31) || '$r' || char(31) || '1' || char(31) || '20' || char(31) || '20' WHERE event_id = '$msg'`,
			`INSERT INTO search_docs (stream_pos, event_id, room_id, sender, type, field, body) VALUES (10, '$msg', '` + room + `', '` + sender + `', 'm.room.message', 'content.body', 'payment tax order')`,
			`INSERT INTO search_docs (stream_pos, event_id, room_id, sender, type, field, body) VALUES (11, '$name', '` + room + `', '` + sender + `', 'm.room.name', 'content.name', 'Budget office')`,
			// @u read up to 11: its plain notification at 10 goes, its
			// highlight at 10 stays, and so does its notification at 13.
			`INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, event_pos, ts, stream_pos) VALUES ('` + room + `', 'm.read', '@u:x', '', '$name', 11, 1, 1)`,
			`INSERT INTO push_actions (user_id, room_id, stream_pos, event_id, thread_id, highlight, actions, ts) VALUES ('@u:x', '` + room + `', 10, '$msg', 'main', FALSE, '["notify"]', 1)`,
			`INSERT INTO push_actions (user_id, room_id, stream_pos, event_id, thread_id, highlight, actions, ts) VALUES ('@u:x', '` + room + `', 10, '$msg', '$root', TRUE, '["notify"]', 1)`,
			`INSERT INTO push_actions (user_id, room_id, stream_pos, event_id, thread_id, highlight, actions, ts) VALUES ('@u:x', '` + room + `', 13, '$escapes', 'main', FALSE, '["notify"]', 1)`,
		} {
			if s.Engine == Postgres {
				q = strings.ReplaceAll(q, "char(31)", "chr(31)")
			}
			if _, err := s.w.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if after26 {
			text, err := schemaFS.ReadFile("schema/0026_push_room_actions.sql")
			if err != nil {
				t.Fatal(err)
			}
			err = s.InTx(ctx, func(tx *Tx) error {
				if err := runMigration(ctx, tx, migrationSQL(string(text), s.Engine)); err != nil {
					return err
				}
				_, err := tx.execOnce(ctx, `INSERT INTO schema_migrations (version, applied_ts) VALUES (26, 0)`)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		s.migrateRest(t)

		for _, want := range evs {
			got, err := s.GetEvent(ctx, want.EventID)
			if err != nil {
				t.Fatal(err)
			}
			if string(got.JSON()) != string(want.JSON()) || got.Pos != want.Pos || got.RoomID != room || got.Sender != sender || got.Type != want.Type ||
				got.StateKey != want.StateKey || got.Depth != want.Depth || got.OriginTS != want.OriginTS || got.StateGroup != want.StateGroup ||
				got.Redacted != want.Redacted || got.TxnDevice != want.TxnDevice || got.TxnID != want.TxnID ||
				string(got.Unsigned) != string(cmpOr(want.Unsigned, []byte("{}"))) {
				t.Errorf("%s after the migration:\n got %+v\nwant %+v", want.EventID, got, want)
			}
		}
		if row, _ := s.GetEvent(ctx, "$msg"); row.Aggregates == "" {
			t.Error("relation aggregates lost")
		}
		var stored []byte
		if err := s.w.QueryRowContext(ctx, `SELECT pdu FROM events WHERE event_id = '$msg'`).Scan(&stored); err != nil || !bytes.HasPrefix(stored, zstdMagic) {
			t.Errorf("the message is stored as %q (%v)", stored, err)
		}
		// Its client transaction is still known, and still taken.
		if id, err := s.LookupTxnID(ctx, sender, "DEV", "send:t1"); err != nil || id != "$msg" {
			t.Errorf("transaction: %q %v", id, err)
		}
		again := &EventRow{Pos: 20, EventID: "$again", RoomID: room, Type: "m.room.message", Sender: sender, PDU: []byte(`{}`), Unsigned: []byte(`{}`),
			TxnDevice: str("DEV"), TxnID: str("t1"), TxnKey: str("send:t1")}
		if err := s.InTx(ctx, func(tx *Tx) error { return tx.InsertEvent(ctx, again) }); !errors.Is(err, ErrExists) {
			t.Errorf("a repeated transaction: %v", err)
		}
		// Search texts moved, and are found by room, sender and key.
		q := SearchQuery{Terms: []string{"budget"}, Rooms: []SearchRange{{RoomID: room}}, Fields: []string{"content.name"}, Sender: sender, Limit: 5}
		if hits, err := s.Search(ctx, q); err != nil || len(hits) != 1 || hits[0].EventID != "$name" || hits[0].Pos != 11 {
			t.Errorf("search: %+v %v", hits, err)
		}
		if hits, _ := s.Search(ctx, SearchQuery{Terms: []string{"pay"}, Rooms: []SearchRange{{RoomID: room}}, Limit: 5}); len(hits) != 1 || hits[0].EventID != "$msg" {
			t.Errorf("search by prefix: %+v", hits)
		}
		// Notifications: what the receipt read and did not highlight is gone.
		ns, err := s.Notifications(ctx, "@u:x", 0, 10, false)
		if err != nil || len(ns) != 2 || ns[0].EventID != "$escapes" || ns[1].EventID != "$msg" || !ns[1].Highlight {
			t.Errorf("notifications: %+v %v", ns, err)
		}
		var n int
		if err := s.w.QueryRowContext(ctx, `SELECT COUNT(*) FROM push_actions`).Scan(&n); err != nil || n != 2 {
			t.Errorf("%d notification rows (%v), want 2", n, err)
		}
	})
}

func cmpOr(b, def []byte) []byte {
	if len(b) == 0 {
		return def
	}
	return b
}
