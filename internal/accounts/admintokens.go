package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// RegistrationTokenInfo returns one registration token; M_NOT_FOUND when
// unknown.
func (s *Service) RegistrationTokenInfo(ctx context.Context, token string) (*RegistrationToken, error) {
	row, err := s.store.GetRegistrationToken(ctx, token)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errcode.NotFound("no such registration token: %s", token)
	}
	if err != nil {
		return nil, fmt.Errorf("get registration token: %w", err)
	}
	t := tokenFromRow(*row)
	return &t, nil
}

// TokenUpdate changes a registration token: a Set field is changed, to
// its value or, nil, to no limit.
type TokenUpdate struct {
	SetUses     bool
	UsesAllowed *int64
	SetExpiry   bool
	Expiry      *time.Time
}

// UpdateRegistrationToken changes a token's allowed uses or expiry and
// returns it; M_NOT_FOUND when unknown.
func (s *Service) UpdateRegistrationToken(ctx context.Context, token string, u TokenUpdate) (*RegistrationToken, error) {
	var uses, expiry sql.NullInt64
	if u.UsesAllowed != nil {
		if *u.UsesAllowed < 0 {
			return nil, errcode.InvalidParam("uses_allowed must not be negative")
		}
		uses = sql.NullInt64{Int64: *u.UsesAllowed, Valid: true}
	}
	if u.Expiry != nil {
		expiry = sql.NullInt64{Int64: u.Expiry.UnixMilli(), Valid: true}
	}
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		return tx.UpdateRegistrationToken(ctx, token, u.SetUses, uses, u.SetExpiry, expiry)
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, errcode.NotFound("no such registration token: %s", token)
	}
	if err != nil {
		return nil, fmt.Errorf("update registration token: %w", err)
	}
	return s.RegistrationTokenInfo(ctx, token)
}

// Now is the service's clock (see SetClock).
func (s *Service) Now() time.Time { return s.now() }
