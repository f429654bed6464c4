package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// StoredView is a room's view as kept in room_views: what an initial sync
// shows of the room, ready to render, as of the events position UpTo.
// Package rooms makes and reads them; a view of a room with an event
// after UpTo is never returned (RoomViews), so nothing else needs to keep
// it in step. What changes a room without an event (the completion of a
// partial state) deletes it (DropRoomView).
type StoredView struct {
	RoomID   string
	UpTo     int64
	Complete bool        // Rows are the room's whole timeline
	Rows     []*EventRow // newest first, with their stored PDUs
	Bases    [][]byte    // Bases[i] is the client base of Rows[i]
	Groups   []ViewGroup // the state groups of the rows
	State    []ViewState // the current state
}

// ViewGroup is what history visibility needs of one state group of a
// view's rows: its visibility, and the members whose membership there
// differs from the current state ("leave" for none).
type ViewGroup struct {
	Group      int64
	Visibility string
	Members    []ViewMember
}

// ViewMember is one user's membership at a state group.
type ViewMember struct{ UserID, Membership string }

// ViewState is one current state event of a view with its client form as
// state lists show it, cut before the age (rooms.StateForm).
type ViewState struct {
	Key                              StateKey
	EventID                          string
	Head                             []byte
	OriginTS                         int64
	Sender, TxnID, TxnDevice, Member string // Member: the membership of a member event
}

// viewFormat is the first byte of an encoded view: a view of another
// format is not read (and is rebuilt).
const viewFormat = 1

// viewCodec compresses views: zstd at its default level makes them a few
// per cent smaller than S2 or zstd's fastest level (their rows' PDUs are
// compressed already), and decodes one in a few microseconds. Views are
// made in the background, so the level's cost is not on a request's path.
var viewCodec = sync.OnceValues(func() (*zstd.Encoder, *zstd.Decoder) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderCRC(false),
		zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(1<<20), zstd.WithEncoderConcurrency(1))
	if err != nil {
		panic(fmt.Sprintf("view encoder: %v", err))
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(16<<20), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderConcurrency(2), zstd.WithDecoderMaxWindow(1<<20))
	if err != nil {
		panic(fmt.Sprintf("view decoder: %v", err))
	}
	return enc, dec
})

// encodeView is the stored form of a view: its fields in order, strings
// and bytes length-prefixed, compressed.
func encodeView(v *StoredView) []byte {
	var b viewWriter
	b.byte(viewFormat)
	b.bool(v.Complete)
	b.uint(len(v.Rows))
	for i, r := range v.Rows {
		b.int(r.Pos)
		b.str(r.EventID)
		b.str(r.Type)
		b.nullStr(r.StateKey)
		b.str(r.Sender)
		b.int(r.Depth)
		b.int(r.OriginTS)
		b.bytes(r.storedPDU())
		b.bytes(r.Unsigned)
		b.int(r.StateGroup)
		b.bool(r.Redacted)
		b.nullStr(r.TxnDevice)
		b.nullStr(r.TxnID)
		b.str(r.Aggregates)
		b.bool(r.AggregatesRead)
		b.bytes(v.Bases[i])
	}
	b.uint(len(v.Groups))
	for _, g := range v.Groups {
		b.int(g.Group)
		b.str(g.Visibility)
		b.uint(len(g.Members))
		for _, m := range g.Members {
			b.str(m.UserID)
			b.str(m.Membership)
		}
	}
	b.uint(len(v.State))
	for _, s := range v.State {
		b.str(s.Key.Type)
		b.str(s.Key.StateKey)
		b.str(s.EventID)
		b.bytes(s.Head)
		b.int(s.OriginTS)
		b.str(s.Sender)
		b.str(s.TxnID)
		b.str(s.TxnDevice)
		b.str(s.Member)
	}
	enc, _ := viewCodec()
	return enc.EncodeAll(b.buf, make([]byte, 0, len(b.buf)/2))
}

