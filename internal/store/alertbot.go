package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// AlertBotKeyPrefix names the alert bot's wrapped data keys among the
// wrapped file keys of media (WrappedKey.Blob): a wrapped key is bound to
// this name, which no media blob has.
const AlertBotKeyPrefix = "alertbot/"

// AlertBotValue is one row of the alert bot's sealed state.
type AlertBotValue struct {
	Kind, Name string
	Value      string
	KeyID      string // the media master key wrapping it ("" for sealed values)
}

// AlertBotGet returns the alert bot's value of a kind and name, or
// ErrNotFound.
func (s *Store) AlertBotGet(ctx context.Context, kind, name string) (AlertBotValue, error) {
	v := AlertBotValue{Kind: kind, Name: name}
	err := s.writer().QueryRowContext(ctx, `SELECT value, key_id FROM alertbot_state WHERE kind = $1 AND name = $2`, kind, name).Scan(&v.Value, &v.KeyID)
	if errors.Is(err, sql.ErrNoRows) {
		return v, ErrNotFound
	}
	if err != nil {
		return v, fmt.Errorf("read alert bot state: %w", err)
	}
	return v, nil
}

// AlertBotList returns the alert bot's values of a kind.
func (s *Store) AlertBotList(ctx context.Context, kind string) ([]AlertBotValue, error) {
	rows, err := s.writer().QueryContext(ctx, `SELECT name, value, key_id FROM alertbot_state WHERE kind = $1`, kind)
	if err != nil {
		return nil, fmt.Errorf("list alert bot state: %w", err)
	}
	defer rows.Close()
	var out []AlertBotValue
	for rows.Next() {
		v := AlertBotValue{Kind: kind}
		if err := rows.Scan(&v.Name, &v.Value, &v.KeyID); err != nil {
			return nil, fmt.Errorf("list alert bot state: %w", err)
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// AlertBotPut stores the alert bot's values, all or none.
func (s *Store) AlertBotPut(ctx context.Context, values ...AlertBotValue) error {
	return s.InTx(ctx, func(tx *Tx) error {
		for _, v := range values {
			_, err := tx.q.ExecContext(ctx, `INSERT INTO alertbot_state (kind, name, value, key_id) VALUES ($1, $2, $3, $4)
				ON CONFLICT (kind, name) DO UPDATE SET value = excluded.value, key_id = excluded.key_id`, v.Kind, v.Name, v.Value, v.KeyID)
			if err != nil {
				return fmt.Errorf("write alert bot state: %w", err)
			}
		}
		return nil
	})
}

// AlertBotInsert stores a value unless its kind and name are taken, and
// returns the value stored there (two first starts keep one data key).
func (s *Store) AlertBotInsert(ctx context.Context, v AlertBotValue) (AlertBotValue, error) {
	_, err := s.writer().ExecContext(ctx, `INSERT INTO alertbot_state (kind, name, value, key_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (kind, name) DO NOTHING`, v.Kind, v.Name, v.Value, v.KeyID)
	if err != nil {
		return AlertBotValue{}, fmt.Errorf("write alert bot state: %w", err)
	}
	return s.AlertBotGet(ctx, v.Kind, v.Name)
}
