package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The queries of end-to-end encryption (internal/e2ee): device, one-time,
// fallback and cross-signing keys, signatures, device list changes,
// to-device messages, key backups and dehydrated devices.

// DeviceKeys is a device_keys row. DisplayName comes from the devices table.
type DeviceKeys struct {
	UserID      string
	DeviceID    string
	KeyJSON     string
	Ed25519     string
	DisplayName sql.NullString
}

// PutDeviceKeys stores a device's identity keys. It reports whether they
// changed (false when the same keys were uploaded again).
func (tx *Tx) PutDeviceKeys(ctx context.Context, userID, deviceID, keyJSON, ed25519 string) (bool, error) {
	res, err := tx.q.ExecContext(ctx, `INSERT INTO device_keys (user_id, device_id, key_json, ed25519) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, device_id) DO UPDATE SET key_json = excluded.key_json, ed25519 = excluded.ed25519
		WHERE device_keys.key_json <> excluded.key_json`, userID, deviceID, keyJSON, ed25519)
	if err != nil {
		return false, fmt.Errorf("put device keys: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

func getDeviceKeys(ctx context.Context, q querier, userID, deviceID string) (*DeviceKeys, error) {
	k := DeviceKeys{UserID: userID, DeviceID: deviceID}
	err := q.QueryRowContext(ctx, `SELECT key_json, ed25519 FROM device_keys WHERE user_id = $1 AND device_id = $2`, userID, deviceID).Scan(&k.KeyJSON, &k.Ed25519)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get device keys: %w", err)
	}
	return &k, nil
}

// GetDeviceKeys returns a device's identity keys or ErrNotFound.
func (s *Store) GetDeviceKeys(ctx context.Context, userID, deviceID string) (*DeviceKeys, error) {
	return getDeviceKeys(ctx, s.reader(), userID, deviceID)
}

// GetDeviceKeys is Store.GetDeviceKeys inside a write transaction.
func (tx *Tx) GetDeviceKeys(ctx context.Context, userID, deviceID string) (*DeviceKeys, error) {
	return getDeviceKeys(ctx, tx.q, userID, deviceID)
}

// inChunk bounds the items of one generated IN list.
const inChunk = 500

// chunks splits items into slices of at most inChunk.
func chunks(items []string) [][]string {
	var out [][]string
	for len(items) > inChunk {
		out = append(out, items[:inChunk])
		items = items[inChunk:]
	}
	if len(items) > 0 {
		out = append(out, items)
	}
	return out
}

// QueryDeviceKeys returns the identity keys of every existing device of
// the users, with the devices' display names.
func (s *Store) QueryDeviceKeys(ctx context.Context, userIDs []string) ([]DeviceKeys, error) {
	var out []DeviceKeys
	for _, c := range chunks(userIDs) {
		q, args := inList(`SELECT k.user_id, k.device_id, k.key_json, k.ed25519, d.display_name FROM device_keys k
			JOIN devices d ON d.user_id = k.user_id AND d.device_id = k.device_id WHERE k.user_id IN (`, c, `)`)
		rows, err := s.reader().QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("query device keys: %w", err)
		}
		for rows.Next() {
			var k DeviceKeys
			if err := rows.Scan(&k.UserID, &k.DeviceID, &k.KeyJSON, &k.Ed25519, &k.DisplayName); err != nil {
				rows.Close()
				return nil, fmt.Errorf("scan device keys: %w", err)
			}
			out = append(out, k)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// AddOneTimeKey stores a one-time key unless the device already has a key
// with that algorithm and id, in which case it returns the stored key's
// JSON (and stores nothing).
func (tx *Tx) AddOneTimeKey(ctx context.Context, userID, deviceID, algorithm, keyID, keyJSON string) (existing string, err error) {
	res, err := tx.q.ExecContext(ctx, `INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, key_json) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (user_id, device_id, algorithm, key_id) DO NOTHING`, userID, deviceID, algorithm, keyID, keyJSON)
	if err != nil {
		return "", fmt.Errorf("add one-time key: %w", err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return "", nil
	}
	err = tx.q.QueryRowContext(ctx, `SELECT key_json FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 AND key_id = $4`,
		userID, deviceID, algorithm, keyID).Scan(&existing)
	if err != nil {
		return "", fmt.Errorf("read one-time key: %w", err)
	}
	return existing, nil
}

// maxClaimRetries bounds the retries of ClaimOneTimeKey; each retry means a
// concurrent claim took a key, so the loop ends when keys run out anyway.
const maxClaimRetries = 64

// ClaimOneTimeKey takes (deletes and returns) the device's oldest one-time
// key of an algorithm, or ErrNotFound when it has none. A key is returned
// by at most one claim: the DELETE … RETURNING either removes the row or
// finds it gone. On PostgreSQL a concurrent claim can make the DELETE find
// its chosen row deleted meanwhile; it then chooses again.
func (tx *Tx) ClaimOneTimeKey(ctx context.Context, userID, deviceID, algorithm string) (keyID, keyJSON string, err error) {
	for range maxClaimRetries {
		err = tx.q.QueryRowContext(ctx, `DELETE FROM one_time_keys WHERE id = (
			SELECT id FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 ORDER BY id LIMIT 1)
			RETURNING key_id, key_json`, userID, deviceID, algorithm).Scan(&keyID, &keyJSON)
		if err == nil {
			return keyID, keyJSON, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return "", "", fmt.Errorf("claim one-time key: %w", err)
		}
		var n int
		err = tx.q.QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM one_time_keys WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 LIMIT 1) AS k`,
			userID, deviceID, algorithm).Scan(&n)
		if err != nil {
			return "", "", fmt.Errorf("claim one-time key: %w", err)
		}
		if n == 0 {
			return "", "", ErrNotFound
		}
	}
	return "", "", ErrNotFound
}

// PutFallbackKey sets the device's fallback key of an algorithm. A new key
// is unused; uploading the current key again keeps its used flag.
func (tx *Tx) PutFallbackKey(ctx context.Context, userID, deviceID, algorithm, keyID, keyJSON string) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, key_json, used) VALUES ($1, $2, $3, $4, $5, FALSE)
		ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json, used = FALSE
		WHERE fallback_keys.key_id <> excluded.key_id OR fallback_keys.key_json <> excluded.key_json`, userID, deviceID, algorithm, keyID, keyJSON)
	if err != nil {
		return fmt.Errorf("put fallback key: %w", err)
	}
	return nil
}

// ClaimFallbackKey returns the device's fallback key of an algorithm and
// marks it used; ErrNotFound when it has none.
func (tx *Tx) ClaimFallbackKey(ctx context.Context, userID, deviceID, algorithm string) (keyID, keyJSON string, err error) {
	err = tx.q.QueryRowContext(ctx, `UPDATE fallback_keys SET used = TRUE WHERE user_id = $1 AND device_id = $2 AND algorithm = $3 RETURNING key_id, key_json`,
		userID, deviceID, algorithm).Scan(&keyID, &keyJSON)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", ErrNotFound
	}
	if err != nil {
		return "", "", fmt.Errorf("claim fallback key: %w", err)
	}
	return keyID, keyJSON, nil
}

// KeyCounts returns the number of unclaimed one-time keys per algorithm and
// the algorithms of unused fallback keys of a device, in one query (it runs
// with every sync).
func (s *Store) KeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, []string, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT algorithm, COUNT(*), 0 FROM one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm
		UNION ALL SELECT algorithm, 0, 1 FROM fallback_keys WHERE user_id = $3 AND device_id = $4 AND used = FALSE`, userID, deviceID, userID, deviceID)
	if err != nil {
		return nil, nil, fmt.Errorf("key counts: %w", err)
	}
	defer rows.Close()
	counts := map[string]int{}
	var fallback []string
	for rows.Next() {
		var alg string
		var n, fb int
		if err := rows.Scan(&alg, &n, &fb); err != nil {
			return nil, nil, fmt.Errorf("key counts: %w", err)
		}
		if fb == 1 {
			fallback = append(fallback, alg)
		} else {
			counts[alg] = n
		}
	}
	return counts, fallback, rows.Err()
}

// CrossSigningKey is a cross_signing_keys row.
type CrossSigningKey struct {
	UserID  string
	Type    string // master, self_signing, user_signing
	KeyID   string // "ed25519:<public key>"
	KeyJSON string
}

// CrossSigningKeys returns the cross-signing keys of the users.
func (s *Store) CrossSigningKeys(ctx context.Context, userIDs []string) ([]CrossSigningKey, error) {
	var out []CrossSigningKey
	for _, c := range chunks(userIDs) {
		q, args := inList(`SELECT user_id, key_type, key_id, key_json FROM cross_signing_keys WHERE user_id IN (`, c, `)`)
		ks, err := scanCrossSigningKeys(s.reader().QueryContext(ctx, q, args...))
		if err != nil {
			return nil, err
		}
		out = append(out, ks...)
	}
	return out, nil
}

// UserCrossSigningKeys returns a user's cross-signing keys by type.
func (tx *Tx) UserCrossSigningKeys(ctx context.Context, userID string) (map[string]CrossSigningKey, error) {
	ks, err := scanCrossSigningKeys(tx.q.QueryContext(ctx, `SELECT user_id, key_type, key_id, key_json FROM cross_signing_keys WHERE user_id = $1`, userID))
	if err != nil {
		return nil, err
	}
	out := make(map[string]CrossSigningKey, len(ks))
	for _, k := range ks {
		out[k.Type] = k
	}
	return out, nil
}

func scanCrossSigningKeys(rows *sql.Rows, err error) ([]CrossSigningKey, error) {
	if err != nil {
		return nil, fmt.Errorf("query cross-signing keys: %w", err)
	}
	defer rows.Close()
	var out []CrossSigningKey
	for rows.Next() {
		var k CrossSigningKey
		if err := rows.Scan(&k.UserID, &k.Type, &k.KeyID, &k.KeyJSON); err != nil {
			return nil, fmt.Errorf("scan cross-signing key: %w", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// PutCrossSigningKey stores (or replaces) a user's key of one type.
func (tx *Tx) PutCrossSigningKey(ctx context.Context, k CrossSigningKey) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO cross_signing_keys (user_id, key_type, key_id, key_json) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, key_type) DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json`, k.UserID, k.Type, k.KeyID, k.KeyJSON)
	if err != nil {
		return fmt.Errorf("put cross-signing key: %w", err)
	}
	return nil
}

// Signature is an e2e_signatures row.
type Signature struct {
	TargetUser string
	TargetKey  string // device id or master public key
	SignerUser string
	SignerKey  string // "ed25519:…"
	Signature  string
}

// PutSignature stores (or replaces) one signature.
func (tx *Tx) PutSignature(ctx context.Context, sig Signature) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO e2e_signatures (target_user, target_key, signer_user, signer_key, signature) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (target_user, target_key, signer_user, signer_key) DO UPDATE SET signature = excluded.signature`,
		sig.TargetUser, sig.TargetKey, sig.SignerUser, sig.SignerKey, sig.Signature)
	if err != nil {
		return fmt.Errorf("put signature: %w", err)
	}
	return nil
}

// Signatures returns the uploaded signatures on keys of the target users.
func (s *Store) Signatures(ctx context.Context, targetUsers []string) ([]Signature, error) {
	var out []Signature
	for _, c := range chunks(targetUsers) {
		q, args := inList(`SELECT target_user, target_key, signer_user, signer_key, signature FROM e2e_signatures WHERE target_user IN (`, c, `)`)
		rows, err := s.reader().QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("query signatures: %w", err)
		}
		for rows.Next() {
			var sg Signature
			if err := rows.Scan(&sg.TargetUser, &sg.TargetKey, &sg.SignerUser, &sg.SignerKey, &sg.Signature); err != nil {
				rows.Close()
				return nil, fmt.Errorf("scan signature: %w", err)
			}
			out = append(out, sg)
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// DeleteSignaturesBy removes the signatures a key made (it was replaced).
func (tx *Tx) DeleteSignaturesBy(ctx context.Context, signerUser, signerKey string) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM e2e_signatures WHERE signer_user = $1 AND signer_key = $2`, signerUser, signerKey)
	return err
}

