package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The OAuth 2.0 API's rows (migration 38): registered clients,
// authorization requests and device authorizations in flight, browser
// sessions of the server's own pages, and what a session was issued to.

// PutOAuthClient registers a client, or returns the client_id of the
// client registered earlier with the same metadata (metadataHash).
func (s *Store) PutOAuthClient(ctx context.Context, clientID, metadataHash, metadata string, nowTS int64) (string, error) {
	var id string
	err := s.InTx(ctx, func(tx *Tx) error {
		return tx.q.QueryRowContext(ctx, `INSERT INTO oauth_clients (client_id, metadata_hash, metadata, created_ts) VALUES ($1, $2, $3, $4)
			ON CONFLICT (metadata_hash) DO UPDATE SET metadata_hash = excluded.metadata_hash RETURNING client_id`,
			clientID, metadataHash, metadata, nowTS).Scan(&id)
	})
	return id, err
}

// OAuthClient returns a client's registered metadata (JSON), or
// ErrNotFound.
func (s *Store) OAuthClient(ctx context.Context, clientID string) (string, error) {
	var m string
	err := s.reader().QueryRowContext(ctx, `SELECT metadata FROM oauth_clients WHERE client_id = $1`, clientID).Scan(&m)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return m, err
}

// OAuthGrant is an oauth_grants row.
type OAuthGrant struct {
	GrantHash     string
	Kind          string // "code" or "device"
	ClientID      string
	RedirectURI   string
	ResponseMode  string
	State         string
	CodeChallenge string
	Scope         string
	DeviceID      string
	UserCode      string // device grants
	UserID        string // once approved
	Status        string // pending, approved, denied, used
	CodeHash      string // code grants, once approved
	PolledTS      int64
	ExpiresTS     int64
}

const oauthGrantColumns = `grant_hash, kind, client_id, redirect_uri, response_mode, state, code_challenge, scope, device_id,
	COALESCE(user_code, ''), COALESCE(user_id, ''), status, COALESCE(code_hash, ''), polled_ts, expires_ts`

func scanOAuthGrant(row interface{ Scan(...any) error }) (*OAuthGrant, error) {
	var g OAuthGrant
	err := row.Scan(&g.GrantHash, &g.Kind, &g.ClientID, &g.RedirectURI, &g.ResponseMode, &g.State, &g.CodeChallenge, &g.Scope, &g.DeviceID,
		&g.UserCode, &g.UserID, &g.Status, &g.CodeHash, &g.PolledTS, &g.ExpiresTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &g, nil
}

func nullable(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

// PutOAuthGrant stores a new grant and forgets expired ones. ErrExists
// when its user code is taken.
func (s *Store) PutOAuthGrant(ctx context.Context, g OAuthGrant, nowTS int64) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, `DELETE FROM oauth_grants WHERE expires_ts < $1`, nowTS); err != nil {
			return err
		}
		res, err := tx.q.ExecContext(ctx, `INSERT INTO oauth_grants (grant_hash, kind, client_id, redirect_uri, response_mode, state, code_challenge, scope, device_id,
			user_code, user_id, status, code_hash, polled_ts, expires_ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
			ON CONFLICT DO NOTHING`,
			g.GrantHash, g.Kind, g.ClientID, g.RedirectURI, g.ResponseMode, g.State, g.CodeChallenge, g.Scope, g.DeviceID,
			nullable(g.UserCode), nullable(g.UserID), g.Status, nullable(g.CodeHash), g.PolledTS, g.ExpiresTS)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrExists
		}
		return nil
	})
}

// OAuthGrant returns a grant by its hash, or ErrNotFound.
func (s *Store) OAuthGrant(ctx context.Context, grantHash string) (*OAuthGrant, error) {
	return scanOAuthGrant(s.reader().QueryRowContext(ctx, `SELECT `+oauthGrantColumns+` FROM oauth_grants WHERE grant_hash = $1`, grantHash))
}

