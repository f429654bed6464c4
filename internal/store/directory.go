package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// RoomSummary is a room_summaries row: what the room directory and the
// space hierarchy show of a room. RoomType is "" for plain rooms.
type RoomSummary struct {
	RoomID            string
	RoomVersion       string
	RoomType          string
	Name              string
	Topic             string
	AvatarURL         string
	CanonicalAlias    string
	JoinRule          string
	AllowedRoomIDs    string // JSON array
	HistoryVisibility string
	GuestAccess       string
	Encryption        string
	JoinedMembers     int64
	SearchText        string
}

const summaryCols = `s.room_id, s.room_version, s.room_type, s.name, s.topic, s.avatar_url, s.canonical_alias, s.join_rule,
	s.allowed_room_ids, s.history_visibility, s.guest_access, s.encryption, s.joined_members, s.search_text`

func scanSummary(sc interface{ Scan(...any) error }) (*RoomSummary, error) {
	var r RoomSummary
	var typ sql.NullString
	err := sc.Scan(&r.RoomID, &r.RoomVersion, &typ, &r.Name, &r.Topic, &r.AvatarURL, &r.CanonicalAlias, &r.JoinRule,
		&r.AllowedRoomIDs, &r.HistoryVisibility, &r.GuestAccess, &r.Encryption, &r.JoinedMembers, &r.SearchText)
	r.RoomType = typ.String
	return &r, err
}

// SummaryState returns the PDUs of a room's current state events that a
// summary is made of (state key ""), by type.
func (tx *Tx) SummaryState(ctx context.Context, roomID string) (map[string][]byte, error) {
	rows, err := tx.q.QueryContext(ctx, `SELECT rs.type, `+pduCols+` FROM room_state rs JOIN events e ON e.event_id = rs.event_id
		WHERE rs.room_id = $1 AND rs.state_key = '' AND rs.type IN ('m.room.create', 'm.room.name', 'm.room.topic', 'm.room.avatar',
		'm.room.canonical_alias', 'm.room.join_rules', 'm.room.history_visibility', 'm.room.guest_access', 'm.room.encryption')`, roomID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]byte{}
	for rows.Next() {
		var typ string
		pdu, err := scanPDU(rows, &typ)
		if err != nil {
			return nil, err
		}
		out[typ] = pdu
	}
	return out, rows.Err()
}

// CurrentStateEventPDU returns the PDU of one current state event, or
// ErrNotFound.
func (tx *Tx) CurrentStateEventPDU(ctx context.Context, roomID, typ, stateKey string) ([]byte, error) {
	pdu, err := scanPDU(tx.q.QueryRowContext(ctx, `SELECT `+pduCols+` FROM room_state rs JOIN events e ON e.event_id = rs.event_id
		WHERE rs.room_id = $1 AND rs.type = $2 AND rs.state_key = $3`, roomID, typ, stateKey))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return pdu, err
}

// HasRoomSummary reports whether a room's summary was built from its
// state (a row may exist with its member count only).
func (tx *Tx) HasRoomSummary(ctx context.Context, roomID string) (bool, error) {
	var n int
	err := tx.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM room_summaries WHERE room_id = $1 AND room_version <> ''`, roomID).Scan(&n)
	return n > 0, err
}

// JoinedMemberPDUs returns the member events of a room's joined members.
func (tx *Tx) JoinedMemberPDUs(ctx context.Context, roomID string) ([][]byte, error) {
	return queryPDUs(ctx, tx.q, `SELECT `+pduCols+` FROM room_members m JOIN events e ON e.event_id = m.event_id
		WHERE m.room_id = $1 AND m.membership = 'join'`, roomID)
}

// RoomPublished reports whether a room is in the published directory.
func (tx *Tx) RoomPublished(ctx context.Context, roomID string) (bool, error) {
	var published bool
	err := tx.q.QueryRowContext(ctx, `SELECT published FROM rooms WHERE room_id = $1`, roomID).Scan(&published)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return published, err
}

// CountJoined counts a room's joined members.
func (tx *Tx) CountJoined(ctx context.Context, roomID string) (int64, error) {
	var n int64
	err := tx.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM room_members WHERE room_id = $1 AND membership = 'join'`, roomID).Scan(&n)
	return n, err
}

