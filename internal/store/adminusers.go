package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// UserListQuery filters and orders the admin API's user list.
type UserListQuery struct {
	// UserIDContains keeps user ids containing it (case-insensitive).
	UserIDContains string
	// NameContains keeps users whose localpart or display name contains
	// it (case-insensitive); it replaces UserIDContains.
	NameContains string
	// Deactivated and Locked include those accounts (they are left out
	// otherwise).
	Deactivated, Locked bool
	// Admins: nil both, true administrators only, false the others.
	Admins *bool
	// NotUserTypes leaves out these types ("" is the accounts without one).
	NotUserTypes []string
	// OrderBy is a column of UserOrders; Desc reverses it. Ties are broken
	// by user id, in the same direction.
	OrderBy string
	Desc    bool
	From    int
	Limit   int
}

// UserOrders maps the admin API's order_by values to columns. Users have
// no guest accounts: is_guest orders by user id.
var UserOrders = map[string]string{
	"name":          "u.user_id",
	"is_guest":      "u.user_id",
	"admin":         "u.is_admin",
	"user_type":     "u.user_type",
	"deactivated":   "u.deactivated",
	"shadow_banned": "u.shadow_banned",
	"locked":        "u.locked",
	"displayname":   "u.displayname",
	"avatar_url":    "u.avatar_url",
	"creation_ts":   "u.created_ts",
	"last_seen_ts":  "last_seen_ts",
}

// AdminUser is a row of the admin API's user list.
type AdminUser struct {
	User
	LastSeenTS sql.NullInt64 // the latest of its devices'
}

// likeContains is a LIKE pattern matching s anywhere, with LIKE's
// wildcards in s escaped (ESCAPE '\').
func likeContains(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return "%" + r.Replace(s) + "%"
}