// DeleteSignaturesOn removes the signatures on a key (it was replaced).
func (tx *Tx) DeleteSignaturesOn(ctx context.Context, targetUser, targetKey string) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM e2e_signatures WHERE target_user = $1 AND target_key = $2`, targetUser, targetKey)
	return err
}

// DeleteDeviceE2EE removes every end-to-end encryption row of a deleted
// device: its keys, the signatures on and by it, its pending to-device
// messages and transaction ids. It reports whether the device had identity
// keys (whether others knew it).
func (tx *Tx) DeleteDeviceE2EE(ctx context.Context, userID, deviceID string) (bool, error) {
	res, err := tx.q.ExecContext(ctx, `DELETE FROM device_keys WHERE user_id = $1 AND device_id = $2`, userID, deviceID)
	if err != nil {
		return false, fmt.Errorf("delete device keys: %w", err)
	}
	n, _ := res.RowsAffected()
	for _, q := range []string{
		`DELETE FROM one_time_keys WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM fallback_keys WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM to_device WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM to_device_txns WHERE user_id = $1 AND device_id = $2`,
		`DELETE FROM e2e_signatures WHERE target_user = $1 AND target_key = $2`,
	} {
		if _, err := tx.q.ExecContext(ctx, q, userID, deviceID); err != nil {
			return false, fmt.Errorf("delete device keys: %w", err)
		}
	}
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM e2e_signatures WHERE signer_user = $1 AND signer_key = $2`, userID, "ed25519:"+deviceID); err != nil {
		return false, fmt.Errorf("delete device signatures: %w", err)
	}
	return n > 0, nil
}