// OAuthGrantByCode returns a grant by the hash of its authorization
// code, or ErrNotFound.
func (s *Store) OAuthGrantByCode(ctx context.Context, codeHash string) (*OAuthGrant, error) {
	return scanOAuthGrant(s.reader().QueryRowContext(ctx, `SELECT `+oauthGrantColumns+` FROM oauth_grants WHERE code_hash = $1`, codeHash))
}

// OAuthGrantByUserCode returns a device grant by its user code, or
// ErrNotFound.
func (s *Store) OAuthGrantByUserCode(ctx context.Context, userCode string) (*OAuthGrant, error) {
	return scanOAuthGrant(s.reader().QueryRowContext(ctx, `SELECT `+oauthGrantColumns+` FROM oauth_grants WHERE user_code = $1 AND kind = 'device'`, userCode))
}

// DecideOAuthGrant moves a pending grant to approved (for userID, with
// the code's hash for a code grant) or denied, and sets its new expiry.
// ErrNotFound when it is not pending any more (or unknown).
func (s *Store) DecideOAuthGrant(ctx context.Context, grantHash, status, userID, codeHash string, expiresTS int64) error {
	res, err := s.writer().ExecContext(ctx, `UPDATE oauth_grants SET status = $1, user_id = $2, code_hash = $3, expires_ts = $4
		WHERE grant_hash = $5 AND status = 'pending'`, status, nullable(userID), nullable(codeHash), expiresTS, grantHash)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// LockOAuthGrant reads a grant for a change in tx (by the hash of its
// key, or with byCode of its authorization code), locking its row on
// PostgreSQL so that two token requests for it are serialised. ErrNotFound
// when unknown.
func (tx *Tx) LockOAuthGrant(ctx context.Context, hash string, byCode bool) (*OAuthGrant, error) {
	col := "grant_hash"
	if byCode {
		col = "code_hash"
	}
	// A no-op UPDATE locks the row (SQLite has one writer anyway).
	return scanOAuthGrant(tx.q.QueryRowContext(ctx, `UPDATE oauth_grants SET polled_ts = polled_ts WHERE `+col+` = $1 RETURNING `+oauthGrantColumns, hash))
}

// SetOAuthGrant changes a grant's status, last poll time and expiry.
func (tx *Tx) SetOAuthGrant(ctx context.Context, grantHash, status string, polledTS, expiresTS int64) error {
	_, err := tx.q.ExecContext(ctx, `UPDATE oauth_grants SET status = $1, polled_ts = $2, expires_ts = $3 WHERE grant_hash = $4`, status, polledTS, expiresTS, grantHash)
	return err
}

// DeleteOAuthGrant forgets a grant.
func (tx *Tx) DeleteOAuthGrant(ctx context.Context, grantHash string) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM oauth_grants WHERE grant_hash = $1`, grantHash)
	return err
}

// PutOAuthSession records the client and scope of a device's OAuth
// session.
func (tx *Tx) PutOAuthSession(ctx context.Context, userID, deviceID, clientID, scope string, nowTS int64) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO oauth_sessions (user_id, device_id, client_id, scope, created_ts) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id, device_id) DO UPDATE SET client_id = excluded.client_id, scope = excluded.scope, created_ts = excluded.created_ts`,
		userID, deviceID, clientID, scope, nowTS)
	return err
}

// OAuthSessionClient is the client of a device's OAuth session.
type OAuthSessionClient struct {
	ClientID string
	Scope    string
	Metadata string // the client's registered metadata (JSON)
}

