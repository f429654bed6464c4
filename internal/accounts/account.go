package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// Caller is who calls an endpoint that accepts an optional access token:
// the zero value is an anonymous caller.
type Caller struct {
	UserID   string
	DeviceID string
}

// ChangePassword sets a new password after user-interactive auth with the
// current one. Without an access token (caller zero) the password stage
// says whose password changes. With logoutDevices (the spec's default) every
// other device is deleted; the caller's device stays.
func (s *Service) ChangePassword(ctx context.Context, caller Caller, newPassword string, logoutDevices bool, auth json.RawMessage) error {
	if err := s.checkNewPassword(newPassword); err != nil {
		return err
	}
	sess, err := s.userInteractiveAuth(ctx, uiaOp{name: "password", userID: caller.UserID, flows: s.reauthFlows(caller.UserID)}, auth)
	if err != nil {
		return err
	}
	if err := s.SetPassword(ctx, sess.userID, newPassword, logoutDevices, caller.DeviceID); err != nil {
		return err
	}
	s.finishUIA(ctx, sess)
	return nil
}

// SetPassword replaces a user's password. With logoutDevices every device
// but keepDevice ("" for none) is deleted, and with it its tokens.
func (s *Service) SetPassword(ctx context.Context, userID, newPassword string, logoutDevices bool, keepDevice string) error {
	if err := s.checkNewPassword(newPassword); err != nil {
		return err
	}
	hash, err := s.hashPassword(ctx, newPassword)
	if err != nil {
		return err
	}
	var deleted []string
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.GetUser(ctx, userID); err != nil {
			return err
		}
		if err := tx.SetPasswordHash(ctx, userID, hash); err != nil {
			return err
		}
		if !logoutDevices {
			return nil
		}
		var err error
		deleted, err = tx.DeleteAllDevices(ctx, userID, keepDevice)
		tx.OnCommit(func() { s.cache.invalidate(userID, "") })
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return errcode.NotFound("no such user")
	}
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	s.devicesDeleted(ctx, userID, deleted)
	return nil
}

// Deactivate deactivates the caller's account after user-interactive auth
// with its password (without an access token, the password stage says
// whose) and, with erase, erases it (EraseUser).
func (s *Service) Deactivate(ctx context.Context, caller Caller, auth json.RawMessage, erase bool) error {
	sess, err := s.userInteractiveAuth(ctx, uiaOp{name: "deactivate", userID: caller.UserID, flows: s.reauthFlows(caller.UserID)}, auth)
	if err != nil {
		return err
	}
	if err := s.DeactivateUser(ctx, sess.userID); err != nil {
		return err
	}
	if erase {
		if err := s.EraseUser(ctx, sess.userID); err != nil {
			return err
		}
	}
	s.finishUIA(ctx, sess)
	return nil
}

// DeactivateUser deactivates an account for good: the password and profile
// are cleared, every device and token is deleted, then OnDeactivate lets
// rooms make the user leave.
func (s *Service) DeactivateUser(ctx context.Context, userID string) error {
	var deleted []string
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		if _, err := tx.GetUser(ctx, userID); err != nil {
			return err
		}
		if err := tx.Deactivate(ctx, userID); err != nil {
			return err
		}
		var err error
		deleted, err = tx.DeleteAllDevices(ctx, userID, "")
		tx.OnCommit(func() { s.cache.invalidate(userID, "") })
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return errcode.NotFound("no such user")
	}
	if err != nil {
		return fmt.Errorf("deactivate: %w", err)
	}
	s.devicesDeleted(ctx, userID, deleted)
	if h := s.hooks.OnDeactivate; h != nil {
		s.runHook("OnDeactivate", func() error { return h(ctx, userID) })
	}
	return nil
}
