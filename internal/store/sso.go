package store

import (
	"context"
	"database/sql"
	"errors"
)

// SSOLinkUser returns the user a provider's subject is linked to, or
// ErrNotFound.
func (s *Store) SSOLinkUser(ctx context.Context, providerID, subject string) (string, error) {
	var u string
	err := s.reader().QueryRowContext(ctx, `SELECT user_id FROM sso_links WHERE provider_id = $1 AND subject = $2`, providerID, subject).Scan(&u)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return u, err
}

// UserHasSSOLink reports whether a user is linked to some subject of a
// provider.
func (s *Store) UserHasSSOLink(ctx context.Context, providerID, userID string) (bool, error) {
	var n int
	err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM sso_links WHERE provider_id = $1 AND user_id = $2`, providerID, userID).Scan(&n)
	return n > 0, err
}

// AddSSOLink links a provider's subject to a user; ErrExists when the
// subject is linked already (to anyone).
func (tx *Tx) AddSSOLink(ctx context.Context, providerID, subject, userID string, nowTS int64) error {
	res, err := tx.q.ExecContext(ctx, `INSERT INTO sso_links (provider_id, subject, user_id, created_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (provider_id, subject) DO NOTHING`, providerID, subject, userID, nowTS)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

// SSOFlow is an authorization request in flight (see sso_flows).
type SSOFlow struct {
	StateHash    string
	ProviderID   string
	BrowserHash  string
	Nonce        string
	CodeVerifier string
	Kind         string
	RedirectURL  string
	UIASession   string
	ExpiresTS    int64
}

// PutSSOFlow stores a flow and forgets expired ones.
func (s *Store) PutSSOFlow(ctx context.Context, f SSOFlow, nowTS int64) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, `DELETE FROM sso_flows WHERE expires_ts < $1`, nowTS); err != nil {
			return err
		}
		_, err := tx.q.ExecContext(ctx, `INSERT INTO sso_flows (state_hash, provider_id, browser_hash, nonce, code_verifier, kind, redirect_url, uia_session, expires_ts)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			f.StateHash, f.ProviderID, f.BrowserHash, f.Nonce, f.CodeVerifier, f.Kind, f.RedirectURL, f.UIASession, f.ExpiresTS)
		return err
	})
}

// TakeSSOFlow deletes and returns an unexpired flow: a state is good for
// one callback. ErrNotFound when unknown, used or expired.
func (s *Store) TakeSSOFlow(ctx context.Context, stateHash string, nowTS int64) (*SSOFlow, error) {
	var f SSOFlow
	err := s.InTx(ctx, func(tx *Tx) error {
		return tx.q.QueryRowContext(ctx, `DELETE FROM sso_flows WHERE state_hash = $1
			RETURNING state_hash, provider_id, browser_hash, nonce, code_verifier, kind, redirect_url, uia_session, expires_ts`, stateHash).
			Scan(&f.StateHash, &f.ProviderID, &f.BrowserHash, &f.Nonce, &f.CodeVerifier, &f.Kind, &f.RedirectURL, &f.UIASession, &f.ExpiresTS)
	})
	if errors.Is(err, sql.ErrNoRows) || (err == nil && f.ExpiresTS < nowTS) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &f, nil
}

// PutLoginToken stores a login token's hash and forgets expired ones.
func (s *Store) PutLoginToken(ctx context.Context, tokenHash, userID string, expiresTS, nowTS int64) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, `DELETE FROM login_tokens WHERE expires_ts < $1`, nowTS); err != nil {
			return err
		}
		_, err := tx.q.ExecContext(ctx, `INSERT INTO login_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)`, tokenHash, userID, expiresTS)
		return err
	})
}

// TakeLoginToken deletes a login token and returns its user when it had
// not expired: a token logs in once. ErrNotFound otherwise.
func (s *Store) TakeLoginToken(ctx context.Context, tokenHash string, nowTS int64) (string, error) {
	var userID string
	var expires int64
	err := s.InTx(ctx, func(tx *Tx) error {
		return tx.q.QueryRowContext(ctx, `DELETE FROM login_tokens WHERE token_hash = $1 RETURNING user_id, expires_ts`, tokenHash).Scan(&userID, &expires)
	})
	if errors.Is(err, sql.ErrNoRows) || (err == nil && expires < nowTS) {
		return "", ErrNotFound
	}
	return userID, err
}

// ThreePID is a third-party identifier of an account.
type ThreePID struct {
	Medium      string
	Address     string
	ValidatedTS int64
	AddedTS     int64
}

// AddThreePID records a validated third-party identifier of a user;
// ErrExists when the address belongs to an account already.
func (tx *Tx) AddThreePID(ctx context.Context, userID string, p ThreePID) error {
	res, err := tx.q.ExecContext(ctx, `INSERT INTO user_threepids (medium, address, user_id, validated_ts, added_ts) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (medium, address) DO NOTHING`, p.Medium, p.Address, userID, p.ValidatedTS, p.AddedTS)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

// ThreePIDs lists a user's third-party identifiers.
func (s *Store) ThreePIDs(ctx context.Context, userID string) ([]ThreePID, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT medium, address, validated_ts, added_ts FROM user_threepids WHERE user_id = $1 ORDER BY added_ts, address`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []ThreePID
	for rows.Next() {
		var p ThreePID
		if err := rows.Scan(&p.Medium, &p.Address, &p.ValidatedTS, &p.AddedTS); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}