// AddDeviceListChange records that a user's devices or cross-signing keys
// changed. notifyUser, when not "", limits who is told to that user.
func (tx *Tx) AddDeviceListChange(ctx context.Context, userID, notifyUser string) error {
	pos := tx.Alloc(tx.s.Streams.DeviceLists)
	notify := sql.NullString{String: notifyUser, Valid: notifyUser != ""}
	_, err := tx.q.ExecContext(ctx, `INSERT INTO device_list_changes (stream_pos, user_id, notify_user) VALUES ($1, $2, $3)`, pos, userID, notify)
	if err != nil {
		return fmt.Errorf("add device list change: %w", err)
	}
	return nil
}

// DeviceListChangesFor returns the users whose device list changed in
// (from, to] that userID should hear of: userID itself, users sharing a
// joined room with it, and changes addressed to it.
func (s *Store) DeviceListChangesFor(ctx context.Context, userID string, from, to int64) ([]string, error) {
	// The window is short (the changes since the last sync): look at its
	// rows, and for each whether its user shares a room with userID.
	return queryStrings(ctx, s.reader(), `SELECT DISTINCT c.user_id FROM device_list_changes c
		WHERE c.stream_pos > $1 AND c.stream_pos <= $2 AND (c.notify_user = $3 OR (c.notify_user IS NULL AND (c.user_id = $4 OR EXISTS (
			SELECT 1 FROM room_members o JOIN room_members m ON m.room_id = o.room_id
			WHERE o.user_id = c.user_id AND o.membership = 'join' AND m.user_id = $5 AND m.membership = 'join'))))`, from, to, userID, userID, userID)
}

