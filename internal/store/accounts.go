package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
)

// User is an account row.
type User struct {
	UserID       string
	PasswordHash string
	IsAdmin      bool
	Deactivated  bool
	DisplayName  sql.NullString
	AvatarURL    sql.NullString
	CreatedTS    int64
}

// ErrExists is returned when a row to create already exists.
var ErrExists = errors.New("already exists")

// CreateUser inserts a new account; ErrExists when the id is taken.
func (tx *Tx) CreateUser(ctx context.Context, u User) error {
	res, err := tx.q.ExecContext(ctx, `INSERT INTO users (user_id, password_hash, is_admin, displayname, created_ts)
		VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO NOTHING`,
		u.UserID, u.PasswordHash, u.IsAdmin, u.DisplayName, now())
	if err != nil {
		return fmt.Errorf("insert user: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

const userCols = `user_id, password_hash, is_admin, deactivated, displayname, avatar_url, created_ts`

func scanUser(row interface{ Scan(...any) error }) (*User, error) {
	var u User
	err := row.Scan(&u.UserID, &u.PasswordHash, &u.IsAdmin, &u.Deactivated, &u.DisplayName, &u.AvatarURL, &u.CreatedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("scan user: %w", err)
	}
	return &u, nil
}

// GetUser returns an account or ErrNotFound.
func (s *Store) GetUser(ctx context.Context, userID string) (*User, error) {
	return scanUser(s.reader().QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE user_id = $1`, userID))
}

// UserExists reports whether an account (active or not) has this id.
func (s *Store) UserExists(ctx context.Context, userID string) (bool, error) {
	var n int
	err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE user_id = $1`, userID).Scan(&n)
	return n > 0, err
}

// SetPasswordHash replaces a user's password hash.
func (tx *Tx) SetPasswordHash(ctx context.Context, userID, hash string) error {
	_, err := tx.q.ExecContext(ctx, `UPDATE users SET password_hash = $1 WHERE user_id = $2`, hash, userID)
	return err
}

// SetAdmin grants or removes server administration rights.
func (tx *Tx) SetAdmin(ctx context.Context, userID string, admin bool) error {
	_, err := tx.q.ExecContext(ctx, `UPDATE users SET is_admin = $1 WHERE user_id = $2`, admin, userID)
	return err
}

// Deactivate marks a user deactivated and clears its password and profile.
func (tx *Tx) Deactivate(ctx context.Context, userID string) error {
	_, err := tx.q.ExecContext(ctx, `UPDATE users SET deactivated = TRUE, password_hash = '', displayname = NULL, avatar_url = NULL WHERE user_id = $1`, userID)
	if err != nil {
		return err
	}
	// Its third-party identifiers go (another account may take them);
	// its single sign-on links stay, so that the provider's subject keeps
	// being refused rather than given a new account.
	_, err = tx.q.ExecContext(ctx, `DELETE FROM user_threepids WHERE user_id = $1`, userID)
	return err
}

// SetProfile sets the display name and avatar URL (NULL clears).
func (tx *Tx) SetProfile(ctx context.Context, userID string, displayName, avatarURL sql.NullString) error {
	_, err := tx.q.ExecContext(ctx, `UPDATE users SET displayname = $1, avatar_url = $2 WHERE user_id = $3`, displayName, avatarURL, userID)
	return err
}

// Device is a device row.
type Device struct {
	UserID      string
	DeviceID    string
	DisplayName sql.NullString
	LastSeenTS  sql.NullInt64
	LastSeenIP  sql.NullString
}

// UpsertDevice creates a device or, when it exists, keeps it (and renames it
// when a display name is given).
func (tx *Tx) UpsertDevice(ctx context.Context, d Device) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO devices (user_id, device_id, display_name, last_seen_ts, last_seen_ip, created_ts)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (user_id, device_id) DO UPDATE SET display_name = COALESCE(excluded.display_name, devices.display_name)`,
		d.UserID, d.DeviceID, d.DisplayName, d.LastSeenTS, d.LastSeenIP, now())
	return err
}

// Devices lists a user's devices.
func (s *Store) Devices(ctx context.Context, userID string) ([]Device, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip FROM devices WHERE user_id = $1 ORDER BY device_id`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		var d Device
		if err := rows.Scan(&d.UserID, &d.DeviceID, &d.DisplayName, &d.LastSeenTS, &d.LastSeenIP); err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// GetDevice returns one device or ErrNotFound.
func (s *Store) GetDevice(ctx context.Context, userID, deviceID string) (*Device, error) {
	var d Device
	err := s.reader().QueryRowContext(ctx, `SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip FROM devices WHERE user_id = $1 AND device_id = $2`, userID, deviceID).
		Scan(&d.UserID, &d.DeviceID, &d.DisplayName, &d.LastSeenTS, &d.LastSeenIP)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &d, err
}

// RenameDevice sets a device's display name; ErrNotFound if it does not exist.
func (tx *Tx) RenameDevice(ctx context.Context, userID, deviceID, name string) error {
	res, err := tx.q.ExecContext(ctx, `UPDATE devices SET display_name = $1 WHERE user_id = $2 AND device_id = $3`, name, userID, deviceID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// TouchDevice records when and from where a device was last seen.
func (s *Store) TouchDevice(ctx context.Context, userID, deviceID, ip string, ts int64) error {
	_, err := s.writer().ExecContext(ctx, `UPDATE devices SET last_seen_ts = $1, last_seen_ip = $2 WHERE user_id = $3 AND device_id = $4`, ts, ip, userID, deviceID)
	return err
}

// DeleteDevice removes a device and every token of it.
func (tx *Tx) DeleteDevice(ctx context.Context, userID, deviceID string) error {
	for _, q := range []string{
		`DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM oauth_sessions WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM devices WHERE user_id = $1 AND device_id = $2`,
	} {
		if _, err := tx.q.ExecContext(ctx, q, userID, deviceID); err != nil {
			return fmt.Errorf("delete device: %w", err)
		}
	}
	return nil
}

// DeleteAllDevices removes every device of a user except keep (may be "").
func (tx *Tx) DeleteAllDevices(ctx context.Context, userID, keep string) ([]string, error) {
	rows, err := tx.q.QueryContext(ctx, `SELECT device_id FROM devices WHERE user_id = $1 AND device_id <> $2`, userID, keep)
	if err != nil {
		return nil, err
	}
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, err
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		if err := tx.DeleteDevice(ctx, userID, id); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// Session is what an access token resolves to.
type Session struct {
	UserID      string
	DeviceID    string
	ExpiresTS   int64 // 0: never
	IsAdmin     bool
	Deactivated bool
	// PrevRefreshHash is the refresh token this access token replaced, set
	// until the access token is first used (see ForgetPrevRefresh).
	PrevRefreshHash string
}

// InsertAccessToken stores a token hash for a device.
func (tx *Tx) InsertAccessToken(ctx context.Context, hash, userID, deviceID string, expiresTS int64) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts) VALUES ($1, $2, $3, $4, $5)`,
		hash, userID, deviceID, now(), expiresTS)
	return err
}

// InsertRefreshToken stores a refresh token hash for a device.
func (tx *Tx) InsertRefreshToken(ctx context.Context, hash, userID, deviceID string) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts) VALUES ($1, $2, $3, $4)`,
		hash, userID, deviceID, now())
	return err
}

// LookupAccessToken resolves a token hash, or ErrNotFound.
func (s *Store) LookupAccessToken(ctx context.Context, hash string) (*Session, error) {
	var ss Session
	err := s.reader().QueryRowContext(ctx, `SELECT t.user_id, t.device_id, t.expires_ts, u.is_admin, u.deactivated, COALESCE(t.prev_refresh_hash, '')
		FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = $1`, hash).
		Scan(&ss.UserID, &ss.DeviceID, &ss.ExpiresTS, &ss.IsAdmin, &ss.Deactivated, &ss.PrevRefreshHash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &ss, err
}

// AccessTokenSessions resolves many token hashes at once (those not found
// are missing from the map), 500 to a statement: the token cache
// re-checks the tokens in use this way, one statement instead of one per
// token.
func (s *Store) AccessTokenSessions(ctx context.Context, hashes []string) (map[string]Session, error) {
	out := make(map[string]Session, len(hashes))
	for len(hashes) > 0 {
		n := min(len(hashes), 500)
		// Lists padded to three sizes (repeating a hash changes nothing),
		// so that the statement cache keeps three texts, not 500.
		list := hashes[:n]
		for _, size := range []int{16, 128, 500} {
			if n <= size {
				list = append(slices.Clip(list), slices.Repeat([]string{list[0]}, size-n)...)
				break
			}
		}
		q, args := inList(`SELECT t.token_hash, t.user_id, t.device_id, t.expires_ts, u.is_admin, u.deactivated, COALESCE(t.prev_refresh_hash, '')
			FROM access_tokens t JOIN users u ON u.user_id = t.user_id WHERE t.token_hash IN (`, list, `)`)
		rows, err := s.reader().QueryContext(ctx, q, args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var h string
			var ss Session
			if err := rows.Scan(&h, &ss.UserID, &ss.DeviceID, &ss.ExpiresTS, &ss.IsAdmin, &ss.Deactivated, &ss.PrevRefreshHash); err != nil {
				rows.Close()
				return nil, err
			}
			out[h] = ss
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		hashes = hashes[n:]
	}
	return out, nil
}

// TakeRefreshToken deletes a refresh token and returns its session, so that
// each refresh token is used once; ErrNotFound when unknown.
func (tx *Tx) TakeRefreshToken(ctx context.Context, hash string) (*Session, error) {
	var ss Session
	err := tx.q.QueryRowContext(ctx, `DELETE FROM refresh_tokens WHERE token_hash = $1 RETURNING user_id, device_id`, hash).Scan(&ss.UserID, &ss.DeviceID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &ss, err
}

// DeleteDeviceTokens removes the access and refresh tokens of one device.
func (tx *Tx) DeleteDeviceTokens(ctx context.Context, userID, deviceID string) error {
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2`, userID, deviceID); err != nil {
		return err
	}
	_, err := tx.q.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2`, userID, deviceID)
	return err
}

// DeleteAccessToken removes one access token.
func (tx *Tx) DeleteAccessToken(ctx context.Context, hash string) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM access_tokens WHERE token_hash = $1`, hash)
	return err
}

// DeleteUserTokens removes every token of a user except those of keepDevice.
func (tx *Tx) DeleteUserTokens(ctx context.Context, userID, keepDevice string) error {
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM access_tokens WHERE user_id = $1 AND device_id <> $2`, userID, keepDevice); err != nil {
		return err
	}
	_, err := tx.q.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id <> $2`, userID, keepDevice)
	return err
}

// RegistrationToken is a row of registration_tokens.
type RegistrationToken struct {
	Token       string
	UsesAllowed sql.NullInt64
	Pending     int64
	Completed   int64
	ExpiryTS    sql.NullInt64
}

// CreateRegistrationToken stores a new token; ErrExists if taken.
func (tx *Tx) CreateRegistrationToken(ctx context.Context, t RegistrationToken) error {
	res, err := tx.q.ExecContext(ctx, `INSERT INTO registration_tokens (token, uses_allowed, expiry_ts, created_ts) VALUES ($1, $2, $3, $4) ON CONFLICT (token) DO NOTHING`,
		t.Token, t.UsesAllowed, t.ExpiryTS, now())
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

// RegistrationTokens lists every token.
func (s *Store) RegistrationTokens(ctx context.Context) ([]RegistrationToken, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT token, uses_allowed, pending, completed, expiry_ts FROM registration_tokens ORDER BY created_ts`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []RegistrationToken
	for rows.Next() {
		var t RegistrationToken
		if err := rows.Scan(&t.Token, &t.UsesAllowed, &t.Pending, &t.Completed, &t.ExpiryTS); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// GetRegistrationToken returns one token or ErrNotFound.
func (s *Store) GetRegistrationToken(ctx context.Context, token string) (*RegistrationToken, error) {
	var t RegistrationToken
	err := s.reader().QueryRowContext(ctx, `SELECT token, uses_allowed, pending, completed, expiry_ts FROM registration_tokens WHERE token = $1`, token).
		Scan(&t.Token, &t.UsesAllowed, &t.Pending, &t.Completed, &t.ExpiryTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &t, err
}

// UseRegistrationToken counts one completed registration with the token,
// failing with ErrNotFound when it is unknown, expired or used up.
func (tx *Tx) UseRegistrationToken(ctx context.Context, token string, nowTS int64) error {
	res, err := tx.q.ExecContext(ctx, `UPDATE registration_tokens SET completed = completed + 1
		WHERE token = $1 AND (uses_allowed IS NULL OR completed < uses_allowed) AND (expiry_ts IS NULL OR expiry_ts > $2)`, token, nowTS)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// DeleteRegistrationToken revokes a token; ErrNotFound when unknown.
func (tx *Tx) DeleteRegistrationToken(ctx context.Context, token string) error {
	res, err := tx.q.ExecContext(ctx, `DELETE FROM registration_tokens WHERE token = $1`, token)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// UIASession is a user-interactive auth session.
type UIASession struct {
	ID        string
	UserID    string
	Completed string // JSON array of completed stage types
	Params    string // JSON: the request that started it
	CreatedTS int64
}

// PutUIASession creates or updates a session (its creation time stays).
func (s *Store) PutUIASession(ctx context.Context, u UIASession) error {
	_, err := s.writer().ExecContext(ctx, `INSERT INTO uia_sessions (session_id, user_id, completed, params, created_ts) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (session_id) DO UPDATE SET user_id = excluded.user_id, completed = excluded.completed, params = excluded.params`, u.ID, u.UserID, u.Completed, u.Params, u.CreatedTS)
	return err
}

// GetUIASession returns a session or ErrNotFound.
func (s *Store) GetUIASession(ctx context.Context, id string) (*UIASession, error) {
	var u UIASession
	err := s.writer().QueryRowContext(ctx, `SELECT session_id, user_id, completed, params, created_ts FROM uia_sessions WHERE session_id = $1`, id).
		Scan(&u.ID, &u.UserID, &u.Completed, &u.Params, &u.CreatedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &u, err
}

// DeleteUIASession removes a finished session and those older than cutoff.
func (s *Store) DeleteUIASession(ctx context.Context, id string, cutoffTS int64) error {
	_, err := s.writer().ExecContext(ctx, `DELETE FROM uia_sessions WHERE session_id = $1 OR created_ts < $2`, id, cutoffTS)
	return err
}

// PutNonce stores a shared-secret registration nonce.
func (s *Store) PutNonce(ctx context.Context, nonce string) error {
	_, err := s.writer().ExecContext(ctx, `INSERT INTO admin_nonces (nonce, created_ts) VALUES ($1, $2)`, nonce, now())
	return err
}

// TakeNonce consumes a nonce younger than cutoffTS; ErrNotFound otherwise.
func (tx *Tx) TakeNonce(ctx context.Context, nonce string, cutoffTS int64) error {
	res, err := tx.q.ExecContext(ctx, `DELETE FROM admin_nonces WHERE nonce = $1 AND created_ts >= $2`, nonce, cutoffTS)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// PutFilter stores a filter and returns its id (per user, increasing).
func (tx *Tx) PutFilter(ctx context.Context, userID, filterJSON string) (int64, error) {
	var id int64
	err := tx.q.QueryRowContext(ctx, `INSERT INTO filters (user_id, filter_id, filter_json)
		SELECT $1, COALESCE(MAX(filter_id), -1) + 1, $2 FROM filters WHERE user_id = $3 RETURNING filter_id`, userID, filterJSON, userID).Scan(&id)
	return id, err
}

// GetFilter returns a stored filter or ErrNotFound.
func (s *Store) GetFilter(ctx context.Context, userID string, id int64) (string, error) {
	var f string
	err := s.reader().QueryRowContext(ctx, `SELECT filter_json FROM filters WHERE user_id = $1 AND filter_id = $2`, userID, id).Scan(&f)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return f, err
}

// GetUser is Store.GetUser inside a write transaction.
func (tx *Tx) GetUser(ctx context.Context, userID string) (*User, error) {
	return scanUser(tx.q.QueryRowContext(ctx, `SELECT `+userCols+` FROM users WHERE user_id = $1`, userID))
}

// GetDevice is Store.GetDevice inside a write transaction.
func (tx *Tx) GetDevice(ctx context.Context, userID, deviceID string) (*Device, error) {
	var d Device
	err := tx.q.QueryRowContext(ctx, `SELECT user_id, device_id, display_name, last_seen_ts, last_seen_ip FROM devices WHERE user_id = $1 AND device_id = $2`, userID, deviceID).
		Scan(&d.UserID, &d.DeviceID, &d.DisplayName, &d.LastSeenTS, &d.LastSeenIP)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &d, err
}

// SetDisplayName sets a user's display name (NULL clears); ErrNotFound when
// the user does not exist.
func (tx *Tx) SetDisplayName(ctx context.Context, userID string, name sql.NullString) error {
	res, err := tx.q.ExecContext(ctx, `UPDATE users SET displayname = $1 WHERE user_id = $2`, name, userID)
	return affectedOne(res, err)
}

// SetAvatarURL sets a user's avatar URL (NULL clears); ErrNotFound when the
// user does not exist.
func (tx *Tx) SetAvatarURL(ctx context.Context, userID string, url sql.NullString) error {
	res, err := tx.q.ExecContext(ctx, `UPDATE users SET avatar_url = $1 WHERE user_id = $2`, url, userID)
	return affectedOne(res, err)
}

func affectedOne(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// ReplacePasswordHash swaps a user's hash for a new one only while it is
// still old, so that a password change made meanwhile is not overwritten.
func (s *Store) ReplacePasswordHash(ctx context.Context, userID, oldHash, newHash string) error {
	_, err := s.writer().ExecContext(ctx, `UPDATE users SET password_hash = $1 WHERE user_id = $2 AND password_hash = $3`, newHash, userID, oldHash)
	return err
}

// DeviceKey names one of a user's devices.
type DeviceKey struct{ UserID, DeviceID string }

// TouchDevicesSeen records when devices were last seen (unix ms), keeping
// their addresses; a later time stored meanwhile is kept. All in one
// transaction, one statement per 500 devices on PostgreSQL: the accounts
// service gathers the devices its tokens served and writes them every half
// minute, rather than a write transaction with the first request of each
// new session.
func (s *Store) TouchDevicesSeen(ctx context.Context, seen map[DeviceKey]int64) error {
	if len(seen) == 0 {
		return nil
	}
	return s.InTx(ctx, func(tx *Tx) error {
		if s.Engine == Postgres {
			rows := make([][]any, 0, len(seen))
			for k, ts := range seen {
				rows = append(rows, []any{k.UserID, k.DeviceID, ts})
			}
			return tx.updateFromValues(ctx, `UPDATE devices SET last_seen_ts = v.column3 FROM (VALUES `, []string{"TEXT", "TEXT", "BIGINT"},
				`) AS v WHERE devices.user_id = v.column1 AND devices.device_id = v.column2 AND COALESCE(devices.last_seen_ts, 0) < v.column3`, rows)
		}
		for k, ts := range seen {
			if _, err := tx.q.ExecContext(ctx, `UPDATE devices SET last_seen_ts = $1 WHERE user_id = $2 AND device_id = $3 AND COALESCE(last_seen_ts, 0) < $1`,
				ts, k.UserID, k.DeviceID); err != nil {
				return err
			}
		}
		return nil
	})
}

// InsertTokenPair stores an access token together with the refresh token
// issued with it. prevRefresh is the refresh token the pair replaces ("" at
// login): it stays usable until either new token is used. clientID is the
// OAuth 2.0 client the refresh token is bound to ("" for the legacy API's
// POST /refresh).
func (tx *Tx) InsertTokenPair(ctx context.Context, accessHash, refreshHash, userID, deviceID string, expiresTS int64, prevRefresh, clientID string) error {
	prev := sql.NullString{String: prevRefresh, Valid: prevRefresh != ""}
	client := sql.NullString{String: clientID, Valid: clientID != ""}
	if _, err := tx.q.ExecContext(ctx, `INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts, refresh_hash, prev_refresh_hash)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, accessHash, userID, deviceID, now(), expiresTS, refreshHash, prev); err != nil {
		return fmt.Errorf("insert access token: %w", err)
	}
	if _, err := tx.q.ExecContext(ctx, `INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts, prev_hash, client_id) VALUES ($1, $2, $3, $4, $5, $6)`,
		refreshHash, userID, deviceID, now(), prev, client); err != nil {
		return fmt.Errorf("insert refresh token: %w", err)
	}
	return nil
}

// RefreshToken is a refresh_tokens row.
type RefreshToken struct {
	UserID   string
	DeviceID string
	PrevHash string // the refresh token this one replaced, until this one is used
	NextHash string // the refresh token issued when this one was last used
}

// RotateRefreshToken uses the refresh token oldHash: it revokes the token
// oldHash replaced, any pair issued by an earlier use of oldHash (its
// response was lost, or the client would not retry), and the access token
// issued with oldHash; then it stores the new pair. oldHash itself stays until
// the new pair is used. ErrNotFound when oldHash is unknown or bound to
// another client: clientID is the OAuth 2.0 client, "" for the legacy
// API, and each takes only its own tokens.
func (tx *Tx) RotateRefreshToken(ctx context.Context, oldHash, clientID, accessHash, refreshHash string, expiresTS int64) (*RefreshToken, error) {
	var rt RefreshToken
	// A no-op UPDATE reads the row and locks it on PostgreSQL, so that two
	// concurrent uses of one token are serialised (SQLite has one writer).
	err := tx.q.QueryRowContext(ctx, `UPDATE refresh_tokens SET created_ts = created_ts WHERE token_hash = $1 AND COALESCE(client_id, '') = $2
		RETURNING user_id, device_id, COALESCE(prev_hash, ''), COALESCE(next_hash, '')`, oldHash, clientID).
		Scan(&rt.UserID, &rt.DeviceID, &rt.PrevHash, &rt.NextHash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read refresh token: %w", err)
	}
	var stmts [][2]string // query, argument
	if rt.PrevHash != "" {
		stmts = append(stmts, [2]string{`DELETE FROM refresh_tokens WHERE token_hash = $1`, rt.PrevHash})
	}
	if rt.NextHash != "" {
		stmts = append(stmts,
			[2]string{`DELETE FROM access_tokens WHERE refresh_hash = $1`, rt.NextHash},
			[2]string{`DELETE FROM refresh_tokens WHERE token_hash = $1`, rt.NextHash})
	}
	stmts = append(stmts, [2]string{`DELETE FROM access_tokens WHERE refresh_hash = $1`, oldHash})
	for _, st := range stmts {
		if _, err := tx.q.ExecContext(ctx, st[0], st[1]); err != nil {
			return nil, fmt.Errorf("revoke superseded tokens: %w", err)
		}
	}
	if _, err := tx.q.ExecContext(ctx, `UPDATE refresh_tokens SET prev_hash = NULL, next_hash = $1 WHERE token_hash = $2`, refreshHash, oldHash); err != nil {
		return nil, fmt.Errorf("link refresh token: %w", err)
	}
	if err := tx.InsertTokenPair(ctx, accessHash, refreshHash, rt.UserID, rt.DeviceID, expiresTS, oldHash, clientID); err != nil {
		return nil, err
	}
	return &rt, nil
}

// ForgetPrevRefresh is called on the first use of an access token issued by
// a refresh: the refresh token it replaced is revoked.
func (s *Store) ForgetPrevRefresh(ctx context.Context, accessHash, prevRefresh string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, `DELETE FROM refresh_tokens WHERE token_hash = $1`, prevRefresh); err != nil {
			return err
		}
		_, err := tx.q.ExecContext(ctx, `UPDATE access_tokens SET prev_refresh_hash = NULL WHERE token_hash = $1`, accessHash)
		return err
	})
}

// DeleteStaleNonces removes shared-secret nonces created before cutoffTS.
func (s *Store) DeleteStaleNonces(ctx context.Context, cutoffTS int64) error {
	_, err := s.writer().ExecContext(ctx, `DELETE FROM admin_nonces WHERE created_ts < $1`, cutoffTS)
	return err
}
