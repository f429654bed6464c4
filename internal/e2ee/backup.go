package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strconv"
	"strings"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// validBackupAlgorithm checks a backup's algorithm name. The server keeps
// backups without reading them, so any namespaced identifier is accepted
// (the spec's m.megolm_backup.v1.curve25519-aes-sha2, MSC3270's symmetric
// org.matrix.msc3270.v1.aes-hmac-sha2, older clients' m.megolm_backup.v1);
// a bare word is no algorithm name.
func validBackupAlgorithm(algorithm string) bool {
	if validID(algorithm, "algorithm") != nil || strings.ContainsAny(algorithm, " \t\n") {
		return false
	}
	first, rest, ok := strings.Cut(algorithm, ".")
	return ok && first != "" && rest != ""
}

// BackupInfo describes a backup version.
type BackupInfo struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Count     int64           `json:"count"`
	Etag      string          `json:"etag"`
	Version   string          `json:"version"`
}

// BackupUpdate is the answer to a change of a backup's keys.
type BackupUpdate struct {
	Etag  string `json:"etag"`
	Count int64  `json:"count"`
}

// KeyBackupData is one session key in a backup.
type KeyBackupData struct {
	FirstMessageIndex *int64          `json:"first_message_index"`
	ForwardedCount    *int64          `json:"forwarded_count"`
	IsVerified        *bool           `json:"is_verified"`
	SessionData       json.RawMessage `json:"session_data"`
}

// RoomKeyBackup is the sessions of one room in a backup.
type RoomKeyBackup struct {
	Sessions map[string]KeyBackupData `json:"sessions"`
}

func backupInfo(v *store.BackupVersion) *BackupInfo {
	return &BackupInfo{Algorithm: v.Algorithm, AuthData: json.RawMessage(v.AuthData), Count: v.Count,
		Etag: strconv.FormatInt(v.Etag, 10), Version: strconv.FormatInt(v.Version, 10)}
}

// parseVersion reads a version string; anything this server did not issue
// is unknown.
func parseVersion(version string) (int64, error) {
	v, err := strconv.ParseInt(version, 10, 64)
	if err != nil || v <= 0 || strconv.FormatInt(v, 10) != version {
		return 0, errcode.NotFound("unknown backup version")
	}
	return v, nil
}

func checkBackupConfig(algorithm string, authData json.RawMessage) (string, error) {
	if algorithm == "" {
		return "", errcode.MissingParam("algorithm is required")
	}
	if !validBackupAlgorithm(algorithm) {
		return "", errcode.InvalidParam("unsupported backup algorithm %q", truncate(algorithm))
	}
	if !present(authData) {
		return "", errcode.MissingParam("auth_data is required")
	}
	if len(authData) > maxBackupData {
		return "", errcode.TooLarge("auth_data is too large")
	}
	m, err := object(authData, "auth_data")
	if err != nil {
		return "", err
	}
	return canonical(m)
}

// CreateBackup creates a new backup version, which becomes the current
// one, and returns its version.
func (s *Service) CreateBackup(ctx context.Context, userID, algorithm string, authData json.RawMessage) (string, error) {
	auth, err := checkBackupConfig(algorithm, authData)
	if err != nil {
		return "", err
	}
	var v int64
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		v, err = tx.CreateBackupVersion(ctx, userID, algorithm, auth)
		return err
	})
	if err != nil {
		return "", err
	}
	return strconv.FormatInt(v, 10), nil
}

// GetBackup describes a backup version ("": the current one).
func (s *Service) GetBackup(ctx context.Context, userID, version string) (*BackupInfo, error) {
	var v *store.BackupVersion
	var err error
	if version == "" {
		v, err = s.store.LatestBackupVersion(ctx, userID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errcode.NotFound("no current backup version")
		}
	} else {
		n, perr := parseVersion(version)
		if perr != nil {
			return nil, perr
		}
		v, err = s.store.GetBackupVersion(ctx, userID, n)
		if errors.Is(err, store.ErrNotFound) || (err == nil && v.Deleted) {
			return nil, errcode.NotFound("unknown backup version")
		}
	}
	if err != nil {
		return nil, err
	}
	return backupInfo(v), nil
}