// ListUsers returns a page of local accounts and how many match in all.
func (s *Store) ListUsers(ctx context.Context, q UserListQuery) ([]AdminUser, int, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	// Case-insensitive on both engines: SQLite's LIKE is for ASCII
	// letters; on PostgreSQL both sides are lowercased (twice as fast as
	// ILIKE over 40,000 accounts).
	fold := func(col string) string { return col }
	if s.Engine == Postgres {
		fold = func(col string) string { return "LOWER(" + col + ")" }
	}
	switch {
	case q.NameContains != "":
		p := likeContains(strings.ToLower(q.NameContains))
		// The localpart: what lies between '@' and the first ':'.
		where = append(where, `(`+fold("u.user_id")+` LIKE `+arg("@"+p+":%")+` ESCAPE '\' OR `+fold("u.displayname")+` LIKE `+arg(p)+` ESCAPE '\')`)
	case q.UserIDContains != "":
		where = append(where, fold("u.user_id")+` LIKE `+arg(likeContains(strings.ToLower(q.UserIDContains)))+` ESCAPE '\'`)
	}
	if !q.Deactivated {
		where = append(where, `NOT u.deactivated`)
	}
	if !q.Locked {
		where = append(where, `NOT u.locked`)
	}
	if q.Admins != nil {
		if *q.Admins {
			where = append(where, `u.is_admin`)
		} else {
			where = append(where, `NOT u.is_admin`)
		}
	}
	for _, t := range q.NotUserTypes {
		if t == "" {
			where = append(where, `u.user_type IS NOT NULL`)
		} else {
			where = append(where, `(u.user_type IS NULL OR u.user_type <> `+arg(t)+`)`)
		}
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	var total int
	if err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM users u`+cond, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count users: %w", err)
	}
	col, ok := UserOrders[q.OrderBy]
	if !ok {
		col = "u.user_id"
	}
	if col == "last_seen_ts" {
		// Not indexed: every account's devices are read.
		col = "(SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_id = u.user_id)"
	}
	dir := " ASC"
	if q.Desc {
		dir = " DESC"
	}
	order := col + dir
	if col != "u.user_id" && col != "u.created_ts" && col != "u.is_admin" && col != "u.deactivated" && col != "u.shadow_banned" && col != "u.locked" {
		// NULLs first going up, last going down, on both engines.
		if q.Desc {
			order += " NULLS LAST"
		} else {
			order += " NULLS FIRST"
		}
	}
	if col != "u.user_id" {
		// Ties by user id, in the same direction: the index is read
		// backwards rather than the page sorted.
		order += ", u.user_id" + dir
	}
	limit, offset := arg(q.Limit), arg(q.From)
	rows, err := s.reader().QueryContext(ctx, `SELECT `+prefixed("u.", userCols)+`
		FROM users u`+cond+` ORDER BY `+order+` LIMIT `+limit+` OFFSET `+offset, args...)
	if err != nil {
		return nil, 0, fmt.Errorf("list users: %w", err)
	}
	defer rows.Close()
	var out []AdminUser
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("list users: %w", err)
		}
		out = append(out, AdminUser{User: *u})
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("list users: %w", err)
	}
	// The page's last-seen times, apart: in the query above they would be
	// computed for every row the offset skips too.
	if len(out) > 0 {
		ids := make([]string, len(out))
		for i, u := range out {
			ids[i] = u.UserID
		}
		q, args := inList(`SELECT user_id, MAX(last_seen_ts) FROM devices WHERE user_id IN (`, ids, `) GROUP BY user_id`)
		seen, err := s.reader().QueryContext(ctx, q, args...)
		if err != nil {
			return nil, 0, fmt.Errorf("list users' last seen: %w", err)
		}
		defer seen.Close()
		at := map[string]sql.NullInt64{}
		for seen.Next() {
			var id string
			var ts sql.NullInt64
			if err := seen.Scan(&id, &ts); err != nil {
				return nil, 0, fmt.Errorf("list users' last seen: %w", err)
			}
			at[id] = ts
		}
		if err := seen.Err(); err != nil {
			return nil, 0, fmt.Errorf("list users' last seen: %w", err)
		}
		for i := range out {
			out[i].LastSeenTS = at[out[i].UserID]
		}
	}
	return out, total, nil
}

// prefixed qualifies each column of a comma-separated list.
func prefixed(p, cols string) string {
	parts := strings.Split(cols, ",")
	for i, c := range parts {
		parts[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(parts, ", ")
}

// UserLastSeen is the latest last-seen time of a user's devices (0: none).
func (s *Store) UserLastSeen(ctx context.Context, userID string) (int64, error) {
	var ts sql.NullInt64
	err := s.reader().QueryRowContext(ctx, `SELECT MAX(last_seen_ts) FROM devices WHERE user_id = $1`, userID).Scan(&ts)
	return ts.Int64, err
}

// UserFlag is a moderation column of users that SetUserFlag changes.
type UserFlag string

// The flags SetUserFlag sets.
const (
	FlagLocked       UserFlag = "locked"
	FlagSuspended    UserFlag = "suspended"
	FlagShadowBanned UserFlag = "shadow_banned"
	FlagErased       UserFlag = "erased"
	FlagAdmin        UserFlag = "is_admin"
)

// SetUserFlag sets one moderation flag of an account; ErrNotFound when
// there is no such account.
func (tx *Tx) SetUserFlag(ctx context.Context, userID string, flag UserFlag, on bool) error {
	switch flag {
	case FlagLocked, FlagSuspended, FlagShadowBanned, FlagErased, FlagAdmin:
	default:
		return fmt.Errorf("unknown user flag %q", flag)
	}
	return affectedOne(tx.q.ExecContext(ctx, `UPDATE users SET `+string(flag)+` = $1 WHERE user_id = $2`, on, userID))
}

// SetUserType sets an account's type (NULL clears it).
func (tx *Tx) SetUserType(ctx context.Context, userID string, userType sql.NullString) error {
	return affectedOne(tx.q.ExecContext(ctx, `UPDATE users SET user_type = $1 WHERE user_id = $2`, userType, userID))
}

// SetValidUntil sets when an account locks (NULL: never).
func (tx *Tx) SetValidUntil(ctx context.Context, userID string, ts sql.NullInt64) error {
	return affectedOne(tx.q.ExecContext(ctx, `UPDATE users SET valid_until_ts = $1 WHERE user_id = $2`, ts, userID))
}

// Reactivate clears an account's deactivation (its password is set
// apart).
func (tx *Tx) Reactivate(ctx context.Context, userID string) error {
	return affectedOne(tx.q.ExecContext(ctx, `UPDATE users SET deactivated = FALSE WHERE user_id = $1`, userID))
}

// ReplaceThreePIDs replaces an account's third-party identifiers;
// ErrExists when another account has one of them.
func (tx *Tx) ReplaceThreePIDs(ctx context.Context, userID string, pids []ThreePID) error {
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM user_threepids WHERE user_id = $1`, userID); err != nil {
		return err
	}
	for _, p := range pids {
		if err := tx.AddThreePID(ctx, userID, p); err != nil {
			return err
		}
	}
	return nil
}

