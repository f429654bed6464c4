package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ServerKey is a cached verify key of another server.
type ServerKey struct {
	ServerName   string
	KeyID        string
	PublicKey    string // unpadded base64
	ValidUntilTS int64
	ExpiredTS    int64 // > 0: an old key, valid for timestamps before it
	FetchedTS    int64
}

// ServerKeyResponse is a server's self-signed key response as received.
type ServerKeyResponse struct {
	ServerName   string
	ValidUntilTS int64
	FetchedTS    int64
	Response     []byte
}

// ServerKey returns one cached key of a server, or ErrNotFound.
func (s *Store) ServerKey(ctx context.Context, serverName, keyID string) (*ServerKey, error) {
	k := ServerKey{ServerName: serverName, KeyID: keyID}
	err := s.reader().QueryRowContext(ctx, `SELECT public_key, valid_until_ts, expired_ts, fetched_ts
		FROM federation_keys WHERE server_name = $1 AND key_id = $2`, serverName, keyID).
		Scan(&k.PublicKey, &k.ValidUntilTS, &k.ExpiredTS, &k.FetchedTS)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read server key: %w", err)
	}
	return &k, nil
}

// SaveServerKeys stores a verified key response of serverName with the
// keys it lists, in one transaction. A response older than the one stored
// (smaller valid_until_ts) leaves the stored response in place but still
// records keys not seen before. An old key's expired_ts, once known, is
// kept.
func (s *Store) SaveServerKeys(ctx context.Context, resp ServerKeyResponse, keys []ServerKey) error {
	return s.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.q.ExecContext(ctx, `INSERT INTO federation_key_responses (server_name, valid_until_ts, fetched_ts, response)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (server_name) DO UPDATE SET valid_until_ts = excluded.valid_until_ts,
				fetched_ts = excluded.fetched_ts, response = excluded.response
			WHERE federation_key_responses.valid_until_ts <= excluded.valid_until_ts`,
			resp.ServerName, resp.ValidUntilTS, resp.FetchedTS, string(resp.Response)); err != nil {
			return fmt.Errorf("save key response: %w", err)
		}
		for _, k := range keys {
			if _, err := tx.q.ExecContext(ctx, `INSERT INTO federation_keys (server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_ts)
				VALUES ($1, $2, $3, $4, $5, $6)
				ON CONFLICT (server_name, key_id) DO UPDATE SET
					valid_until_ts = CASE WHEN excluded.valid_until_ts > federation_keys.valid_until_ts
						THEN excluded.valid_until_ts ELSE federation_keys.valid_until_ts END,
					expired_ts = CASE WHEN federation_keys.expired_ts > 0 THEN federation_keys.expired_ts
						ELSE excluded.expired_ts END,
					fetched_ts = excluded.fetched_ts
				WHERE federation_keys.public_key = excluded.public_key`,
				k.ServerName, k.KeyID, k.PublicKey, k.ValidUntilTS, k.ExpiredTS, k.FetchedTS); err != nil {
				return fmt.Errorf("save server key: %w", err)
			}
		}
		return nil
	})
}

// ServerKeyResponse returns the newest stored key response of a server,
// or ErrNotFound.
func (s *Store) ServerKeyResponse(ctx context.Context, serverName string) (*ServerKeyResponse, error) {
	r := ServerKeyResponse{ServerName: serverName}
	var text string
	err := s.reader().QueryRowContext(ctx, `SELECT valid_until_ts, fetched_ts, response
		FROM federation_key_responses WHERE server_name = $1`, serverName).Scan(&r.ValidUntilTS, &r.FetchedTS, &text)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read key response: %w", err)
	}
	r.Response = []byte(text)
	return &r, nil
}