// decodeView reads a stored view of roomID. Strings that repeat within
// and across views (types, senders, state keys, memberships) are made
// once per shared (a reading of many views), not once per field.
func decodeView(roomID string, upTo int64, data []byte, shared map[string]string) (*StoredView, error) {
	buf := viewBufs.Get().(*[]byte)
	defer viewBufs.Put(buf)
	// Sized from the frame's header: growing the buffer while decoding
	// copied most views more than once.
	var h zstd.Header
	if h.Decode(data) == nil && h.HasFCS && h.FrameContentSize <= 16<<20 && uint64(cap(*buf)) < h.FrameContentSize {
		*buf = make([]byte, 0, h.FrameContentSize)
	}
	_, dec := viewCodec()
	raw, err := dec.DecodeAll(data, (*buf)[:0])
	*buf = raw
	if err != nil {
		return nil, fmt.Errorf("room view %s: %w", roomID, err)
	}
	r := viewReader{buf: raw, shared: shared}
	if r.byte() != viewFormat {
		return nil, nil
	}
	v := &StoredView{RoomID: roomID, UpTo: upTo, Complete: r.bool()}
	n := r.uint()
	v.Rows, v.Bases = make([]*EventRow, 0, n), make([][]byte, 0, n)
	for range n {
		e := &EventRow{RoomID: roomID}
		e.Pos, e.EventID, e.Type, e.StateKey = r.int(), r.str(), r.common(), r.nullCommon()
		e.Sender, e.Depth, e.OriginTS = r.common(), r.int(), r.int()
		e.setStoredPDU(r.copied())
		e.Unsigned = r.copied()
		e.StateGroup, e.Redacted, e.TxnDevice, e.TxnID = r.int(), r.bool(), r.nullCommon(), r.nullStr()
		e.Aggregates, e.AggregatesRead = r.str(), r.bool()
		v.Rows = append(v.Rows, e)
		v.Bases = append(v.Bases, r.copied())
	}
	v.Groups = make([]ViewGroup, r.uint())
	for i := range v.Groups {
		g := &v.Groups[i]
		g.Group, g.Visibility = r.int(), r.common()
		g.Members = make([]ViewMember, r.uint())
		for j := range g.Members {
			g.Members[j] = ViewMember{UserID: r.common(), Membership: r.common()}
		}
	}
	v.State = make([]ViewState, r.uint())
	for i := range v.State {
		s := &v.State[i]
		s.Key.Type, s.Key.StateKey, s.EventID, s.Head = r.common(), r.common(), r.str(), r.copied()
		s.OriginTS, s.Sender, s.TxnID, s.TxnDevice, s.Member = r.int(), r.common(), r.str(), r.common(), r.common()
	}
	if r.err != nil {
		return nil, fmt.Errorf("room view %s: %w", roomID, r.err)
	}
	return v, nil
}

// viewBufs hold decoded views while they are read: what a view keeps is
// copied out of them.
var viewBufs = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// storedPDU is the row's PDU in its stored form.
func (e *EventRow) storedPDU() []byte {
	if e.lazy != nil {
		e.lazy.mu.Lock()
		defer e.lazy.mu.Unlock()
		if e.lazy.stored != nil {
			return e.lazy.stored
		}
		return encodePDU(e.lazy.pdu, e.RoomID, e.Sender)
	}
	return encodePDU(e.PDU, e.RoomID, e.Sender)
}

// setStoredPDU sets the row's PDU from its stored form, as scanEvent does.
func (e *EventRow) setStoredPDU(stored []byte) {
	if bytes.HasPrefix(stored, zstdMagic) {
		e.lazy = &lazyPDU{size: len(stored), stored: stored, roomID: e.RoomID, sender: e.Sender}
		return
	}
	e.PDU = stored
}

// PutRoomViews stores views (replacing those of their rooms) and deletes
// the views of the rooms drop, in one transaction.
func (s *Store) PutRoomViews(ctx context.Context, views []*StoredView, drop []string) error {
	if len(views) == 0 && len(drop) == 0 {
		return nil
	}
	data := make([][]byte, len(views))
	for i, v := range views {
		data[i] = encodeView(v)
	}
	return s.InTx(ctx, func(tx *Tx) error {
		for i, v := range views {
			if _, err := tx.q.ExecContext(ctx, `INSERT INTO room_views (room_id, up_to, view) VALUES ($1, $2, $3)
				ON CONFLICT (room_id) DO UPDATE SET up_to = excluded.up_to, view = excluded.view`, v.RoomID, v.UpTo, data[i]); err != nil {
				return fmt.Errorf("put room view: %w", err)
			}
		}
		for _, roomID := range drop {
			if err := tx.DropRoomView(ctx, roomID); err != nil {
				return err
			}
		}
		return nil
	})
}

