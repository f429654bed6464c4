package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Webhook is an incoming webhook (package webhooks).
type Webhook struct {
	ID         string
	RoomID     string
	Name       string
	SecretHash string // hex SHA-256 of the URL's secret
	CreatedBy  string
	CreatedTS  int64
	RotatedTS  int64
	RevokedTS  sql.NullInt64 // set: revoked
}

const webhookCols = `hook_id, room_id, name, secret_hash, created_by, created_ts, rotated_ts, revoked_ts`

func scanWebhook(row interface{ Scan(...any) error }) (*Webhook, error) {
	var w Webhook
	if err := row.Scan(&w.ID, &w.RoomID, &w.Name, &w.SecretHash, &w.CreatedBy, &w.CreatedTS, &w.RotatedTS, &w.RevokedTS); err != nil {
		return nil, err
	}
	return &w, nil
}

// CreateWebhook stores a new hook; ErrExists when its id is taken.
func (s *Store) CreateWebhook(ctx context.Context, w Webhook) error {
	res, err := s.writer().ExecContext(ctx, `INSERT INTO webhooks (`+webhookCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)
		ON CONFLICT (hook_id) DO NOTHING`, w.ID, w.RoomID, w.Name, w.SecretHash, w.CreatedBy, w.CreatedTS, w.RotatedTS)
	if err != nil {
		return fmt.Errorf("create webhook: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrExists
	}
	return nil
}

// Webhook returns a hook, revoked or not, or ErrNotFound.
func (s *Store) Webhook(ctx context.Context, id string) (*Webhook, error) {
	w, err := scanWebhook(s.reader().QueryRowContext(ctx, `SELECT `+webhookCols+` FROM webhooks WHERE hook_id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get webhook: %w", err)
	}
	return w, nil
}

// Webhooks returns every hook, oldest first.
func (s *Store) Webhooks(ctx context.Context) ([]Webhook, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT `+webhookCols+` FROM webhooks ORDER BY created_ts, hook_id`)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	defer rows.Close()
	var out []Webhook
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, fmt.Errorf("list webhooks: %w", err)
		}
		out = append(out, *w)
	}
	return out, rows.Err()
}

// RotateWebhook replaces the secret hash of a hook that is not revoked;
// ErrNotFound otherwise.
func (s *Store) RotateWebhook(ctx context.Context, id, secretHash string) error {
	res, err := s.writer().ExecContext(ctx, `UPDATE webhooks SET secret_hash = $1, rotated_ts = $2 WHERE hook_id = $3 AND revoked_ts IS NULL`, secretHash, now(), id)
	if err != nil {
		return fmt.Errorf("rotate webhook: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// RevokeWebhook revokes a hook and forgets its alerts' messages;
// ErrNotFound when there is no such hook or it is revoked already.
func (s *Store) RevokeWebhook(ctx context.Context, id string) error {
	return s.InTx(ctx, func(tx *Tx) error {
		res, err := tx.q.ExecContext(ctx, `UPDATE webhooks SET revoked_ts = $1, secret_hash = '' WHERE hook_id = $2 AND revoked_ts IS NULL`, now(), id)
		if err != nil {
			return fmt.Errorf("revoke webhook: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		if _, err := tx.q.ExecContext(ctx, `DELETE FROM webhook_alerts WHERE hook_id = $1`, id); err != nil {
			return fmt.Errorf("revoke webhook: %w", err)
		}
		return nil
	})
}

// WebhookAlert is the message an alert of a hook became.
type WebhookAlert struct {
	HookID    string
	AlertKey  string
	GroupKey  string
	EventID   string
	Status    string // firing | resolved
	Digest    string
	UpdatedTS int64
}

// WebhookAlerts returns the recorded messages of a hook's alerts, by key.
func (s *Store) WebhookAlerts(ctx context.Context, hookID string, keys []string) (map[string]WebhookAlert, error) {
	out := make(map[string]WebhookAlert, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	// One query per key: a notification carries a handful of alerts, and
	// each is a primary key look-up.
	for _, k := range keys {
		var a WebhookAlert
		err := s.reader().QueryRowContext(ctx, `SELECT hook_id, alert_key, group_key, event_id, status, digest, updated_ts FROM webhook_alerts
			WHERE hook_id = $1 AND alert_key = $2`, hookID, k).Scan(&a.HookID, &a.AlertKey, &a.GroupKey, &a.EventID, &a.Status, &a.Digest, &a.UpdatedTS)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("get webhook alert: %w", err)
		}
		out[k] = a
	}
	return out, nil
}

// PutWebhookAlert records (or replaces) the message of an alert.
func (s *Store) PutWebhookAlert(ctx context.Context, a WebhookAlert) error {
	_, err := s.writer().ExecContext(ctx, `INSERT INTO webhook_alerts (hook_id, alert_key, group_key, event_id, status, digest, updated_ts)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (hook_id, alert_key) DO UPDATE SET group_key = excluded.group_key, event_id = excluded.event_id,
			status = excluded.status, digest = excluded.digest, updated_ts = excluded.updated_ts`,
		a.HookID, a.AlertKey, a.GroupKey, a.EventID, a.Status, a.Digest, a.UpdatedTS)
	if err != nil {
		return fmt.Errorf("put webhook alert: %w", err)
	}
	return nil
}

// PruneWebhookAlerts forgets a hook's resolved alerts last changed before
// olderThan (ms): a later notification of one is then a new message.
func (s *Store) PruneWebhookAlerts(ctx context.Context, hookID string, olderThan int64) error {
	_, err := s.writer().ExecContext(ctx, `DELETE FROM webhook_alerts WHERE hook_id = $1 AND status = 'resolved' AND updated_ts < $2`, hookID, olderThan)
	if err != nil {
		return fmt.Errorf("prune webhook alerts: %w", err)
	}
	return nil
}