// MembershipChange is another user's current membership in a room shared
// (now or before) with a user, where one of the two memberships changed in
// a window of the events stream.
type MembershipChange struct {
	UserID     string
	Membership string // the other user's
	Pos        int64
	Own        string // the user's own membership of that room
	OwnPos     int64
	RoomID     string
}

// MembershipChangesFor returns, for the rooms userID is or was in, the
// other users' membership rows where either theirs or userID's changed in
// (from, to].
func (s *Store) MembershipChangesFor(ctx context.Context, userID string, from, to int64) ([]MembershipChange, error) {
	// Two branches, so that each can use an index: the others' changes are
	// a range of room_members_room_pos per room of the user; the user's own
	// changes are few rows, each with every member of that room.
	rows, err := s.reader().QueryContext(ctx, `SELECT o.user_id, o.membership, o.stream_pos, m.membership, m.stream_pos, m.room_id
		FROM room_members m JOIN room_members o ON o.room_id = m.room_id
		WHERE m.user_id = $1 AND o.stream_pos > $2 AND o.stream_pos <= $3 AND o.user_id <> $4
		UNION ALL SELECT o.user_id, o.membership, o.stream_pos, m.membership, m.stream_pos, m.room_id
		FROM room_members m JOIN room_members o ON o.room_id = m.room_id
		WHERE m.user_id = $5 AND m.stream_pos > $6 AND m.stream_pos <= $7 AND o.user_id <> $8`,
		userID, from, to, userID, userID, from, to, userID)
	if err != nil {
		return nil, fmt.Errorf("membership changes: %w", err)
	}
	defer rows.Close()
	var out []MembershipChange
	for rows.Next() {
		var c MembershipChange
		if err := rows.Scan(&c.UserID, &c.Membership, &c.Pos, &c.Own, &c.OwnPos, &c.RoomID); err != nil {
			return nil, fmt.Errorf("scan membership change: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// RoommatesOutside returns the users sharing a joined room other than
// roomID with userID.
func (s *Store) RoommatesOutside(ctx context.Context, userID, roomID string) ([]string, error) {
	return queryStrings(ctx, s.reader(), `SELECT DISTINCT o.user_id FROM room_members m JOIN room_members o ON o.room_id = m.room_id
		WHERE m.user_id = $1 AND m.membership = 'join' AND o.membership = 'join' AND m.room_id <> $2`, userID, roomID)
}

// Roommates returns the users sharing a joined room with userID (userID
// included when it is joined anywhere).
func (s *Store) Roommates(ctx context.Context, userID string) ([]string, error) {
	return queryStrings(ctx, s.reader(), `SELECT DISTINCT o.user_id FROM room_members m JOIN room_members o ON o.room_id = m.room_id
		WHERE m.user_id = $1 AND m.membership = 'join' AND o.membership = 'join'`, userID)
}

// ToDeviceMessage is a to_device row.
type ToDeviceMessage struct {
	Pos      int64
	UserID   string
	DeviceID string
	Sender   string
	Type     string
	Content  string
}

// PutToDeviceTxn records a /sendToDevice transaction id; false when the
// device used it before.
func (tx *Tx) PutToDeviceTxn(ctx context.Context, userID, deviceID, txnID string) (bool, error) {
	res, err := tx.q.ExecContext(ctx, `INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts) VALUES ($1, $2, $3, $4)
		ON CONFLICT (user_id, device_id, txn_id) DO NOTHING`, userID, deviceID, txnID, now())
	if err != nil {
		return false, fmt.Errorf("put to-device txn: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// DeleteOldToDeviceTxns forgets transaction ids older than cutoffTS.
func (s *Store) DeleteOldToDeviceTxns(ctx context.Context, cutoffTS int64) error {
	_, err := s.writer().ExecContext(ctx, `DELETE FROM to_device_txns WHERE created_ts < $1`, cutoffTS)
	return err
}

// InsertToDevice queues a message for a device and returns its position.
func (tx *Tx) InsertToDevice(ctx context.Context, m ToDeviceMessage) (int64, error) {
	pos := tx.Alloc(tx.s.Streams.ToDevice)
	_, err := tx.q.ExecContext(ctx, `INSERT INTO to_device (stream_pos, user_id, device_id, sender, type, content) VALUES ($1, $2, $3, $4, $5, $6)`,
		pos, m.UserID, m.DeviceID, m.Sender, m.Type, m.Content)
	if err != nil {
		return 0, fmt.Errorf("insert to-device message: %w", err)
	}
	return pos, nil
}

// ToDeviceMessages returns up to limit messages of a device with
// from < pos <= to, oldest first.
func (s *Store) ToDeviceMessages(ctx context.Context, userID, deviceID string, from, to int64, limit int) ([]ToDeviceMessage, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT stream_pos, sender, type, content FROM to_device
		WHERE user_id = $1 AND device_id = $2 AND stream_pos > $3 AND stream_pos <= $4 ORDER BY stream_pos LIMIT $5`,
		userID, deviceID, from, to, limit)
	if err != nil {
		return nil, fmt.Errorf("read to-device messages: %w", err)
	}
	defer rows.Close()
	var out []ToDeviceMessage
	for rows.Next() {
		m := ToDeviceMessage{UserID: userID, DeviceID: deviceID}
		if err := rows.Scan(&m.Pos, &m.Sender, &m.Type, &m.Content); err != nil {
			return nil, fmt.Errorf("scan to-device message: %w", err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// HasToDeviceUpTo reports whether a device has messages at or before pos
// (delivered ones waiting for deletion).
func (s *Store) HasToDeviceUpTo(ctx context.Context, userID, deviceID string, pos int64) (bool, error) {
	var n int
	err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM (SELECT 1 FROM to_device WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3 LIMIT 1) AS t`,
		userID, deviceID, pos).Scan(&n)
	return n > 0, err
}

// AckToDevice deletes a device's messages at or before pos: the device
// has received them.
func (s *Store) AckToDevice(ctx context.Context, userID, deviceID string, pos int64) error {
	_, err := s.writer().ExecContext(ctx, `DELETE FROM to_device WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3`, userID, deviceID, pos)
	if err != nil {
		return fmt.Errorf("delete delivered to-device messages: %w", err)
	}
	return nil
}

// DeviceIDs lists a user's device ids (to-device messages for "*").
func (tx *Tx) DeviceIDs(ctx context.Context, userID string) ([]string, error) {
	return queryStrings(ctx, tx.q, `SELECT device_id FROM devices WHERE user_id = $1 ORDER BY device_id`, userID)
}

// BackupVersion is a key_backup_versions row with its key count.
type BackupVersion struct {
	UserID    string
	Version   int64
	Algorithm string
	AuthData  string
	Etag      int64
	Deleted   bool
	Count     int64
}

const backupCols = `user_id, version, algorithm, auth_data, etag, deleted, (SELECT COUNT(*) FROM key_backup_sessions s WHERE s.user_id = v.user_id AND s.version = v.version)`

func scanBackupVersion(row *sql.Row) (*BackupVersion, error) {
	var b BackupVersion
	err := row.Scan(&b.UserID, &b.Version, &b.Algorithm, &b.AuthData, &b.Etag, &b.Deleted, &b.Count)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("scan backup version: %w", err)
	}
	return &b, nil
}

// CreateBackupVersion adds a backup version numbered after every earlier
// one of the user (deleted ones included).
func (tx *Tx) CreateBackupVersion(ctx context.Context, userID, algorithm, authData string) (int64, error) {
	var v int64
	err := tx.q.QueryRowContext(ctx, `INSERT INTO key_backup_versions (user_id, version, algorithm, auth_data)
		SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3 FROM key_backup_versions WHERE user_id = $4 RETURNING version`,
		userID, algorithm, authData, userID).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("create backup version: %w", err)
	}
	return v, nil
}

// GetBackupVersion returns one version (deleted or not) or ErrNotFound.
func (tx *Tx) GetBackupVersion(ctx context.Context, userID string, version int64) (*BackupVersion, error) {
	return scanBackupVersion(tx.q.QueryRowContext(ctx, `SELECT `+backupCols+` FROM key_backup_versions v WHERE user_id = $1 AND version = $2`, userID, version))
}

// GetBackupVersion is Tx.GetBackupVersion outside a transaction.
func (s *Store) GetBackupVersion(ctx context.Context, userID string, version int64) (*BackupVersion, error) {
	return scanBackupVersion(s.reader().QueryRowContext(ctx, `SELECT `+backupCols+` FROM key_backup_versions v WHERE user_id = $1 AND version = $2`, userID, version))
}

// LatestBackupVersion returns the user's newest version that is not
// deleted, or ErrNotFound.
func (tx *Tx) LatestBackupVersion(ctx context.Context, userID string) (*BackupVersion, error) {
	return scanBackupVersion(tx.q.QueryRowContext(ctx, `SELECT `+backupCols+` FROM key_backup_versions v
		WHERE user_id = $1 AND deleted = FALSE ORDER BY version DESC LIMIT 1`, userID))
}

// LatestBackupVersion is Tx.LatestBackupVersion outside a transaction.
func (s *Store) LatestBackupVersion(ctx context.Context, userID string) (*BackupVersion, error) {
	return scanBackupVersion(s.reader().QueryRowContext(ctx, `SELECT `+backupCols+` FROM key_backup_versions v
		WHERE user_id = $1 AND deleted = FALSE ORDER BY version DESC LIMIT 1`, userID))
}

// SetBackupAuthData replaces a version's auth_data.
func (tx *Tx) SetBackupAuthData(ctx context.Context, userID string, version int64, authData string) error {
	_, err := tx.q.ExecContext(ctx, `UPDATE key_backup_versions SET auth_data = $1 WHERE user_id = $2 AND version = $3`, authData, userID, version)
	return err
}

// DeleteBackupVersion marks a version deleted and removes its keys.
func (tx *Tx) DeleteBackupVersion(ctx context.Context, userID string, version int64) error {
	if _, err := tx.q.ExecContext(ctx, `DELETE FROM key_backup_sessions WHERE user_id = $1 AND version = $2`, userID, version); err != nil {
		return fmt.Errorf("delete backup keys: %w", err)
	}
	if _, err := tx.q.ExecContext(ctx, `UPDATE key_backup_versions SET deleted = TRUE WHERE user_id = $1 AND version = $2`, userID, version); err != nil {
		return fmt.Errorf("delete backup version: %w", err)
	}
	return nil
}

// BumpBackupEtag advances a version's etag (its keys changed) and returns
// the new one.
func (tx *Tx) BumpBackupEtag(ctx context.Context, userID string, version int64) (int64, error) {
	var etag int64
	err := tx.q.QueryRowContext(ctx, `UPDATE key_backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2 RETURNING etag`, userID, version).Scan(&etag)
	return etag, err
}

// BackupSession is a key_backup_sessions row.
type BackupSession struct {
	RoomID            string
	SessionID         string
	FirstMessageIndex int64
	ForwardedCount    int64
	IsVerified        bool
	SessionData       string
}

// PutBackupSession stores a session key unless the stored one is better:
// a verified key beats an unverified one, then a lower first message index
// wins, then a lower forwarded count; on a tie the stored key stays. It
// reports whether the row changed.
func (tx *Tx) PutBackupSession(ctx context.Context, userID string, version int64, b BackupSession) (bool, error) {
	res, err := tx.q.ExecContext(ctx, `INSERT INTO key_backup_sessions (user_id, version, room_id, session_id, first_message_index, forwarded_count, is_verified, session_data)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET first_message_index = excluded.first_message_index,
			forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified, session_data = excluded.session_data
		WHERE (excluded.is_verified AND NOT key_backup_sessions.is_verified)
			OR (excluded.is_verified = key_backup_sessions.is_verified AND (excluded.first_message_index < key_backup_sessions.first_message_index
				OR (excluded.first_message_index = key_backup_sessions.first_message_index AND excluded.forwarded_count < key_backup_sessions.forwarded_count)))`,
		userID, version, b.RoomID, b.SessionID, b.FirstMessageIndex, b.ForwardedCount, b.IsVerified, b.SessionData)
	if err != nil {
		return false, fmt.Errorf("put backup key: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// BackupSessions returns a version's keys, all of them or those of one
// room (roomID not "") or one session (sessionID not "" too).
func (s *Store) BackupSessions(ctx context.Context, userID string, version int64, roomID, sessionID string) ([]BackupSession, error) {
	q, args := `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data FROM key_backup_sessions
		WHERE user_id = $1 AND version = $2 ORDER BY room_id, session_id`, []any{userID, version}
	switch {
	case sessionID != "":
		q, args = `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data FROM key_backup_sessions
		WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4`, []any{userID, version, roomID, sessionID}
	case roomID != "":
		q, args = `SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data FROM key_backup_sessions
		WHERE user_id = $1 AND version = $2 AND room_id = $3 ORDER BY session_id`, []any{userID, version, roomID}
	}
	rows, err := s.reader().QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("read backup keys: %w", err)
	}
	defer rows.Close()
	var out []BackupSession
	for rows.Next() {
		var b BackupSession
		if err := rows.Scan(&b.RoomID, &b.SessionID, &b.FirstMessageIndex, &b.ForwardedCount, &b.IsVerified, &b.SessionData); err != nil {
			return nil, fmt.Errorf("scan backup key: %w", err)
		}
		out = append(out, b)
	}
	return out, rows.Err()
}

// DeleteBackupSessions deletes a version's keys (all, one room's or one
// session's, as BackupSessions selects) and returns how many went.
func (tx *Tx) DeleteBackupSessions(ctx context.Context, userID string, version int64, roomID, sessionID string) (int64, error) {
	q, args := `DELETE FROM key_backup_sessions WHERE user_id = $1 AND version = $2`, []any{userID, version}
	switch {
	case sessionID != "":
		q, args = `DELETE FROM key_backup_sessions WHERE user_id = $1 AND version = $2 AND room_id = $3 AND session_id = $4`, []any{userID, version, roomID, sessionID}
	case roomID != "":
		q, args = `DELETE FROM key_backup_sessions WHERE user_id = $1 AND version = $2 AND room_id = $3`, []any{userID, version, roomID}
	}
	res, err := tx.q.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("delete backup keys: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// DehydratedDevice is a dehydrated_devices row.
type DehydratedDevice struct {
	UserID     string
	DeviceID   string
	DeviceData string
}

func getDehydratedDevice(ctx context.Context, q querier, userID string) (*DehydratedDevice, error) {
	d := DehydratedDevice{UserID: userID}
	err := q.QueryRowContext(ctx, `SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = $1`, userID).Scan(&d.DeviceID, &d.DeviceData)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get dehydrated device: %w", err)
	}
	return &d, nil
}

// GetDehydratedDevice returns a user's dehydrated device or ErrNotFound.
func (s *Store) GetDehydratedDevice(ctx context.Context, userID string) (*DehydratedDevice, error) {
	return getDehydratedDevice(ctx, s.reader(), userID)
}

// GetDehydratedDevice is Store.GetDehydratedDevice in a transaction.
func (tx *Tx) GetDehydratedDevice(ctx context.Context, userID string) (*DehydratedDevice, error) {
	return getDehydratedDevice(ctx, tx.q, userID)
}

// PutDehydratedDevice sets a user's dehydrated device.
func (tx *Tx) PutDehydratedDevice(ctx context.Context, d DehydratedDevice) error {
	_, err := tx.q.ExecContext(ctx, `INSERT INTO dehydrated_devices (user_id, device_id, device_data) VALUES ($1, $2, $3)
		ON CONFLICT (user_id) DO UPDATE SET device_id = excluded.device_id, device_data = excluded.device_data`, d.UserID, d.DeviceID, d.DeviceData)
	if err != nil {
		return fmt.Errorf("put dehydrated device: %w", err)
	}
	return nil
}

// DeleteDehydratedDevice forgets a user's dehydrated device row.
func (tx *Tx) DeleteDehydratedDevice(ctx context.Context, userID string) error {
	_, err := tx.q.ExecContext(ctx, `DELETE FROM dehydrated_devices WHERE user_id = $1`, userID)
	return err
}

// IsDehydratedDevice reports whether deviceID is userID's dehydrated device.
func (s *Store) IsDehydratedDevice(ctx context.Context, userID, deviceID string) (bool, error) {
	var n int
	err := s.reader().QueryRowContext(ctx, `SELECT COUNT(*) FROM dehydrated_devices WHERE user_id = $1 AND device_id = $2`, userID, deviceID).Scan(&n)
	return n > 0, err
}