// UpdateBackup replaces a version's auth_data; its algorithm cannot change.
func (s *Service) UpdateBackup(ctx context.Context, userID, version, algorithm string, authData json.RawMessage, bodyVersion string) error {
	n, err := parseVersion(version)
	if err != nil {
		return err
	}
	if bodyVersion != "" && bodyVersion != version {
		return errcode.InvalidParam("version in the body does not match the path")
	}
	auth, err := checkBackupConfig(algorithm, authData)
	if err != nil {
		return err
	}
	return s.store.InTx(ctx, func(tx *store.Tx) error {
		v, err := tx.GetBackupVersion(ctx, userID, n)
		if errors.Is(err, store.ErrNotFound) || (err == nil && v.Deleted) {
			return errcode.NotFound("unknown backup version")
		}
		if err != nil {
			return err
		}
		if v.Algorithm != algorithm {
			return errcode.InvalidParam("algorithm does not match the backup's")
		}
		return tx.SetBackupAuthData(ctx, userID, n, auth)
	})
}

// DeleteBackup deletes a version and its keys; deleting it again succeeds.
func (s *Service) DeleteBackup(ctx context.Context, userID, version string) error {
	n, err := parseVersion(version)
	if err != nil {
		return err
	}
	return s.store.InTx(ctx, func(tx *store.Tx) error {
		v, err := tx.GetBackupVersion(ctx, userID, n)
		if errors.Is(err, store.ErrNotFound) {
			return errcode.NotFound("unknown backup version")
		}
		if err != nil || v.Deleted {
			return err
		}
		return tx.DeleteBackupVersion(ctx, userID, n)
	})
}

// backupSession is a checked key of an upload.
type backupSession = store.BackupSession

// checkSessions validates uploaded keys by room.
func checkSessions(rooms map[string]map[string]KeyBackupData) ([]backupSession, error) {
	var out []backupSession
	roomIDs := make([]string, 0, len(rooms))
	for r := range rooms {
		roomIDs = append(roomIDs, r)
	}
	sort.Strings(roomIDs)
	for _, roomID := range roomIDs {
		if err := validID(roomID, "room id"); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(roomID, "!") {
			return nil, errcode.InvalidParam("%q is not a room id", truncate(roomID))
		}
		sessIDs := make([]string, 0, len(rooms[roomID]))
		for sid := range rooms[roomID] {
			sessIDs = append(sessIDs, sid)
		}
		sort.Strings(sessIDs)
		for _, sid := range sessIDs {
			if err := validID(sid, "session id"); err != nil {
				return nil, err
			}
			d := rooms[roomID][sid]
			switch {
			case d.FirstMessageIndex == nil || d.ForwardedCount == nil || d.IsVerified == nil || !present(d.SessionData):
				return nil, errcode.MissingParam("session %s needs first_message_index, forwarded_count, is_verified and session_data", truncate(sid))
			case *d.FirstMessageIndex < 0 || *d.ForwardedCount < 0:
				return nil, errcode.InvalidParam("session %s: negative counts", truncate(sid))
			case len(d.SessionData) > maxBackupData:
				return nil, errcode.TooLarge("session %s: session_data is too large", truncate(sid))
			}
			m, err := object(d.SessionData, "session_data")
			if err != nil {
				return nil, err
			}
			data, err := canonical(m)
			if err != nil {
				return nil, err
			}
			out = append(out, backupSession{RoomID: roomID, SessionID: sid, FirstMessageIndex: *d.FirstMessageIndex,
				ForwardedCount: *d.ForwardedCount, IsVerified: *d.IsVerified, SessionData: data})
		}
	}
	return out, nil
}

