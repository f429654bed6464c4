package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// AdminRoomsQuery is a page of the administrators' room list (Synapse's
// GET /_synapse/admin/v1/rooms).
type AdminRoomsQuery struct {
	From, Limit int
	// OrderBy is one of AdminRoomOrders' keys.
	OrderBy  string
	Backward bool
	// Search keeps rooms whose name or canonical alias contains it (case
	// folded) or whose id contains it (as is).
	Search string
	// Public and Empty filter on publication and on having no joined
	// member; nil keeps both.
	Public, Empty *bool
	// Server is this server's name: local members are its users.
	Server string
}

// AdminRoom is a room as the administrators' list shows it.
type AdminRoom struct {
	RoomSummary
	Creator     string
	Published   bool
	JoinedLocal int64
	StateEvents int64
}

// AdminRoomOrders maps the order_by values of the room list to their
// ordering expression and whether the natural order is descending (the
// counts are listed largest first).
var AdminRoomOrders = map[string]struct {
	Expr string
	Desc bool
}{
	"name":                 {"s.name", false},
	"alphabetical":         {"s.name", false},
	"canonical_alias":      {"s.canonical_alias", false},
	"joined_members":       {"s.joined_members", true},
	"size":                 {"s.joined_members", true},
	"joined_local_members": {"joined_local", true},
	"version":              {"r.room_version", true},
	"creator":              {"r.creator", false},
	"encryption":           {"s.encryption", false},
	"federatable":          {"r.room_id", false}, // not kept per room: by id
	"public":               {"r.published", true},
	"join_rules":           {"s.join_rule", false},
	"guest_access":         {"s.guest_access", false},
	"history_visibility":   {"s.history_visibility", false},
	"state_events":         {"state_events", true},
}

// likeEscape escapes LIKE's wildcards (with the escape character \).
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// ph is placeholder n, for statements assembled from parts.
func ph(n int) string { return "$" + strconv.Itoa(n) }