// ExternalID is an account's link to an upstream identity provider.
type ExternalID struct {
	Provider string
	Subject  string
}

// ExternalIDs lists an account's single sign-on links.
func (s *Store) ExternalIDs(ctx context.Context, userID string) ([]ExternalID, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT provider_id, subject FROM sso_links WHERE user_id = $1 ORDER BY provider_id, subject`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ExternalID
	for rows.Next() {
		var e ExternalID
		if err := rows.Scan(&e.Provider, &e.Subject); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// UpdateRegistrationToken changes a token's allowed uses and expiry (a
// NULL clears the limit); ErrNotFound when unknown.
func (tx *Tx) UpdateRegistrationToken(ctx context.Context, token string, setUses bool, uses sql.NullInt64, setExpiry bool, expiry sql.NullInt64) error {
	res, err := tx.q.ExecContext(ctx, `UPDATE registration_tokens SET
		uses_allowed = CASE WHEN $1 THEN $2 ELSE uses_allowed END,
		expiry_ts = CASE WHEN $3 THEN $4 ELSE expiry_ts END
		WHERE token = $5`, setUses, uses, setExpiry, expiry, token)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// ReplaceExternalIDs replaces an account's single sign-on links; ErrExists
// when another account has one of them.
func (tx *Tx) ReplaceExternalIDs(ctx context.Context, userID string, ids []ExternalID, nowTS int64) error {
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM sso_links WHERE user_id = $1`, userID); err != nil {
		return err
	}
	for _, e := range ids {
		if err := tx.AddSSOLink(ctx, e.Provider, e.Subject, userID, nowTS); err != nil {
			return err
		}
	}
	return nil
}

// UserMediaOrders maps the admin API's order_by values of a user's media
// to columns.
var UserMediaOrders = map[string]string{
	"media_id":       "media_id",
	"upload_name":    "upload_name",
	"created_ts":     "created_ts",
	"media_length":   "size",
	"media_type":     "content_type",
	"quarantined_by": "quarantined_by",
	// Not recorded: the order falls back to the media id.
	"last_access_ts":       "media_id",
	"safe_from_quarantine": "media_id",
}

// UserMediaRow is one of a user's uploads and who quarantined it ("" if
// no one).
type UserMediaRow struct {
	Media
	QuarantinedBy string
}

// UserMedia returns a page of the media a local user uploaded (not the
// reservations still waiting for content) and how many there are.
func (s *Store) UserMedia(ctx context.Context, userID, orderBy string, desc bool, from, limit int) ([]UserMediaRow, int, error) {
	var total int
	if err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM media WHERE user_id = $1 AND uploaded_ts <> 0`, userID).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("count user media: %w", err)
	}
	col, ok := UserMediaOrders[orderBy]
	if !ok {
		col = "created_ts"
	}
	order := col + " ASC"
	if desc {
		order = col + " DESC"
	}
	if col == "quarantined_by" {
		// NULLs first going up, last going down, on both engines.
		order += map[bool]string{false: " NULLS FIRST", true: " NULLS LAST"}[desc]
	}
	if col != "media_id" {
		order += ", media_id ASC"
	}
	rows, err := s.reader().QueryContext(ctx, fmt.Sprintf(`SELECT %s, COALESCE(quarantined_by, '') FROM media WHERE user_id = $1 AND uploaded_ts <> 0
		ORDER BY %s LIMIT $2 OFFSET $3`, mediaReadCols, order), userID, limit, from)
	if err != nil {
		return nil, 0, fmt.Errorf("list user media: %w", err)
	}
	defer rows.Close()
	var out []UserMediaRow
	for rows.Next() {
		var r UserMediaRow
		m := &r.Media
		if err := rows.Scan(&m.MediaID, &m.UserID, &m.CreatedTS, &m.ExpiresTS, &m.UploadedTS, &m.ContentType, &m.UploadName,
			&m.Size, &m.Blob, &m.WrappedKey, &m.KeyID, &m.Unauthenticated, &m.Quarantined, &r.QuarantinedBy); err != nil {
			return nil, 0, fmt.Errorf("list user media: %w", err)
		}
		out = append(out, r)
	}
	return out, total, rows.Err()
}