// PutRoomSummary writes a room's summary, all but its member count,
// which a new row counts once and SetMembership keeps up to date. The
// write waits for the transaction's next round trip (execLater): a room
// being created refreshes its summary with each of its first events.
func (tx *Tx) PutRoomSummary(ctx context.Context, r RoomSummary) error {
	return tx.execLater(ctx, nil, `INSERT INTO room_summaries (room_id, room_version, room_type, name, topic, avatar_url, canonical_alias,
		join_rule, allowed_room_ids, history_visibility, guest_access, encryption, search_text, joined_members)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
			(SELECT COUNT(*) FROM room_members WHERE room_id = $1 AND membership = 'join'))
		ON CONFLICT (room_id) DO UPDATE SET room_version = excluded.room_version, room_type = excluded.room_type, name = excluded.name,
		topic = excluded.topic, avatar_url = excluded.avatar_url, canonical_alias = excluded.canonical_alias, join_rule = excluded.join_rule,
		allowed_room_ids = excluded.allowed_room_ids, history_visibility = excluded.history_visibility, guest_access = excluded.guest_access,
		encryption = excluded.encryption, search_text = excluded.search_text`,
		r.RoomID, r.RoomVersion, sql.NullString{String: r.RoomType, Valid: r.RoomType != ""}, r.Name, r.Topic, r.AvatarURL, r.CanonicalAlias,
		r.JoinRule, r.AllowedRoomIDs, r.HistoryVisibility, r.GuestAccess, r.Encryption, r.SearchText)
}

// SetSummaryJoined sets a room's joined member count.
func (tx *Tx) SetSummaryJoined(ctx context.Context, roomID string, n int64) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO room_summaries (room_id, joined_members) VALUES ($1, $2)
		ON CONFLICT (room_id) DO UPDATE SET joined_members = excluded.joined_members`, roomID, n)
	return err
}

// SpaceChild is a valid m.space.child event of a room.
type SpaceChild struct {
	RoomID    string
	ChildID   string
	Content   []byte
	Sender    string
	OriginTS  int64
	Suggested bool
}

// PutSpaceChild records a valid m.space.child event.
func (tx *Tx) PutSpaceChild(ctx context.Context, c SpaceChild) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO space_children (room_id, child_id, content, sender, origin_ts, suggested) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (room_id, child_id) DO UPDATE SET content = excluded.content, sender = excluded.sender, origin_ts = excluded.origin_ts, suggested = excluded.suggested`,
		c.RoomID, c.ChildID, string(c.Content), c.Sender, c.OriginTS, c.Suggested)
	return err
}

// DeleteSpaceChild forgets a child whose event no longer links it.
func (tx *Tx) DeleteSpaceChild(ctx context.Context, roomID, childID string) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM space_children WHERE room_id = $1 AND child_id = $2`, roomID, childID)
	return err
}

// RoomsWithoutSummary lists rooms that have no summary yet (rooms created
// before summaries existed).
func (s *Store) RoomsWithoutSummary(ctx context.Context) ([]string, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT r.room_id FROM rooms r LEFT JOIN room_summaries s ON s.room_id = r.room_id WHERE s.room_id IS NULL`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// SpaceChildPDUs returns the PDUs of a room's current m.space.child
// events.
func (tx *Tx) SpaceChildPDUs(ctx context.Context, roomID string) ([][]byte, error) {
	return queryPDUs(ctx, tx.q, `SELECT `+pduCols+` FROM room_state rs JOIN events e ON e.event_id = rs.event_id
		WHERE rs.room_id = $1 AND rs.type = 'm.space.child'`, roomID)
}