// ListAdminRooms returns a page of rooms and how many match the filters.
func (s *Store) ListAdminRooms(ctx context.Context, q AdminRoomsQuery) ([]AdminRoom, int64, error) {
	order, ok := AdminRoomOrders[q.OrderBy]
	if !ok {
		order = AdminRoomOrders["name"]
	}
	desc := order.Desc != q.Backward
	var args []any
	arg := func(v any) string { args = append(args, v); return ph(len(args)) }
	localCount := `(SELECT COUNT(*) FROM room_members m WHERE m.room_id = r.room_id AND m.membership = 'join' AND m.user_id LIKE ` +
		arg("%:"+likeEscape(q.Server)) + ` ESCAPE '\')`
	cols := summaryCols + `, r.creator, r.published, ` + localCount + ` AS joined_local,
		(SELECT COUNT(*) FROM room_state st WHERE st.room_id = r.room_id) AS state_events`
	where := []string{"TRUE"}
	var whereArgs []any
	warg := func(v any) string { whereArgs = append(whereArgs, v); return ph(len(args) + len(whereArgs)) }
	if q.Search != "" {
		folded := "%" + likeEscape(strings.ToLower(q.Search)) + "%"
		where = append(where, `(LOWER(s.name) LIKE `+warg(folded)+` ESCAPE '\' OR LOWER(s.canonical_alias) LIKE `+warg(folded)+
			` ESCAPE '\' OR r.room_id LIKE `+warg("%"+likeEscape(q.Search)+"%")+` ESCAPE '\')`)
	}
	if q.Public != nil {
		where = append(where, "r.published = "+warg(*q.Public))
	}
	if q.Empty != nil {
		if *q.Empty {
			where = append(where, "s.joined_members = 0")
		} else {
			where = append(where, "s.joined_members > 0")
		}
	}
	dir := "ASC"
	if desc {
		dir = "DESC"
	}
	base := ` FROM rooms r JOIN room_summaries s ON s.room_id = r.room_id WHERE ` + strings.Join(where, " AND ")
	args = append(args, whereArgs...)
	query := `SELECT ` + cols + base + ` ORDER BY ` + order.Expr + ` ` + dir + `, r.room_id ` + dir +
		` LIMIT ` + arg(q.Limit) + ` OFFSET ` + arg(q.From)
	rows, err := s.reader().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("list rooms: %w", err)
	}
	defer rows.Close()
	var out []AdminRoom
	for rows.Next() {
		var r AdminRoom
		var typ sql.NullString
		if err := rows.Scan(&r.RoomID, &r.RoomVersion, &typ, &r.Name, &r.Topic, &r.AvatarURL, &r.CanonicalAlias, &r.JoinRule,
			&r.AllowedRoomIDs, &r.HistoryVisibility, &r.GuestAccess, &r.Encryption, &r.JoinedMembers, &r.SearchText,
			&r.Creator, &r.Published, &r.JoinedLocal, &r.StateEvents); err != nil {
			return nil, 0, fmt.Errorf("list rooms: %w", err)
		}
		r.RoomType = typ.String
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("list rooms: %w", err)
	}
	// The count takes the filters' arguments alone, renumbered from $1.
	// (the local count's argument was $1).
	countWhere := make([]string, len(where))
	for i, w := range where {
		countWhere[i] = renumber(w, 1)
	}
	var total int64
	err = s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM rooms r JOIN room_summaries s ON s.room_id = r.room_id WHERE `+
		strings.Join(countWhere, " AND "), whereArgs...).Scan(&total)
	if err != nil {
		return nil, 0, fmt.Errorf("count rooms: %w", err)
	}
	return out, total, nil
}

// renumber lowers every placeholder of a statement part by shift.
func renumber(part string, shift int) string {
	var b strings.Builder
	for i := 0; i < len(part); i++ {
		if part[i] != '$' {
			b.WriteByte(part[i])
			continue
		}
		j := i + 1
		for j < len(part) && part[j] >= '0' && part[j] <= '9' {
			j++
		}
		n, _ := strconv.Atoi(part[i+1 : j])
		b.WriteString(ph(n - shift))
		i = j - 1
	}
	return b.String()
}

// AdminRoomDetails is what the administrators' room details add to the
// list's columns.
type AdminRoomDetails struct {
	AdminRoom
	JoinedLocalDevices int64
	// Forgotten: every local user who was in the room has forgotten it.
	Forgotten bool
}

// GetAdminRoom returns one room's details, or ErrNotFound.
func (s *Store) GetAdminRoom(ctx context.Context, roomID, server string) (*AdminRoomDetails, error) {
	local := "%:" + likeEscape(server)
	var d AdminRoomDetails
	var typ sql.NullString
	var remembered int64
	err := s.reader().QueryRowContext(ctx, `SELECT `+summaryCols+`, r.creator, r.published,
		(SELECT COUNT(*) FROM room_members m WHERE m.room_id = r.room_id AND m.membership = 'join' AND m.user_id LIKE $1 ESCAPE '\'),
		(SELECT COUNT(*) FROM room_state st WHERE st.room_id = r.room_id),
		(SELECT COUNT(*) FROM devices d JOIN room_members m ON m.user_id = d.user_id WHERE m.room_id = r.room_id AND m.membership = 'join'),
		(SELECT COUNT(*) FROM room_members m WHERE m.room_id = r.room_id AND m.user_id LIKE $2 ESCAPE '\' AND m.forgotten = FALSE)
		FROM rooms r JOIN room_summaries s ON s.room_id = r.room_id WHERE r.room_id = $3`, local, local, roomID).
		Scan(&d.RoomID, &d.RoomVersion, &typ, &d.Name, &d.Topic, &d.AvatarURL, &d.CanonicalAlias, &d.JoinRule,
			&d.AllowedRoomIDs, &d.HistoryVisibility, &d.GuestAccess, &d.Encryption, &d.JoinedMembers, &d.SearchText,
			&d.Creator, &d.Published, &d.JoinedLocal, &d.StateEvents, &d.JoinedLocalDevices, &remembered)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("room details: %w", err)
	}
	d.RoomType = typ.String
	d.Forgotten = remembered == 0
	return &d, nil
}

// CreateEventPDUs returns the m.room.create PDUs of rooms, by room id.
func (s *Store) CreateEventPDUs(ctx context.Context, roomIDs []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for len(roomIDs) > 0 {
		n := min(len(roomIDs), 100)
		args := make([]any, n)
		for i, id := range roomIDs[:n] {
			args[i] = id
		}
		roomIDs = roomIDs[n:]
		rows, err := s.reader().QueryContext(ctx, `SELECT rs.room_id, `+pduCols+` FROM room_state rs JOIN events e ON e.event_id = rs.event_id
			WHERE rs.type = 'm.room.create' AND rs.state_key = '' AND rs.room_id IN (`+placeholders(1, n)+`)`, args...)
		if err != nil {
			return nil, fmt.Errorf("create events: %w", err)
		}
		for rows.Next() {
			var id string
			pdu, err := scanPDU(rows, &id)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out[id] = pdu
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SetRoomBlocked blocks (by userID) or unblocks a room.
func (s *Store) SetRoomBlocked(ctx context.Context, roomID, userID string, block bool) error {
	var err error
	if block {
		_, err = s.writer().ExecContext(ctx, `INSERT INTO blocked_rooms (room_id, user_id, blocked_ts) VALUES ($1, $2, $3)
			ON CONFLICT (room_id) DO NOTHING`, roomID, userID, now())
	} else {
		_, err = s.writer().ExecContext(ctx, `DELETE FROM blocked_rooms WHERE room_id = $1`, roomID)
	}
	if err != nil {
		return fmt.Errorf("block room: %w", err)
	}
	return nil
}

// RoomBlock reports whether a room is blocked, and by whom.
func (s *Store) RoomBlock(ctx context.Context, roomID string) (by string, blocked bool, err error) {
	err = s.reader().QueryRowContext(ctx, `SELECT user_id FROM blocked_rooms WHERE room_id = $1`, roomID).Scan(&by)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("room block: %w", err)
	}
	return by, true, nil
}

// RoomDeleteTask is a room deletion run in the background.
type RoomDeleteTask struct {
	DeleteID  string
	RoomID    string
	Requester string
	Params    string // JSON
	Status    string // scheduled | active | complete | failed
	Result    string // JSON
	Error     string
	CreatedTS int64
	UpdatedTS int64
}

const deleteTaskCols = `delete_id, room_id, requester, params, status, result, error, created_ts, updated_ts`

func scanDeleteTasks(rows *sql.Rows, err error) ([]RoomDeleteTask, error) {
	if err != nil {
		return nil, fmt.Errorf("delete tasks: %w", err)
	}
	defer rows.Close()
	var out []RoomDeleteTask
	for rows.Next() {
		var t RoomDeleteTask
		if err := rows.Scan(&t.DeleteID, &t.RoomID, &t.Requester, &t.Params, &t.Status, &t.Result, &t.Error, &t.CreatedTS, &t.UpdatedTS); err != nil {
			return nil, fmt.Errorf("delete tasks: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// AddRoomDeleteTask records a new deletion.
func (s *Store) AddRoomDeleteTask(ctx context.Context, t RoomDeleteTask) error {
	ts := now()
	_, err := s.writer().ExecContext(ctx, `INSERT INTO room_delete_tasks (`+deleteTaskCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		t.DeleteID, t.RoomID, t.Requester, t.Params, t.Status, t.Result, t.Error, ts, ts)
	if err != nil {
		return fmt.Errorf("add delete task: %w", err)
	}
	return nil
}

// UpdateRoomDeleteTask sets a deletion's status, result and error.
func (s *Store) UpdateRoomDeleteTask(ctx context.Context, deleteID, status, result, errText string) error {
	_, err := s.writer().ExecContext(ctx, `UPDATE room_delete_tasks SET status = $1, result = $2, error = $3, updated_ts = $4 WHERE delete_id = $5`,
		status, result, errText, now(), deleteID)
	if err != nil {
		return fmt.Errorf("update delete task: %w", err)
	}
	return nil
}

// GetRoomDeleteTask returns one deletion, or ErrNotFound.
func (s *Store) GetRoomDeleteTask(ctx context.Context, deleteID string) (*RoomDeleteTask, error) {
	ts, err := scanDeleteTasks(s.reader().QueryContext(ctx, `SELECT `+deleteTaskCols+` FROM room_delete_tasks WHERE delete_id = $1`, deleteID))
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, ErrNotFound
	}
	return &ts[0], nil
}

// RoomDeleteTasks returns a room's deletions updated since sinceTS (and
// those not finished), oldest first.
func (s *Store) RoomDeleteTasks(ctx context.Context, roomID string, sinceTS int64) ([]RoomDeleteTask, error) {
	return scanDeleteTasks(s.reader().QueryContext(ctx, `SELECT `+deleteTaskCols+` FROM room_delete_tasks
		WHERE room_id = $1 AND (updated_ts >= $2 OR status IN ('scheduled', 'active')) ORDER BY created_ts, delete_id`, roomID, sinceTS))
}

// UnfinishedRoomDeleteTasks returns the deletions a restart must resume.
func (s *Store) UnfinishedRoomDeleteTasks(ctx context.Context) ([]RoomDeleteTask, error) {
	return scanDeleteTasks(s.reader().QueryContext(ctx, `SELECT `+deleteTaskCols+` FROM room_delete_tasks
		WHERE status IN ('scheduled', 'active') ORDER BY created_ts, delete_id`))
}

// KeptRoomTables are the tables with a room_id column that a purge keeps:
// the block (which must outlive the room) and the deletions' status.
var KeptRoomTables = map[string]bool{"blocked_rooms": true, "room_delete_tasks": true}

// RoomTables lists the tables that have a room_id column, read from the
// schema, so that tables added later are purged (and counted) too.
func (s *Store) RoomTables(ctx context.Context) ([]string, error) {
	q := `SELECT m.name FROM sqlite_master m, pragma_table_info(m.name) p WHERE m.type = 'table' AND p.name = 'room_id'`
	if s.Engine == Postgres {
		q = `SELECT c.table_name FROM information_schema.columns c JOIN information_schema.tables t
			ON t.table_schema = c.table_schema AND t.table_name = c.table_name
			WHERE c.column_name = 'room_id' AND c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'`
	}
	rows, err := s.reader().QueryContext(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("room tables: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	sort.Strings(out)
	return out, rows.Err()
}

// PurgeRoomEvents deletes up to limit of a room's events, oldest first,
// with what hangs off them and is keyed by the event: media references,
// search rows. It returns the ids of the events it deleted (none: none
// are left).
func (s *Store) PurgeRoomEvents(ctx context.Context, roomID string, limit int) ([]string, error) {
	var deleted []string
	err := s.InTx(ctx, func(tx *Tx) error {
		rows, err := tx.q.QueryContext(ctx, `SELECT stream_pos, event_id FROM events WHERE room_id = $1 ORDER BY stream_pos LIMIT $2`, roomID, limit)
		if err != nil {
			return err
		}
		var pos []any
		var ids []any
		for rows.Next() {
			var p int64
			var id string
			if err := rows.Scan(&p, &id); err != nil {
				rows.Close()
				return err
			}
			pos, ids = append(pos, p), append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		n := len(ids)
		if n == 0 {
			return nil
		}
		list := placeholders(1, n)
		searchCol := "stream_pos"
		if s.Engine == SQLite {
			searchCol = "rowid"
		}
		for _, st := range []struct {
			q    string
			args []any
		}{
			{`DELETE FROM media_refs WHERE event_id IN (` + list + `)`, ids},
			{`DELETE FROM search_text WHERE ` + searchCol + ` IN (` + list + `)`, pos},
			{`DELETE FROM events WHERE event_id IN (` + list + `)`, ids},
		} {
			if _, err := tx.execOnce(ctx, st.q, st.args...); err != nil {
				return fmt.Errorf("purge events: %w", err)
			}
		}
		for _, id := range ids {
			deleted = append(deleted, id.(string))
		}
		return nil
	})
	return deleted, err
}

// PurgeRoomEventKeyed deletes the rows of tables keyed by event id alone
// (client transaction ids, queued federation sends) whose events are the
// room's; it runs before the events go, in one pass over each table.
func (s *Store) PurgeRoomEventKeyed(ctx context.Context, roomID string) error {
	for _, q := range []string{
		`DELETE FROM txn_ids WHERE event_id IN (SELECT event_id FROM events WHERE room_id = $1)`,
		`DELETE FROM federation_outbox WHERE event_id IN (SELECT event_id FROM events WHERE room_id = $1)`,
	} {
		if _, err := s.writer().ExecContext(ctx, q, roomID); err != nil {
			return fmt.Errorf("purge event rows: %w", err)
		}
	}
	return nil
}

// RoomSendsPending reports whether events of the room wait to be sent to
// other servers (fan-out or outbox rows).
func (s *Store) RoomSendsPending(ctx context.Context, roomID string) (bool, error) {
	var n int
	err := s.reader().QueryRowContext(ctx, `SELECT (SELECT COUNT(*) FROM federation_fanout WHERE room_id = $1) +
		(SELECT COUNT(*) FROM federation_outbox o JOIN events e ON e.event_id = o.event_id WHERE e.room_id = $2)`, roomID, roomID).Scan(&n)
	return n > 0, err
}

// PurgeRoomStateGroups deletes up to limit of a room's state groups with
// their entries, and returns how many it deleted.
func (s *Store) PurgeRoomStateGroups(ctx context.Context, roomID string, limit int) (int, error) {
	var n int
	err := s.InTx(ctx, func(tx *Tx) error {
		rows, err := tx.q.QueryContext(ctx, `SELECT group_id FROM state_groups WHERE room_id = $1 ORDER BY group_id LIMIT $2`, roomID, limit)
		if err != nil {
			return err
		}
		var ids []any
		for rows.Next() {
			var g int64
			if err := rows.Scan(&g); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, g)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		n = len(ids)
		if n == 0 {
			return nil
		}
		list := placeholders(1, n)
		if _, err := tx.execOnce(ctx, `DELETE FROM state_group_entries WHERE group_id IN (`+list+`)`, ids...); err != nil {
			return fmt.Errorf("purge state: %w", err)
		}
		if _, err := tx.execOnce(ctx, `DELETE FROM state_groups WHERE group_id IN (`+list+`)`, ids...); err != nil {
			return fmt.Errorf("purge state: %w", err)
		}
		return nil
	})
	return n, err
}

// PurgeRoomRows deletes the room's rows from every table with a room_id
// column but the kept ones, the rooms row last.
func (s *Store) PurgeRoomRows(ctx context.Context, roomID string) error {
	tables, err := s.RoomTables(ctx)
	if err != nil {
		return err
	}
	return s.InTx(ctx, func(tx *Tx) error {
		for _, t := range tables {
			if KeptRoomTables[t] || t == "rooms" {
				continue
			}
			if _, err := tx.execOnce(ctx, `DELETE FROM `+t+` WHERE room_id = $1`, roomID); err != nil {
				return fmt.Errorf("purge %s: %w", t, err)
			}
		}
		if _, err := tx.execOnce(ctx, `DELETE FROM rooms WHERE room_id = $1`, roomID); err != nil {
			return fmt.Errorf("purge rooms: %w", err)
		}
		return nil
	})
}

// RoomEventKeys returns the ids, positions and state groups of a room's
// events (to check afterwards that a purge left nothing keyed by them).
func (s *Store) RoomEventKeys(ctx context.Context, roomID string) (ids []string, pos []int64, groups []int64, err error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT event_id, stream_pos FROM events WHERE room_id = $1`, roomID)
	if err != nil {
		return nil, nil, nil, err
	}
	for rows.Next() {
		var id string
		var p int64
		if err := rows.Scan(&id, &p); err != nil {
			rows.Close()
			return nil, nil, nil, err
		}
		ids, pos = append(ids, id), append(pos, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, nil, nil, err
	}
	rows, err = s.reader().QueryContext(ctx, `SELECT group_id FROM state_groups WHERE room_id = $1`, roomID)
	if err != nil {
		return nil, nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var g int64
		if err := rows.Scan(&g); err != nil {
			return nil, nil, nil, err
		}
		groups = append(groups, g)
	}
	return ids, pos, groups, rows.Err()
}

// RoomTraces counts, table by table, the rows left of a room: in every
// table with a room_id column, and the rows keyed by its events (ids,
// positions) and state groups. A purged room has only zeros, but in
// KeptRoomTables.
func (s *Store) RoomTraces(ctx context.Context, roomID string, ids []string, pos []int64, groups []int64) (map[string]int64, error) {
	tables, err := s.RoomTables(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	count := func(name, q string, args ...any) error {
		var n int64
		if err := s.reader().QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			return fmt.Errorf("count %s: %w", name, err)
		}
		out[name] += n
		return nil
	}
	for _, t := range tables {
		if err := count(t, `SELECT COUNT(*) FROM `+t+` WHERE room_id = $1`, roomID); err != nil {
			return nil, err
		}
	}
	searchCol := "stream_pos"
	if s.Engine == SQLite {
		searchCol = "rowid"
	}
	for i := 0; i < len(ids); i += 100 {
		j := min(i+100, len(ids))
		idArgs := make([]any, 0, j-i)
		posArgs := make([]any, 0, j-i)
		for k := i; k < j; k++ {
			idArgs, posArgs = append(idArgs, ids[k]), append(posArgs, pos[k])
		}
		list := placeholders(1, j-i)
		for _, c := range []struct {
			name, q string
			args    []any
		}{
			{"events (by id)", `SELECT COUNT(*) FROM events WHERE event_id IN (` + list + `)`, idArgs},
			{"media_refs", `SELECT COUNT(*) FROM media_refs WHERE event_id IN (` + list + `)`, idArgs},
			{"txn_ids", `SELECT COUNT(*) FROM txn_ids WHERE event_id IN (` + list + `)`, idArgs},
			{"federation_outbox", `SELECT COUNT(*) FROM federation_outbox WHERE event_id IN (` + list + `)`, idArgs},
			{"search_text", `SELECT COUNT(*) FROM search_text WHERE ` + searchCol + ` IN (` + list + `)`, posArgs},
		} {
			if err := count(c.name, c.q, c.args...); err != nil {
				return nil, err
			}
		}
	}
	for i := 0; i < len(groups); i += 100 {
		j := min(i+100, len(groups))
		args := make([]any, 0, j-i)
		for k := i; k < j; k++ {
			args = append(args, groups[k])
		}
		if err := count("state_group_entries", `SELECT COUNT(*) FROM state_group_entries WHERE group_id IN (`+placeholders(1, j-i)+`)`, args...); err != nil {
			return nil, err
		}
	}
	return out, nil
}
