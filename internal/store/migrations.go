package store

import (
	"context"
	"database/sql"
	"fmt"
	"math"
)

// The Go steps of migrations (see migrationSteps): conversions of stored
// data that SQL cannot do.

// encodeEvents (migration 25) copies every row of events into events_new,
// the PDU in its stored form (pducodec.go) and the client transaction key
// hashed, a few hundred rows at a time.
func encodeEvents(ctx context.Context, tx *Tx) error {
	const batch = 500
	after := int64(math.MinInt64)
	for {
		var rows [][]any
		res, err := tx.q.QueryContext(ctx, `SELECT stream_pos, event_id, room_id, type, state_key, sender, depth, origin_ts, pdu, unsigned,
			state_group, redacted, txn_device, txn_id, txn_key, rel_summary FROM events WHERE stream_pos > $1 ORDER BY stream_pos LIMIT $2`, after, batch)
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		for res.Next() {
			var e EventRow
			var pdu string
			var txnKey, summary sql.NullString
			if err := res.Scan(&e.Pos, &e.EventID, &e.RoomID, &e.Type, &e.StateKey, &e.Sender, &e.Depth, &e.OriginTS, &pdu, &e.Unsigned,
				&e.StateGroup, &e.Redacted, &e.TxnDevice, &e.TxnID, &txnKey, &summary); err != nil {
				res.Close()
				return fmt.Errorf("read events: %w", err)
			}
			e.PDU = []byte(pdu)
			var key []byte // NULL
			if txnKey.Valid {
				key = txnKeyHash(e.Sender, e.TxnDevice.String, txnKey.String)
			}
			rows = append(rows, append(e.insertArgs(), summary, key))
			after = e.Pos
		}
		res.Close()
		if err := res.Err(); err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		if len(rows) == 0 {
			return nil
		}
		if err := tx.insertRows(ctx, `INSERT INTO events_new (`+eventCols+`, txn_key) VALUES `, 16, ``, rows); err != nil {
			return fmt.Errorf("write events: %w", err)
		}
	}
}
