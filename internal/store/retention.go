package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Message retention (MSC1763): the rows the purge job reads and deletes.
// A purge deletes a room's non-state events in batches, each one
// transaction that takes with the events everything keyed by them, so
// that a batch is all or nothing and a batch run twice finds nothing
// left to do.

// RetentionRoom is a room as the purge job sees it.
type RetentionRoom struct {
	RoomID string
	// Policy is the PDU of the room's m.room.retention state event, nil
	// when it has none.
	Policy []byte
	// CutoffTS is the cutoff of a purge under way (0: none).
	CutoffTS int64
}

// RetentionRooms lists every room with its retention policy event and
// the purge under way, if any.
func (s *Store) RetentionRooms(ctx context.Context) ([]RetentionRoom, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT r.room_id, COALESCE(p.cutoff_ts, 0), e.room_id, e.sender, e.pdu FROM rooms r
		LEFT JOIN room_state rs ON rs.room_id = r.room_id AND rs.type = 'm.room.retention' AND rs.state_key = ''
		LEFT JOIN events e ON e.event_id = rs.event_id
		LEFT JOIN retention_rooms p ON p.room_id = r.room_id
		ORDER BY r.room_id`)
	if err != nil {
		return nil, fmt.Errorf("retention rooms: %w", err)
	}
	defer rows.Close()
	var out []RetentionRoom
	for rows.Next() {
		var r RetentionRoom
		var evRoom, sender sql.NullString
		var stored []byte
		if err := rows.Scan(&r.RoomID, &r.CutoffTS, &evRoom, &sender, &stored); err != nil {
			return nil, fmt.Errorf("retention rooms: %w", err)
		}
		if stored != nil {
			if r.Policy, err = decodePDU(stored, evRoom.String, sender.String); err != nil {
				return nil, err
			}
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// StartRetentionPurge records that a room's events sent before cutoffTS
// are being purged (a restart resumes with the same cutoff).
func (s *Store) StartRetentionPurge(ctx context.Context, roomID string, cutoffTS int64) error {
	_, err := s.writer().ExecContext(ctx, `INSERT INTO retention_rooms (room_id, cutoff_ts, purged, updated_ts) VALUES ($1, $2, 0, $3)
		ON CONFLICT (room_id) DO UPDATE SET cutoff_ts = excluded.cutoff_ts, updated_ts = excluded.updated_ts`, roomID, cutoffTS, now())
	if err != nil {
		return fmt.Errorf("start retention purge: %w", err)
	}
	return nil
}

// FinishRetentionPurge records that a room's purge is complete.
func (s *Store) FinishRetentionPurge(ctx context.Context, roomID string) error {
	_, err := s.writer().ExecContext(ctx, `UPDATE retention_rooms SET cutoff_ts = 0, updated_ts = $1 WHERE room_id = $2`, now(), roomID)
	if err != nil {
		return fmt.Errorf("finish retention purge: %w", err)
	}
	return nil
}

// RetentionPurged returns how many events purges deleted from a room and
// the cutoff of the purge under way (0: none).
func (s *Store) RetentionPurged(ctx context.Context, roomID string) (purged, cutoffTS int64, err error) {
	err = s.reader().QueryRowContext(ctx, `SELECT purged, cutoff_ts FROM retention_rooms WHERE room_id = $1`, roomID).Scan(&purged, &cutoffTS)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	return purged, cutoffTS, err
}

// PurgeCursor is where a room's purge continues in its events: at
// origin_server_ts TS.
type PurgeCursor struct {
	TS int64
}

// ExpiredEvent is an event a purge may delete.
type ExpiredEvent struct {
	Pos int64
	ID  string
	TS  int64
}

// ExpiredEvents returns up to limit of a room's non-state events sent
// before beforeTS, from the cursor on, oldest first, and the ids of the
// events the room must keep whatever their age: its forward extremities
// (the newest event, or the recorded ones), which the next event cites.
func (tx *Tx) ExpiredEvents(ctx context.Context, roomID string, beforeTS int64, after PurgeCursor, limit int) ([]ExpiredEvent, map[string]bool, error) {
	keep := map[string]bool{}
	rows, err := tx.q.QueryContext(ctx, `SELECT event_id FROM room_extremities WHERE room_id = $1
		UNION ALL SELECT event_id FROM (SELECT event_id FROM events WHERE room_id = $2 ORDER BY stream_pos DESC LIMIT 1) AS newest`, roomID, roomID)
	if err != nil {
		return nil, nil, fmt.Errorf("room extremities: %w", err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, nil, err
		}
		keep[id] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	// One index range of (room_id, origin_ts), in its order, so that the
	// limit ends the scan: events at the cursor's own timestamp are read
	// again (those a batch deleted are gone, the kept are skipped).
	rows, err = tx.q.QueryContext(ctx, `SELECT stream_pos, event_id, origin_ts FROM events
		WHERE room_id = $1 AND origin_ts >= $2 AND origin_ts < $3 AND state_key IS NULL
		ORDER BY origin_ts LIMIT $4`, roomID, after.TS, beforeTS, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("expired events: %w", err)
	}
	defer rows.Close()
	var out []ExpiredEvent
	for rows.Next() {
		var e ExpiredEvent
		if err := rows.Scan(&e.Pos, &e.ID, &e.TS); err != nil {
			return nil, nil, err
		}
		out = append(out, e)
	}
	return out, keep, rows.Err()
}

// listOf is the statement text of a list given as parameter n (one
// parameter whatever its length, so that the statement is prepared once):
// on SQLite a JSON array read with json_each, on PostgreSQL an array.
func (s *Store) listOf(n int, sqlType string) string {
	if s.Engine == SQLite {
		return fmt.Sprintf("SELECT value FROM json_each($%d)", n)
	}
	return fmt.Sprintf("SELECT unnest(CAST($%d AS %s[]))", n, sqlType)
}

// listArg is the parameter of a list (see listOf).
func (s *Store) listArg(v any) any {
	if s.Engine == SQLite {
		b, _ := json.Marshal(v)
		return string(b)
	}
	return v
}

// PurgedRelation is a relation whose child a purge deleted, of a parent
// it kept: the parent's aggregation was recomputed.
type PurgedRelation struct {
	Parent, RelType string
}

// PurgeEffects is what a purge batch changed besides the events.
type PurgeEffects struct {
	// Parents are the kept events whose bundled aggregations changed.
	Parents []string
	// Media is how many media files lost their last reference (queued in
	// retention_media).
	Media int
}

// PurgeEvents deletes events of a room (by position and id, the same
// order) with everything keyed by them: media references (media left
// without any is queued in retention_media), search rows, relations and
// aggregations (a kept parent's are recomputed), staged and queued
// notifications, fan-out rows, and the room's stored view. It counts them
// in retention_rooms.
func (tx *Tx) PurgeEvents(ctx context.Context, roomID string, pos []int64, ids []string) (PurgeEffects, error) {
	var eff PurgeEffects
	if len(ids) == 0 {
		return eff, nil
	}
	s := tx.s
	idList, posList := s.listArg(ids), s.listArg(pos)
	ids1, pos1 := s.listOf(1, "TEXT"), s.listOf(1, "BIGINT")
	media, err := queryStrings(ctx, tx.q, `SELECT DISTINCT media_id FROM media_refs WHERE event_id IN (`+ids1+`)`, idList)
	if err != nil {
		return eff, fmt.Errorf("purge: media refs: %w", err)
	}
	rels, err := tx.purgedRelations(ctx, idList)
	if err != nil {
		return eff, err
	}
	searchCol := "stream_pos"
	if s.Engine == SQLite {
		searchCol = "rowid"
	}
	for _, st := range []struct {
		q   string
		arg any
	}{
		{`DELETE FROM media_refs WHERE event_id IN (` + ids1 + `)`, idList},
		{`DELETE FROM search_text WHERE ` + searchCol + ` IN (` + pos1 + `)`, posList},
		{`DELETE FROM event_relations WHERE event_id IN (` + ids1 + `)`, idList},
		{`DELETE FROM event_relations WHERE relates_to IN (` + ids1 + `)`, idList},
		{`DELETE FROM relation_aggregates WHERE parent IN (` + ids1 + `)`, idList},
		{`DELETE FROM push_staging WHERE stream_pos IN (` + pos1 + `)`, posList},
		{`DELETE FROM push_queue WHERE event_id IN (` + ids1 + `)`, idList},
		{`DELETE FROM federation_fanout WHERE event_id IN (` + ids1 + `)`, idList},
		{`DELETE FROM events WHERE stream_pos IN (` + pos1 + `)`, posList},
	} {
		if _, err := tx.q.ExecContext(ctx, st.q, st.arg); err != nil {
			return eff, fmt.Errorf("purge events: %w", err)
		}
	}
	if len(media) > 0 {
		res, err := tx.q.ExecContext(ctx, `INSERT INTO retention_media (media_id, blobs) SELECT m.media_id, '' FROM media m
			WHERE m.media_id IN (`+ids1+`) AND m.origin = '' AND NOT EXISTS (SELECT 1 FROM media_refs r WHERE r.media_id = m.media_id)
			ON CONFLICT (media_id) DO NOTHING`, s.listArg(media))
		if err != nil {
			return eff, fmt.Errorf("purge: queue media: %w", err)
		}
		n, _ := res.RowsAffected()
		eff.Media = int(n)
	}
	purged := make(map[string]bool, len(ids))
	for _, id := range ids {
		purged[id] = true
	}
	seen := map[PurgedRelation]bool{}
	for _, r := range rels {
		if purged[r.Parent] || seen[r] {
			continue
		}
		seen[r] = true
		if err := tx.RecomputeAggregate(ctx, r.Parent, r.RelType); err != nil {
			return eff, err
		}
		eff.Parents = append(eff.Parents, r.Parent)
	}
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM room_views WHERE room_id = $1`, roomID); err != nil {
		return eff, fmt.Errorf("purge: room view: %w", err)
	}
	if _, err := tx.q.ExecContext(ctx, `UPDATE retention_rooms SET purged = purged + $1, updated_ts = $2 WHERE room_id = $3`,
		len(ids), now(), roomID); err != nil {
		return eff, fmt.Errorf("purge: progress: %w", err)
	}
	return eff, nil
}