// DropRoomView deletes a room's stored view: for what changes the room
// without an event after the view's position.
func (tx *Tx) DropRoomView(ctx context.Context, roomID string) error {
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM room_views WHERE room_id = $1`, roomID); err != nil {
		return fmt.Errorf("drop room view: %w", err)
	}
	return nil
}

// RoomViews reads the stored views of rooms that are still current: those
// of rooms with no event after their position (the stream's positions up
// to a view's are all committed when it is made, so a later event is one
// the view does not show). Rooms without one are left out.
func (s *Store) RoomViews(ctx context.Context, roomIDs []string) ([]*StoredView, error) {
	// The room's newest position is a subquery per view (an index lookup),
	// never a join that PostgreSQL could answer by hashing all events.
	const cols = `SELECT v.room_id, v.up_to, v.view, COALESCE((SELECT MAX(e.stream_pos) FROM events e WHERE e.room_id = v.room_id), 0) FROM room_views v WHERE v.room_id `
	var out []*StoredView
	shared := map[string]string{}
	scan := func(rows *sql.Rows, err error) error {
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var roomID string
			var upTo, latest int64
			var data sql.RawBytes // decodeView keeps none of it
			if err := rows.Scan(&roomID, &upTo, &data, &latest); err != nil {
				return err
			}
			if latest > upTo {
				continue // an event came after the view
			}
			v, err := decodeView(roomID, upTo, data, shared)
			if err != nil {
				return err
			}
			if v != nil {
				out = append(out, v)
			}
		}
		return rows.Err()
	}
	if s.Engine == Postgres {
		err := scan(s.reader().QueryContext(ctx, cols+`= ANY($1)`, roomIDs))
		return out, err
	}
	for start := 0; start < len(roomIDs); start += 500 {
		q, args := inList(cols+`IN (`, roomIDs[start:min(len(roomIDs), start+500)], `)`)
		if err := scan(s.reader().QueryContext(ctx, q, args...)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CurrentStateSizes counts the current state entries of rooms.
func (s *Store) CurrentStateSizes(ctx context.Context, roomIDs []string) (map[string]int, error) {
	out := make(map[string]int, len(roomIDs))
	scan := func(rows *sql.Rows, err error) error {
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				return err
			}
			out[id] = n
		}
		return rows.Err()
	}
	if s.Engine == Postgres {
		return out, scan(s.reader().QueryContext(ctx, `SELECT room_id, COUNT(*) FROM room_state WHERE room_id = ANY($1) GROUP BY room_id`, roomIDs))
	}
	for start := 0; start < len(roomIDs); start += 500 {
		q, args := inList(`SELECT room_id, COUNT(*) FROM room_state WHERE room_id IN (`, roomIDs[start:min(len(roomIDs), start+500)], `) GROUP BY room_id`)
		if err := scan(s.reader().QueryContext(ctx, q, args...)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// viewWriter appends a view's fields.
type viewWriter struct{ buf []byte }

func (w *viewWriter) byte(b byte)  { w.buf = append(w.buf, b) }
func (w *viewWriter) uint(n int)   { w.buf = binary.AppendUvarint(w.buf, uint64(n)) }
func (w *viewWriter) int(n int64)  { w.buf = binary.AppendVarint(w.buf, n) }
func (w *viewWriter) str(s string) { w.uint(len(s)); w.buf = append(w.buf, s...) }
func (w *viewWriter) bytes(b []byte) {
	w.uint(len(b))
	w.buf = append(w.buf, b...)
}
func (w *viewWriter) bool(b bool) {
	if b {
		w.byte(1)
	} else {
		w.byte(0)
	}
}
func (w *viewWriter) nullStr(s sql.NullString) {
	w.bool(s.Valid)
	if s.Valid {
		w.str(s.String)
	}
}

// viewReader reads what viewWriter wrote; the first error sticks and
// makes every later read a zero value.
type viewReader struct {
	buf    []byte
	err    error
	shared map[string]string // common's strings; nil: none kept
}

var errViewShort = errors.New("truncated")

func (r *viewReader) byte() byte {
	if r.err != nil || len(r.buf) == 0 {
		r.err = errViewShort
		return 0
	}
	b := r.buf[0]
	r.buf = r.buf[1:]
	return b
}

func (r *viewReader) uint() int {
	n, k := binary.Uvarint(r.buf)
	if r.err != nil || k <= 0 || n > uint64(len(r.buf)) {
		r.err = errViewShort
		return 0
	}
	r.buf = r.buf[k:]
	return int(n)
}

func (r *viewReader) int() int64 {
	n, k := binary.Varint(r.buf)
	if r.err != nil || k <= 0 {
		r.err = errViewShort
		return 0
	}
	r.buf = r.buf[k:]
	return n
}

func (r *viewReader) bytes() []byte {
	n := r.uint()
	if r.err != nil || n > len(r.buf) {
		r.err = errViewShort
		return nil
	}
	b := r.buf[:n:n]
	r.buf = r.buf[n:]
	return b
}

// copied is bytes in a slice of its own: the decoded view is dropped once
// read, and what its rows and forms keep must not keep all of it.
func (r *viewReader) copied() []byte {
	if b := r.bytes(); len(b) > 0 {
		return bytes.Clone(b)
	}
	return nil
}

func (r *viewReader) str() string { return string(r.bytes()) }

// common is str for a value many fields share (a type, a user id, a
// membership): one string for all of them.
func (r *viewReader) common() string {
	b := r.bytes()
	if r.shared == nil || len(b) == 0 {
		return string(b)
	}
	if s, ok := r.shared[string(b)]; ok {
		return s
	}
	s := string(b)
	r.shared[s] = s
	return s
}

func (r *viewReader) nullCommon() sql.NullString {
	if !r.bool() {
		return sql.NullString{}
	}
	return sql.NullString{String: r.common(), Valid: true}
}

func (r *viewReader) bool() bool { return r.byte() == 1 }
func (r *viewReader) nullStr() sql.NullString {
	if !r.bool() {
		return sql.NullString{}
	}
	return sql.NullString{String: r.str(), Valid: true}
}