// RoomSummaries returns the summaries of the rooms found, by id.
func (s *Store) RoomSummaries(ctx context.Context, roomIDs []string) (map[string]*RoomSummary, error) {
	out := map[string]*RoomSummary{}
	for len(roomIDs) > 0 {
		n := min(len(roomIDs), 100)
		batch := roomIDs[:n]
		roomIDs = roomIDs[n:]
		args := make([]any, len(batch))
		for i, id := range batch {
			args[i] = id
		}
		rows, err := s.reader().QueryContext(ctx, `SELECT `+summaryCols+` FROM room_summaries s WHERE s.room_id IN (`+placeholders(1, len(batch))+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			r, err := scanSummary(rows)
			if err != nil {
				rows.Close()
				return nil, err
			}
			out[r.RoomID] = r
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SpaceChildren returns the valid children of rooms, by room id.
func (s *Store) SpaceChildren(ctx context.Context, roomIDs []string) (map[string][]SpaceChild, error) {
	out := map[string][]SpaceChild{}
	for len(roomIDs) > 0 {
		n := min(len(roomIDs), 100)
		batch := roomIDs[:n]
		roomIDs = roomIDs[n:]
		args := make([]any, len(batch))
		for i, id := range batch {
			args[i] = id
		}
		rows, err := s.reader().QueryContext(ctx, `SELECT room_id, child_id, content, sender, origin_ts, suggested FROM space_children
			WHERE room_id IN (`+placeholders(1, len(batch))+`)`, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var c SpaceChild
			var content string
			if err := rows.Scan(&c.RoomID, &c.ChildID, &content, &c.Sender, &c.OriginTS, &c.Suggested); err != nil {
				rows.Close()
				return nil, err
			}
			c.Content = []byte(content)
			out[c.RoomID] = append(out[c.RoomID], c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// placeholders returns "$from, …, $(from+n-1)".
func placeholders(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(from+i))
	}
	return b.String()
}

// PublicRoomsQuery selects published rooms. Rooms are ordered by joined
// members (most first), then room id; After and Before are keyset bounds
// in that order (nil: none).
type PublicRoomsQuery struct {
	// SearchPattern is a LIKE pattern over search_text ("" : any).
	SearchPattern string
	// RoomTypes restricts room types when non-nil; "" stands for plain rooms.
	RoomTypes []string
	After     *RoomKey
	Before    *RoomKey
	Limit     int
	// AppService and Network select the rooms an application service
	// listed in one of its networks' directories instead of the
	// published ones; AllNetworks selects both kinds.
	AppService, Network string
	AllNetworks         bool
}

// RoomKey is a position in the public room order.
type RoomKey struct {
	Members int64
	RoomID  string
}

// PublicRooms returns up to q.Limit published rooms in order (when Before
// is set, those right before it, still in order) and the number of
// published rooms matching the filter.
func (s *Store) PublicRooms(ctx context.Context, q PublicRoomsQuery) ([]*RoomSummary, int64, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	// The directory first: its placeholders come first in the text.
	filter := "r.published"
	switch {
	case q.Network != "":
		filter = `EXISTS (SELECT 1 FROM appservice_room_directory d WHERE d.room_id = s.room_id AND d.as_id = ` + arg(q.AppService) +
			` AND d.network_id = ` + arg(q.Network) + `)`
	case q.AllNetworks:
		filter = `(r.published OR EXISTS (SELECT 1 FROM appservice_room_directory d WHERE d.room_id = s.room_id))`
	}
	if q.SearchPattern != "" {
		where = append(where, `s.search_text LIKE `+arg(q.SearchPattern)+` ESCAPE '\'`)
	}
	if q.RoomTypes != nil {
		var ors []string
		var named []string
		for _, t := range q.RoomTypes {
			if t == "" {
				ors = append(ors, "s.room_type IS NULL")
			} else {
				named = append(named, arg(t))
			}
		}
		if len(named) > 0 {
			ors = append(ors, "s.room_type IN ("+strings.Join(named, ", ")+")")
		}
		if len(ors) == 0 {
			return nil, 0, nil
		}
		where = append(where, "("+strings.Join(ors, " OR ")+")")
	}
	if len(where) > 0 {
		filter += " AND " + strings.Join(where, " AND ")
	}
	base := ` FROM room_summaries s JOIN rooms r ON r.room_id = s.room_id WHERE ` + filter
	var total int64
	if err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*)`+base, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count public rooms: %w", err)
	}
	order := ` ORDER BY s.joined_members DESC, s.room_id ASC`
	switch {
	case q.After != nil:
		m, id := arg(q.After.Members), arg(q.After.RoomID)
		base += ` AND (s.joined_members < ` + m + ` OR (s.joined_members = ` + m + ` AND s.room_id > ` + id + `))`
	case q.Before != nil:
		m, id := arg(q.Before.Members), arg(q.Before.RoomID)
		base += ` AND (s.joined_members > ` + m + ` OR (s.joined_members = ` + m + ` AND s.room_id < ` + id + `))`
		order = ` ORDER BY s.joined_members ASC, s.room_id DESC`
	}
	rows, err := s.reader().QueryContext(ctx, `SELECT `+summaryCols+base+order+` LIMIT `+arg(q.Limit), args...)
	if err != nil {
		return nil, 0, fmt.Errorf("public rooms: %w", err)
	}
	defer rows.Close()
	var out []*RoomSummary
	for rows.Next() {
		r, err := scanSummary(rows)
		if err != nil {
			return nil, 0, err
		}
		out = append(out, r)
	}
	if q.Before != nil {
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	}
	return out, total, rows.Err()
}

// DirectoryUser is a user_directory row.
type DirectoryUser struct {
	UserID      string
	DisplayName string
	AvatarURL   string
	IsLocal     bool
	SortKey     string
}

// PutDirectoryUser writes a user's directory row and search terms; a local
// user's opt-in choice is kept.
func (tx *Tx) PutDirectoryUser(ctx context.Context, u DirectoryUser, terms []string) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO user_directory (user_id, display_name, avatar_url, is_local, sort_key) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name, avatar_url = excluded.avatar_url,
		is_local = excluded.is_local, sort_key = excluded.sort_key`,
		u.UserID, u.DisplayName, u.AvatarURL, u.IsLocal, u.SortKey)
	if err != nil {
		return err
	}
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM user_directory_terms WHERE user_id = $1`, u.UserID); err != nil {
		return err
	}
	for _, t := range terms {
		if _, err := tx.q.ExecContext(ctx, `INSERT INTO user_directory_terms (term, user_id, sort_key, is_local, opt_in)
			SELECT $1, user_id, sort_key, is_local, opt_in FROM user_directory WHERE user_id = $2 ON CONFLICT DO NOTHING`, t, u.UserID); err != nil {
			return err
		}
	}
	return nil
}

// SetDirectoryOptIn records a local user's directory choice (nil: the
// server default). It is a no-op for users without a directory row.
func (tx *Tx) SetDirectoryOptIn(ctx context.Context, userID string, optIn *bool) error {
	v := sql.NullBool{}
	if optIn != nil {
		v = sql.NullBool{Bool: *optIn, Valid: true}
	}
	if _, err := tx.q.ExecContext(ctx, `UPDATE user_directory SET opt_in = $1 WHERE user_id = $2`, v, userID); err != nil {
		return err
	}
	_, err := tx.q.ExecContext(ctx, `UPDATE user_directory_terms SET opt_in = $1 WHERE user_id = $2`, v, userID)
	return err
}

// DeleteDirectoryUser removes a user from the directory.
func (tx *Tx) DeleteDirectoryUser(ctx context.Context, userID string) error {
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM user_directory_terms WHERE user_id = $1`, userID); err != nil {
		return err
	}
	_, err := tx.q.ExecContext(ctx, `DELETE FROM user_directory WHERE user_id = $1`, userID)
	return err
}

// DirectoryFill is a local account's directory row as it should be, with
// its search terms and directory choice (nil: the server default).
type DirectoryFill struct {
	Row   DirectoryUser
	Terms []string
	OptIn *bool
}

// FillDirectoryUsers writes the directory rows, terms and choices of many
// local accounts and deletes the rows of users in gone, set-based: a few
// statements per call whatever the number of users (the start-up repair of
// a directory after a bulk import or an upgrade).
func (tx *Tx) FillDirectoryUsers(ctx context.Context, users []DirectoryFill, gone []string) error {
	var ids []any
	for _, u := range users {
		ids = append(ids, u.Row.UserID)
	}
	for _, id := range gone {
		ids = append(ids, id)
	}
	// Each statement stays below SQLite's 32,766 parameters.
	for len(ids) > 0 {
		n := min(len(ids), 5000)
		if _, err := tx.execOnce(ctx, `DELETE FROM user_directory_terms WHERE user_id IN (`+placeholders(1, n)+`)`, ids[:n]...); err != nil {
			return err
		}
		ids = ids[n:]
	}
	for len(gone) > 0 {
		n := min(len(gone), 5000)
		args := make([]any, n)
		for i, id := range gone[:n] {
			args[i] = id
		}
		if _, err := tx.execOnce(ctx, `DELETE FROM user_directory WHERE user_id IN (`+placeholders(1, n)+`)`, args...); err != nil {
			return err
		}
		gone = gone[n:]
	}
	optIn := func(u DirectoryFill) sql.NullBool {
		if u.OptIn == nil {
			return sql.NullBool{}
		}
		return sql.NullBool{Bool: *u.OptIn, Valid: true}
	}
	for rest := users; len(rest) > 0; {
		batch := rest[:min(len(rest), 1000)]
		rest = rest[len(batch):]
		var q strings.Builder
		q.WriteString(`INSERT INTO user_directory (user_id, display_name, avatar_url, is_local, opt_in, sort_key) VALUES `)
		args := make([]any, 0, 6*len(batch))
		for i, u := range batch {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(" + placeholders(len(args)+1, 6) + ")")
			args = append(args, u.Row.UserID, u.Row.DisplayName, u.Row.AvatarURL, u.Row.IsLocal, optIn(u), u.Row.SortKey)
		}
		q.WriteString(` ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name, avatar_url = excluded.avatar_url,
			is_local = excluded.is_local, opt_in = excluded.opt_in, sort_key = excluded.sort_key`)
		if _, err := tx.execOnce(ctx, q.String(), args...); err != nil {
			return err
		}
	}
	var q strings.Builder
	var args []any
	flush := func() error {
		if len(args) == 0 {
			return nil
		}
		_, err := tx.execOnce(ctx, `INSERT INTO user_directory_terms (term, user_id, sort_key, is_local, opt_in) VALUES `+q.String()+` ON CONFLICT DO NOTHING`, args...)
		q.Reset()
		args = args[:0]
		return err
	}
	for _, u := range users {
		for _, t := range u.Terms {
			if len(args) > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(" + placeholders(len(args)+1, 5) + ")")
			args = append(args, t, u.Row.UserID, u.Row.SortKey, u.Row.IsLocal, optIn(u))
			if len(args) >= 5000 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// DirectoryAccount is a local account next to its directory row.
type DirectoryAccount struct {
	UserID      string
	DisplayName string
	AvatarURL   string
	Deactivated bool
	// Indexed tells whether a directory row exists, and what it holds.
	Indexed       bool
	IndexedName   string
	IndexedAvatar string
	IndexedOptIn  sql.NullBool
	// OptInContent is the account data of the directory choice (nil: none).
	OptInContent []byte
}

// DirectoryAccounts lists the local accounts whose directory row may be
// out of date, with that row, to find rows missed by a crash or accounts
// made before the directory existed (or by a bulk import). Accounts whose
// row matches their name and avatar and who made no directory choice are
// left out in SQL, so that a start with an up-to-date directory reads
// next to nothing; those with a choice come back for the caller to
// compare (it is JSON). optInType is the account data type of the choice.
func (s *Store) DirectoryAccounts(ctx context.Context, optInType string) ([]DirectoryAccount, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT u.user_id, COALESCE(u.displayname, ''), COALESCE(u.avatar_url, ''), u.deactivated,
		d.user_id IS NOT NULL, COALESCE(d.display_name, ''), COALESCE(d.avatar_url, ''), d.opt_in, a.content
		FROM users u LEFT JOIN user_directory d ON d.user_id = u.user_id
		LEFT JOIN account_data a ON a.user_id = u.user_id AND a.room_id = '' AND a.type = $1
		WHERE CASE WHEN u.deactivated THEN d.user_id IS NOT NULL
			ELSE d.user_id IS NULL OR d.display_name <> COALESCE(u.displayname, '') OR d.avatar_url <> COALESCE(u.avatar_url, '')
				OR d.opt_in IS NOT NULL OR a.content IS NOT NULL END`, optInType)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DirectoryAccount
	for rows.Next() {
		var a DirectoryAccount
		var content sql.NullString
		if err := rows.Scan(&a.UserID, &a.DisplayName, &a.AvatarURL, &a.Deactivated, &a.Indexed, &a.IndexedName, &a.IndexedAvatar, &a.IndexedOptIn, &content); err != nil {
			return nil, err
		}
		if content.Valid {
			a.OptInContent = []byte(content.String)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}

// DirectorySearch searches the user directory.
type DirectorySearch struct {
	Searcher string
	// UserID, when set, looks for that one user instead of Prefixes.
	UserID string
	// Prefixes are folded words; every one must prefix a term of the user.
	Prefixes []string
	// DefaultVisible lists local users who made no choice.
	DefaultVisible bool
	Limit          int
}

// prefixEnd is above every string that starts with a prefix (folded terms
// never hold U+10FFFF).
const prefixEnd = "\U0010FFFF"

// SearchUserDirectory returns up to q.Limit users that match every prefix
// (or are q.UserID) and that the searcher may find: local users who are
// listed (opted in, or by default), and users sharing a joined room with
// them. The searcher is not among the results. Deactivated users have no
// row (see DeleteDirectoryUser).
//
// The first prefix drives a range scan of the terms table, which also
// holds what the filter and the order need; each other prefix is one
// index seek per candidate. Only the rows returned are read from
// user_directory.
func (s *Store) SearchUserDirectory(ctx context.Context, q DirectorySearch) ([]DirectoryUser, error) {
	if len(q.Prefixes) == 0 && q.UserID == "" {
		return nil, nil
	}
	var b strings.Builder
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if q.UserID != "" {
		// user_directory has the columns the filter below reads, as t.
		b.WriteString(`SELECT t.sort_key, t.user_id FROM user_directory t WHERE t.user_id = ` + arg(q.UserID))
	} else {
		b.WriteString(`SELECT DISTINCT t.sort_key, t.user_id FROM user_directory_terms t WHERE t.term >= ` + arg(q.Prefixes[0]) +
			` AND t.term < ` + arg(q.Prefixes[0]+prefixEnd))
	}
	for _, p := range q.Prefixes[min(1, len(q.Prefixes)):] {
		lo := arg(p)
		b.WriteString(` AND EXISTS (SELECT 1 FROM user_directory_terms w WHERE w.user_id = t.user_id AND w.term >= ` + lo +
			` AND w.term < ` + arg(p+prefixEnd) + `)`)
	}
	def := "FALSE"
	if q.DefaultVisible {
		def = "TRUE"
	}
	me := arg(q.Searcher)
	// The searcher's room mates are listed once (not per candidate).
	b.WriteString(` AND t.user_id <> ` + me + ` AND ((t.is_local AND (t.opt_in = TRUE OR (t.opt_in IS NULL AND ` + def + `)))
		OR t.user_id IN (SELECT o.user_id FROM room_members m JOIN room_members o ON o.room_id = m.room_id
			WHERE m.user_id = ` + me + ` AND m.membership = 'join' AND o.membership = 'join'))
		ORDER BY t.sort_key, t.user_id LIMIT ` + arg(q.Limit))
	rows, err := s.reader().QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("search user directory: %w", err)
	}
	var ids []string
	for rows.Next() {
		var sortKey, id string
		if err := rows.Scan(&sortKey, &id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil || len(ids) == 0 {
		return nil, err
	}
	idArgs := make([]any, len(ids))
	for i, id := range ids {
		idArgs[i] = id
	}
	rows, err = s.reader().QueryContext(ctx, `SELECT user_id, display_name, avatar_url, is_local, sort_key FROM user_directory
		WHERE user_id IN (`+placeholders(1, len(ids))+`)`, idArgs...)
	if err != nil {
		return nil, fmt.Errorf("search user directory: %w", err)
	}
	defer rows.Close()
	byID := make(map[string]DirectoryUser, len(ids))
	for rows.Next() {
		var u DirectoryUser
		if err := rows.Scan(&u.UserID, &u.DisplayName, &u.AvatarURL, &u.IsLocal, &u.SortKey); err != nil {
			return nil, err
		}
		byID[u.UserID] = u
	}
	out := make([]DirectoryUser, 0, len(ids))
	for _, id := range ids {
		if u, ok := byID[id]; ok {
			out = append(out, u)
		}
	}
	return out, rows.Err()
}

// DeactivatedAmong returns which of these users are deactivated accounts.
func (s *Store) DeactivatedAmong(ctx context.Context, userIDs []string) (map[string]bool, error) {
	out := map[string]bool{}
	if len(userIDs) == 0 {
		return out, nil
	}
	args := make([]any, len(userIDs))
	for i, u := range userIDs {
		args[i] = u
	}
	rows, err := s.reader().QueryContext(ctx, `SELECT user_id FROM users WHERE deactivated AND user_id IN (`+placeholders(1, len(userIDs))+`)`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out[u] = true
	}
	return out, rows.Err()
}

// DirectoryListed reports whether a local user is listed in the directory
// for everyone: opted in, or by default when defaultVisible. Unknown and
// deactivated users are not listed.
func (s *Store) DirectoryListed(ctx context.Context, userID string, defaultVisible bool) (bool, error) {
	var optIn sql.NullBool
	err := s.reader().QueryRowContext(ctx, `SELECT opt_in FROM user_directory WHERE user_id = $1 AND is_local`, userID).Scan(&optIn)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if optIn.Valid {
		return optIn.Bool, nil
	}
	return defaultVisible, nil
}

// ShareJoinedRoom reports whether two users are both joined to some room.
func (s *Store) ShareJoinedRoom(ctx context.Context, a, b string) (bool, error) {
	var n int
	err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM room_members m JOIN room_members o ON o.room_id = m.room_id
		WHERE m.user_id = $1 AND m.membership = 'join' AND o.user_id = $2 AND o.membership = 'join' LIMIT 1) x`, a, b).Scan(&n)
	return n > 0, err
}

// MutualRooms returns up to limit rooms, after the room id after (""
// for the first), where users a and b are both joined, by room id, and
// how many such rooms there are in all.
func (s *Store) MutualRooms(ctx context.Context, a, b, after string, limit int) ([]string, int64, error) {
	var total int64
	if err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM room_members m JOIN room_members o ON o.room_id = m.room_id
		WHERE m.user_id = $1 AND m.membership = 'join' AND o.user_id = $2 AND o.membership = 'join'`, a, b).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count mutual rooms: %w", err)
	}
	rows, err := s.reader().QueryContext(ctx, `SELECT m.room_id FROM room_members m JOIN room_members o ON o.room_id = m.room_id
		WHERE m.user_id = $1 AND m.membership = 'join' AND o.user_id = $2 AND o.membership = 'join' AND m.room_id > $3
		ORDER BY m.room_id LIMIT $4`, a, b, after, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("mutual rooms: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, 0, err
		}
		out = append(out, id)
	}
	return out, total, rows.Err()
}

// ServerHasMember reports whether some user of server is joined to or
// invited into a room. server must be a valid server name.
func (s *Store) ServerHasMember(ctx context.Context, roomID, server string) (bool, error) {
	var n int
	err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM room_members WHERE room_id = $1 AND user_id LIKE $2
		AND membership IN ('join', 'invite') LIMIT 1) x`, roomID, "%:"+server).Scan(&n)
	return n > 0, err
}

// ShareJoinedRoomWithServer reports whether a user is joined to a room
// where some user of server is joined too. server must be a valid server
// name (which holds no LIKE wildcard).
func (s *Store) ShareJoinedRoomWithServer(ctx context.Context, userID, server string) (bool, error) {
	var n int
	err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM room_members m JOIN room_members o ON o.room_id = m.room_id
		WHERE m.user_id = $1 AND m.membership = 'join' AND o.user_id LIKE $2 AND o.membership = 'join' LIMIT 1) x`,
		userID, "%:"+server).Scan(&n)
	return n > 0, err
}

// queryPDUs runs a query of one PDU column.
func queryPDUs(ctx context.Context, q querier, query string, args ...any) ([][]byte, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		pdu, err := scanPDU(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, pdu)
	}
	return out, rows.Err()
}