// PutBackupKeys stores keys in the current backup version, keeping for
// each session the better of the stored and the uploaded key.
func (s *Service) PutBackupKeys(ctx context.Context, userID, version string, rooms map[string]map[string]KeyBackupData) (*BackupUpdate, error) {
	if version == "" {
		return nil, errcode.MissingParam("version is required")
	}
	n, err := parseVersion(version)
	if err != nil {
		return nil, err
	}
	sessions, err := checkSessions(rooms)
	if err != nil {
		return nil, err
	}
	var out *BackupUpdate
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		cur, err := tx.LatestBackupVersion(ctx, userID)
		if errors.Is(err, store.ErrNotFound) {
			return errcode.NotFound("unknown backup version")
		} else if err != nil {
			return err
		}
		if cur.Version != n {
			if _, err := tx.GetBackupVersion(ctx, userID, n); errors.Is(err, store.ErrNotFound) {
				return errcode.NotFound("unknown backup version")
			}
			return wrongBackupVersion(strconv.FormatInt(cur.Version, 10))
		}
		changed := false
		for _, b := range sessions {
			ch, err := tx.PutBackupSession(ctx, userID, n, b)
			if err != nil {
				return err
			}
			changed = changed || ch
		}
		etag := cur.Etag
		if changed {
			if etag, err = tx.BumpBackupEtag(ctx, userID, n); err != nil {
				return err
			}
		}
		v, err := tx.GetBackupVersion(ctx, userID, n)
		if err != nil {
			return err
		}
		out = &BackupUpdate{Etag: strconv.FormatInt(etag, 10), Count: v.Count}
		return nil
	})
	return out, err
}

// liveVersion resolves a version for reading or deleting keys: it must
// exist and not be deleted ("" is the current one).
func (s *Service) liveVersion(ctx context.Context, userID, version string) (int64, error) {
	info, err := s.GetBackup(ctx, userID, version)
	if err != nil {
		return 0, err
	}
	n, _ := strconv.ParseInt(info.Version, 10, 64)
	return n, nil
}

// GetBackupKeys returns keys of a backup version: all (roomID ""), one
// room's, or one session's (M_NOT_FOUND when missing).
func (s *Service) GetBackupKeys(ctx context.Context, userID, version, roomID, sessionID string) (any, error) {
	n, err := s.liveVersion(ctx, userID, version)
	if err != nil {
		return nil, err
	}
	rows, err := s.store.BackupSessions(ctx, userID, n, roomID, sessionID)
	if err != nil {
		return nil, err
	}
	data := func(b store.BackupSession) KeyBackupData {
		fmi, fc, v := b.FirstMessageIndex, b.ForwardedCount, b.IsVerified
		return KeyBackupData{FirstMessageIndex: &fmi, ForwardedCount: &fc, IsVerified: &v, SessionData: json.RawMessage(b.SessionData)}
	}
	switch {
	case sessionID != "":
		if len(rows) == 0 {
			return nil, errcode.NotFound("no key for that session")
		}
		return data(rows[0]), nil
	case roomID != "":
		out := RoomKeyBackup{Sessions: map[string]KeyBackupData{}}
		for _, b := range rows {
			out.Sessions[b.SessionID] = data(b)
		}
		return out, nil
	}
	out := map[string]RoomKeyBackup{}
	for _, b := range rows {
		r, ok := out[b.RoomID]
		if !ok {
			r = RoomKeyBackup{Sessions: map[string]KeyBackupData{}}
			out[b.RoomID] = r
		}
		r.Sessions[b.SessionID] = data(b)
	}
	return map[string]any{"rooms": out}, nil
}

// DeleteBackupKeys deletes keys of a backup version: all, one room's or
// one session's.
func (s *Service) DeleteBackupKeys(ctx context.Context, userID, version, roomID, sessionID string) (*BackupUpdate, error) {
	if version == "" {
		return nil, errcode.MissingParam("version is required")
	}
	n, err := s.liveVersion(ctx, userID, version)
	if err != nil {
		return nil, err
	}
	var out *BackupUpdate
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		deleted, err := tx.DeleteBackupSessions(ctx, userID, n, roomID, sessionID)
		if err != nil {
			return err
		}
		v, err := tx.GetBackupVersion(ctx, userID, n)
		if err != nil {
			return err
		}
		etag := v.Etag
		if deleted > 0 {
			if etag, err = tx.BumpBackupEtag(ctx, userID, n); err != nil {
				return err
			}
		}
		out = &BackupUpdate{Etag: strconv.FormatInt(etag, 10), Count: v.Count}
		return nil
	})
	return out, err
}