// purgedRelations returns the aggregated relations of the events of the
// list (as children).
func (tx *Tx) purgedRelations(ctx context.Context, idList any) ([]PurgedRelation, error) {
	rows, err := tx.q.QueryContext(ctx, `SELECT relates_to, rel_type FROM event_relations WHERE event_id IN (`+tx.s.listOf(1, "TEXT")+`)
		AND valid = TRUE AND rel_type IN ('m.replace', 'm.thread', 'm.reference')`, idList)
	if err != nil {
		return nil, fmt.Errorf("purge: relations: %w", err)
	}
	defer rows.Close()
	var out []PurgedRelation
	for rows.Next() {
		var r PurgedRelation
		if err := rows.Scan(&r.Parent, &r.RelType); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// PurgeOrphanNotifications deletes up to limit notification rows of a
// room (per member and room-wide) at or before upToPos whose event is
// gone, and returns how many it deleted.
func (s *Store) PurgeOrphanNotifications(ctx context.Context, roomID string, upToPos int64, limit int) (int, error) {
	type key struct {
		user, thread string
		pos          int64
	}
	var keys, roomKeys []key
	rows, err := s.reader().QueryContext(ctx, `SELECT user_id, thread_id, stream_pos FROM push_actions
		WHERE user_id IN (SELECT user_id FROM room_members WHERE room_id = $1) AND room_id = $2 AND stream_pos <= $3
		AND NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_pos = push_actions.stream_pos) LIMIT $4`, roomID, roomID, upToPos, limit)
	if err != nil {
		return 0, fmt.Errorf("orphan notifications: %w", err)
	}
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.user, &k.thread, &k.pos); err != nil {
			rows.Close()
			return 0, err
		}
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	rows, err = s.reader().QueryContext(ctx, `SELECT thread_id, stream_pos FROM push_room_actions WHERE room_id = $1 AND stream_pos <= $2
		AND NOT EXISTS (SELECT 1 FROM events e WHERE e.stream_pos = push_room_actions.stream_pos) LIMIT $3`, roomID, upToPos, limit)
	if err != nil {
		return 0, fmt.Errorf("orphan notifications: %w", err)
	}
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.thread, &k.pos); err != nil {
			rows.Close()
			return 0, err
		}
		roomKeys = append(roomKeys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if len(keys)+len(roomKeys) == 0 {
		return 0, nil
	}
	err = s.InTx(ctx, func(tx *Tx) error {
		for _, k := range keys {
			if _, err := tx.q.ExecContext(ctx, `DELETE FROM push_actions WHERE user_id = $1 AND room_id = $2 AND thread_id = $3 AND stream_pos = $4`,
				k.user, roomID, k.thread, k.pos); err != nil {
				return err
			}
		}
		for _, k := range roomKeys {
			if _, err := tx.q.ExecContext(ctx, `DELETE FROM push_room_actions WHERE room_id = $1 AND thread_id = $2 AND stream_pos = $3`,
				roomID, k.thread, k.pos); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("orphan notifications: %w", err)
	}
	return len(keys) + len(roomKeys), nil
}

// RetainedMedia is a queued row of retention_media.
type RetainedMedia struct {
	MediaID string
	// Blobs are the files still to delete; empty while the rows are
	// still there.
	Blobs []string
}

// RetentionMediaQueue returns up to limit queued media.
func (s *Store) RetentionMediaQueue(ctx context.Context, limit int) ([]RetainedMedia, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT media_id, blobs FROM retention_media ORDER BY media_id LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("retention media: %w", err)
	}
	defer rows.Close()
	var out []RetainedMedia
	for rows.Next() {
		var m RetainedMedia
		var blobs string
		if err := rows.Scan(&m.MediaID, &blobs); err != nil {
			return nil, err
		}
		if blobs != "" {
			m.Blobs = strings.Split(blobs, "\n")
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// DeleteRetainedMedia deletes a queued media's row and thumbnails when
// it is still local and unreferenced, and returns the blobs to delete
// (also kept in the queue row until DoneRetainedMedia). When the media is
// referenced again (or gone), the queue row goes and nothing is returned.
func (tx *Tx) DeleteRetainedMedia(ctx context.Context, mediaID string) ([]string, error) {
	var blob string
	err := tx.q.QueryRowContext(ctx, `SELECT blob FROM media m WHERE m.media_id = $1 AND m.origin = ''
		AND NOT EXISTS (SELECT 1 FROM media_refs r WHERE r.media_id = m.media_id)`, mediaID).Scan(&blob)
	if errors.Is(err, sql.ErrNoRows) {
		_, err := tx.q.ExecContext(ctx, `DELETE FROM retention_media WHERE media_id = $1`, mediaID)
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("retained media: %w", err)
	}
	thumbs, err := tx.deleteMediaWhere(ctx, mediaID, `origin = ''`)
	if err != nil {
		return nil, err
	}
	var blobs []string
	for _, b := range append([]string{blob}, thumbs...) {
		if b != "" {
			blobs = append(blobs, b)
		}
	}
	if len(blobs) == 0 {
		_, err := tx.q.ExecContext(ctx, `DELETE FROM retention_media WHERE media_id = $1`, mediaID)
		return nil, err
	}
	if _, err := tx.q.ExecContext(ctx, `UPDATE retention_media SET blobs = $1 WHERE media_id = $2`, strings.Join(blobs, "\n"), mediaID); err != nil {
		return nil, fmt.Errorf("retained media: %w", err)
	}
	return blobs, nil
}

// DoneRetainedMedia forgets a queued media whose blobs are deleted.
func (s *Store) DoneRetainedMedia(ctx context.Context, mediaID string) error {
	_, err := s.writer().ExecContext(ctx, `DELETE FROM retention_media WHERE media_id = $1`, mediaID)
	return err
}

// Checkpoint copies what SQLite's write-ahead log holds into the database
// file without waiting for or blocking writers (a passive checkpoint, on
// a reader's connection), so that the log a purge's deletions filled does
// not make a later commit (a send's) checkpoint it. No-op on PostgreSQL.
func (s *Store) Checkpoint(ctx context.Context) error {
	if s.Engine != SQLite {
		return nil
	}
	var busy, logged, done int
	if err := s.r.QueryRowContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logged, &done); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	return nil
}

// The search index (SQLite FTS5, contentless with deletes) merges its
// segments as it goes: after each commit it does merge work in
// proportion to what the commit wrote ("automerge"), and a segment whose
// rows are more than a tenth deleted is rewritten without them
// ("deletemerge"). A purge deleting most of a segment's rows in batches
// would rewrite it again and again, each time inside a batch's commit,
// under the room's lock. So a purge turns automerge off while it runs
// (the crisis merge, at 16 segments a level, still bounds the index)
// and then merges in small steps (MergeSearch) outside any room's lock,
// once the segments are mostly deleted rows and a single pass drops them.

// searchAutomerge is FTS5's default automerge setting.
const searchAutomerge = 4

// PauseSearchMerge turns the search index's automatic merging off
// (pause) or back on. No-op on PostgreSQL. The setting is stored in the
// database: ResumeSearchMerge at start undoes a purge cut short by a crash.
func (s *Store) PauseSearchMerge(ctx context.Context, pause bool) error {
	if s.Engine != SQLite {
		return nil
	}
	v := searchAutomerge
	if pause {
		v = 0
	}
	if _, err := s.writer().ExecContext(ctx, `INSERT INTO search_text (search_text, rank) VALUES ('automerge', $1)`, v); err != nil {
		return fmt.Errorf("search automerge: %w", err)
	}
	return nil
}

// MergeSearch does one step of merging of the search index (at most
// about pages pages written, one short write transaction) and reports
// whether there was anything to merge. No-op on PostgreSQL.
func (s *Store) MergeSearch(ctx context.Context, pages int) (bool, error) {
	if s.Engine != SQLite {
		return false, nil
	}
	var before, after int64
	err := s.InTx(ctx, func(tx *Tx) error {
		if err := tx.q.QueryRowContext(ctx, `SELECT total_changes()`).Scan(&before); err != nil {
			return err
		}
		if _, err := tx.q.ExecContext(ctx, `INSERT INTO search_text (search_text, rank) VALUES ('merge', $1)`, pages); err != nil {
			return err
		}
		return tx.q.QueryRowContext(ctx, `SELECT total_changes()`).Scan(&after)
	})
	if err != nil {
		return false, fmt.Errorf("merge search: %w", err)
	}
	// The command itself counts one change; merge work counts more.
	return after-before >= 2, nil
}

// SearchIndexPages is how many pages SQLite's search index holds
// (benchmarks: what a purge and its merge left). 0 on PostgreSQL.
func (s *Store) SearchIndexPages(ctx context.Context) (int64, error) {
	if s.Engine != SQLite {
		return 0, nil
	}
	var n int64
	err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM search_text_data`).Scan(&n)
	return n, err
}

// SearchMergePaused reports whether the search index's automatic
// merging is off (PauseSearchMerge). False on PostgreSQL.
func (s *Store) SearchMergePaused(ctx context.Context) (bool, error) {
	if s.Engine != SQLite {
		return false, nil
	}
	var v sql.NullInt64
	err := s.reader().QueryRowContext(ctx, `SELECT v FROM search_text_config WHERE k = 'automerge'`).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil && v.Valid && v.Int64 == 0, err
}
