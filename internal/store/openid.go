package store

import (
	"context"
	"database/sql"
	"errors"
)

// PutOpenIDToken stores an OpenID token's hash and forgets expired ones.
func (s *Store) PutOpenIDToken(ctx context.Context, tokenHash, userID string, expiresTS, nowTS int64) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, `DELETE FROM openid_tokens WHERE expires_ts < $1`, nowTS); err != nil {
			return err
		}
		_, err := tx.q.ExecContext(ctx, `INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)`, tokenHash, userID, expiresTS)
		return err
	})
}

// OpenIDTokenUser returns the user of an unexpired OpenID token, or
// ErrNotFound.
func (s *Store) OpenIDTokenUser(ctx context.Context, tokenHash string, nowTS int64) (string, error) {
	var u string
	err := s.reader().QueryRowContext(ctx, `SELECT user_id FROM openid_tokens WHERE token_hash = $1 AND expires_ts >= $2`, tokenHash, nowTS).Scan(&u)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return u, err
}