// OAuthSessions returns, per device of a user logged in through the OAuth
// 2.0 API, its client.
func (s *Store) OAuthSessions(ctx context.Context, userID string) (map[string]OAuthSessionClient, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT o.device_id, o.client_id, o.scope, COALESCE(c.metadata, '{}')
		FROM oauth_sessions o LEFT JOIN oauth_clients c ON c.client_id = o.client_id WHERE o.user_id = $1`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]OAuthSessionClient{}
	for rows.Next() {
		var d string
		var c OAuthSessionClient
		if err := rows.Scan(&d, &c.ClientID, &c.Scope, &c.Metadata); err != nil {
			return nil, err
		}
		out[d] = c
	}
	return out, rows.Err()
}

// OAuthSessionScope returns the scope of a device's OAuth session ("" when
// it has none).
func (tx *Tx) OAuthSessionScope(ctx context.Context, userID, deviceID string) (string, error) {
	var scope string
	err := tx.q.QueryRowContext(ctx, `SELECT scope FROM oauth_sessions WHERE user_id = $1 AND device_id = $2`, userID, deviceID).Scan(&scope)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return scope, err
}

// SpendOAuthRefresh remembers an OAuth refresh token as used, and
// forgets those used before cutoffTS.
func (tx *Tx) SpendOAuthRefresh(ctx context.Context, tokenHash, userID, deviceID string, nowTS, cutoffTS int64) error {
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM oauth_spent_refresh WHERE spent_ts < $1`, cutoffTS); err != nil {
		return err
	}
	_, err := tx.q.ExecContext(ctx, `INSERT INTO oauth_spent_refresh (token_hash, user_id, device_id, spent_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (token_hash) DO NOTHING`, tokenHash, userID, deviceID, nowTS)
	return err
}

// SpentOAuthRefresh returns the session of a refresh token used before,
// or ErrNotFound.
func (tx *Tx) SpentOAuthRefresh(ctx context.Context, tokenHash string) (userID, deviceID string, err error) {
	err = tx.q.QueryRowContext(ctx, `SELECT user_id, device_id FROM oauth_spent_refresh WHERE token_hash = $1`, tokenHash).Scan(&userID, &deviceID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", ErrNotFound
	}
	return userID, deviceID, err
}

// TokenDevice returns the device of an access or refresh token, or
// ErrNotFound.
func (s *Store) TokenDevice(ctx context.Context, hash string) (userID, deviceID string, err error) {
	for _, q := range []string{
		`SELECT user_id, device_id FROM access_tokens WHERE token_hash = $1`,
		`SELECT user_id, device_id FROM refresh_tokens WHERE token_hash = $1`,
	} {
		err = s.reader().QueryRowContext(ctx, q, hash).Scan(&userID, &deviceID)
		if err == nil {
			return userID, deviceID, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return "", "", fmt.Errorf("look up token: %w", err)
		}
	}
	return "", "", ErrNotFound
}

// PutOAuthBrowserSession stores a browser session and forgets expired
// ones.
func (s *Store) PutOAuthBrowserSession(ctx context.Context, sessionHash, userID string, expiresTS, nowTS int64) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, `DELETE FROM oauth_browser_sessions WHERE expires_ts < $1`, nowTS); err != nil {
			return err
		}
		_, err := tx.q.ExecContext(ctx, `INSERT INTO oauth_browser_sessions (session_hash, user_id, expires_ts) VALUES ($1, $2, $3)`, sessionHash, userID, expiresTS)
		return err
	})
}

// OAuthBrowserSession returns the user of an unexpired browser session of
// an active account, or ErrNotFound.
func (s *Store) OAuthBrowserSession(ctx context.Context, sessionHash string, nowTS int64) (string, error) {
	var u string
	err := s.reader().QueryRowContext(ctx, `SELECT b.user_id FROM oauth_browser_sessions b JOIN users u ON u.user_id = b.user_id
		WHERE b.session_hash = $1 AND b.expires_ts > $2 AND NOT u.deactivated`, sessionHash, nowTS).Scan(&u)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return u, err
}

// DeleteOAuthBrowserSession ends a browser session.
func (s *Store) DeleteOAuthBrowserSession(ctx context.Context, sessionHash string) error {
	_, err := s.writer().ExecContext(ctx, `DELETE FROM oauth_browser_sessions WHERE session_hash = $1`, sessionHash)
	return err
}
