package accounts

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// nonceTTL is how long a shared-secret registration nonce can be used.
const nonceTTL = time.Minute

// SharedSecretEnabled reports whether shared-secret registration
// (/_synapse/admin/v1/register) is configured.
func (s *Service) SharedSecretEnabled() bool { return s.cfg.Registration.SharedSecret != "" }

// errSharedSecretDisabled: the endpoint behaves as if it did not exist, which
// is what the spec asks of unknown endpoints (Synapse answers 400 instead).
func errSharedSecretDisabled() *errcode.Error {
	return errcode.Unrecognized("shared-secret registration is not enabled")
}

// NewRegistrationNonce returns a nonce for RegisterWithSharedSecret, usable
// once within a minute.
func (s *Service) NewRegistrationNonce(ctx context.Context) (string, error) {
	if !s.SharedSecretEnabled() {
		return "", errSharedSecretDisabled()
	}
	s.sweep(ctx)
	nonce := randomString(alnum, 32)
	if err := s.store.PutNonce(ctx, nonce); err != nil {
		return "", fmt.Errorf("store nonce: %w", err)
	}
	return nonce, nil
}

// SharedSecretRequest is a POST /_synapse/admin/v1/register.
type SharedSecretRequest struct {
	Nonce       string
	Username    string
	Password    string
	DisplayName string
	Admin       bool
	UserType    string // optional; part of the MAC when set
	MAC         string // hex HMAC-SHA1, see SharedSecretMAC
	// As in /register.
	InhibitLogin             bool
	DeviceID                 string
	InitialDeviceDisplayName string
	IP                       string
}

// SharedSecretMAC computes the MAC a shared-secret registration carries, as
// Synapse defines it: hex(HMAC-SHA1(secret,
// nonce NUL username NUL password NUL ("admin"|"notadmin") [NUL user_type])).
func SharedSecretMAC(secret, nonce, username, password string, admin bool, userType string) string {
	m := hmac.New(sha1.New, []byte(secret))
	role := "notadmin"
	if admin {
		role = "admin"
	}
	m.Write([]byte(nonce + "\x00" + username + "\x00" + password + "\x00" + role))
	if userType != "" {
		m.Write([]byte("\x00" + userType))
	}
	return hex.EncodeToString(m.Sum(nil))
}

// RegisterWithSharedSecret creates an account for someone who knows the
// registration shared secret. The nonce is consumed before the MAC is
// checked, so each nonce allows one guess.
func (s *Service) RegisterWithSharedSecret(ctx context.Context, r SharedSecretRequest) (*LoginResult, error) {
	if !s.SharedSecretEnabled() {
		return nil, errSharedSecretDisabled()
	}
	if r.Nonce == "" || r.Username == "" || r.Password == "" || r.MAC == "" {
		return nil, errcode.MissingParam("nonce, username, password and mac are required")
	}
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		return tx.TakeNonce(ctx, r.Nonce, s.now().Add(-nonceTTL).UnixMilli())
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, errcode.Unknown("unrecognised nonce")
	}
	if err != nil {
		return nil, fmt.Errorf("take nonce: %w", err)
	}
	// NUL separates the MAC's fields, so it must not occur inside one.
	if strings.ContainsRune(r.Username, 0) || strings.ContainsRune(r.Password, 0) || strings.ContainsRune(r.UserType, 0) {
		return nil, errcode.InvalidParam("username, password and user_type must not contain NUL")
	}
	want, _ := hex.DecodeString(SharedSecretMAC(s.cfg.Registration.SharedSecret, r.Nonce, r.Username, r.Password, r.Admin, r.UserType))
	got, err := hex.DecodeString(strings.ToLower(r.MAC))
	if err != nil || !hmac.Equal(got, want) {
		return nil, errcode.Forbidden("HMAC incorrect")
	}
	if r.UserType != "" && r.UserType != "bot" && r.UserType != "support" {
		return nil, errcode.InvalidParam("invalid user_type")
	}
	localpart, err := s.CheckUsername(ctx, r.Username)
	if err != nil {
		return nil, err
	}
	if err := s.checkNewPassword(r.Password); err != nil {
		return nil, err
	}
	if err := checkDeviceID(r.DeviceID); err != nil {
		return nil, err
	}
	hash, err := s.hashPassword(ctx, r.Password)
	if err != nil {
		return nil, err
	}
	a := newAccount{localpart: localpart, passwordHash: hash, admin: r.Admin, displayName: r.DisplayName}
	if !r.InhibitLogin {
		a.login = &sessionParams{deviceID: r.DeviceID, displayName: r.InitialDeviceDisplayName, ip: r.IP}
	}
	return s.createAccount(ctx, a)
}
