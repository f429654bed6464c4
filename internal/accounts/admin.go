package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/store"
)

// The server administration of accounts (the admin API): listing,
// creating and changing accounts, their moderation (locking, suspension,
// shadow-banning), validity and erasure.

// UserListQuery filters, orders and pages the user list.
type UserListQuery = store.UserListQuery

// AdminUser is an account as the admin API shows it.
type AdminUser = store.AdminUser

// ExternalID is an account's link to an upstream identity provider.
type ExternalID = store.ExternalID

// UserOrders are the orders the user list knows.
var UserOrders = store.UserOrders

// UserDetails is one account with its third-party identifiers and single
// sign-on links.
type UserDetails struct {
	AdminUser
	ThreePIDs   []ThreePID
	ExternalIDs []ExternalID
}

// ListUsers returns a page of local accounts and how many match in all.
func (s *Service) ListUsers(ctx context.Context, q UserListQuery) ([]AdminUser, int, error) {
	users, total, err := s.store.ListUsers(ctx, q)
	if err != nil {
		return nil, 0, fmt.Errorf("list users: %w", err)
	}
	return users, total, nil
}

// CheckLocalUser checks that userID is a well-formed id of this server:
// M_INVALID_PARAM otherwise.
func (s *Service) CheckLocalUser(userID string) error {
	u, err := id.ParseUserID(userID)
	if err != nil {
		return errcode.InvalidParam("invalid user id: %v", err)
	}
	if u.Server() != s.serverName() {
		return errcode.InvalidParam("user does not belong to the local server")
	}
	return nil
}

// UserDetails returns a local account; M_NOT_FOUND when there is none.
func (s *Service) UserDetails(ctx context.Context, userID string) (*UserDetails, error) {
	u, err := s.store.GetUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errcode.NotFound("user not found")
	}
	if err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	d := &UserDetails{AdminUser: AdminUser{User: *u}}
	seen, err := s.store.UserLastSeen(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	if seen > 0 {
		d.LastSeenTS = sql.NullInt64{Int64: seen, Valid: true}
	}
	if d.ThreePIDs, err = s.store.ThreePIDs(ctx, userID); err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	if d.ExternalIDs, err = s.store.ExternalIDs(ctx, userID); err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	return d, nil
}

// UserChange is an administrator's creation or change of an account
// (PUT /_synapse/admin/v2/users/{userId}); nil fields are left as they
// are (or at their defaults for a new account).
type UserChange struct {
	Password *string
	// LogoutDevices (default true) deletes the devices when the password
	// changes.
	LogoutDevices *bool
	DisplayName   *string // "" removes it
	AvatarURL     *string // "" removes it
	ThreePIDs     *[]ThreePID
	ExternalIDs   *[]ExternalID
	Admin         *bool
	Deactivated   *bool
	Locked        *bool
	// SetUserType changes the type to UserType ("" clears it).
	SetUserType bool
	UserType    string
}

// check validates a change before anything is written.
func (s *Service) checkChange(c UserChange) error {
	if c.Password != nil {
		if err := s.checkNewPassword(*c.Password); err != nil {
			return err
		}
	}
	if c.DisplayName != nil && len(*c.DisplayName) > maxDisplayNameBytes {
		return errcode.InvalidParam("displayname longer than %d bytes", maxDisplayNameBytes)
	}
	if c.AvatarURL != nil && *c.AvatarURL != "" {
		if !strings.HasPrefix(*c.AvatarURL, "mxc://") || len(*c.AvatarURL) > maxAvatarURLBytes {
			return errcode.InvalidParam("avatar_url must be an mxc:// URI")
		}
	}
	if c.SetUserType && c.UserType != "" && c.UserType != "bot" && c.UserType != "support" {
		return errcode.InvalidParam("user_type must be null, \"bot\" or \"support\"")
	}
	if c.ThreePIDs != nil {
		for _, p := range *c.ThreePIDs {
			if (p.Medium != "email" && p.Medium != "msisdn") || p.Address == "" || len(p.Address) > 512 {
				return errcode.InvalidParam("each threepid needs a medium (email or msisdn) and an address")
			}
		}
	}
	if c.ExternalIDs != nil {
		for _, e := range *c.ExternalIDs {
			if e.Provider == "" || e.Subject == "" || len(e.Provider) > 255 || len(e.Subject) > 512 {
				return errcode.InvalidParam("each external id needs an auth_provider and an external_id")
			}
		}
	}
	return nil
}

// PutUser creates the local account userID with c, or changes it; created
// tells which. Deactivating deactivates for good (see DeactivateUser);
// reactivating leaves the account without a password unless c sets one.
func (s *Service) PutUser(ctx context.Context, userID string, c UserChange) (created bool, err error) {
	if err := s.CheckLocalUser(userID); err != nil {
		return false, err
	}
	if err := s.checkChange(c); err != nil {
		return false, err
	}
	exists, _, err := s.UserStatus(ctx, userID)
	if err != nil {
		return false, err
	}
	if !exists {
		if err := s.createByAdmin(ctx, userID, c); err != nil {
			return false, err
		}
		return true, nil
	}
	return false, s.changeByAdmin(ctx, userID, c)
}

// createByAdmin creates an account with what c gives.
func (s *Service) createByAdmin(ctx context.Context, userID string, c UserChange) error {
	u, _ := id.ParseUserID(userID)
	localpart := u.Localpart()
	if _, err := id.NewUserID(localpart, s.serverName()); err != nil || localpart != strings.ToLower(localpart) {
		return errcode.InvalidUsername("invalid localpart for a new account")
	}
	hash := ""
	if c.Password != nil {
		var err error
		if hash, err = s.hashPassword(ctx, *c.Password); err != nil {
			return err
		}
	}
	display := ""
	if c.DisplayName != nil {
		display = *c.DisplayName
	}
	now := s.now().UnixMilli()
	_, err := s.createAccount(ctx, newAccount{localpart: localpart, passwordHash: hash, admin: c.Admin != nil && *c.Admin, displayName: display,
		extra: func(tx *store.Tx, userID string) error {
			if c.AvatarURL != nil && *c.AvatarURL != "" {
				if err := tx.SetAvatarURL(ctx, userID, sql.NullString{String: *c.AvatarURL, Valid: true}); err != nil {
					return err
				}
			}
			if c.SetUserType && c.UserType != "" {
				if err := tx.SetUserType(ctx, userID, sql.NullString{String: c.UserType, Valid: true}); err != nil {
					return err
				}
			}
			if c.Locked != nil && *c.Locked {
				if err := tx.SetUserFlag(ctx, userID, store.FlagLocked, true); err != nil {
					return err
				}
			}
			return s.replaceIDs(ctx, tx, userID, c, now)
		}})
	if err != nil {
		return err
	}
	if c.Deactivated != nil && *c.Deactivated {
		return s.DeactivateUser(ctx, userID)
	}
	return nil
}

// setValidity starts a new account's validity period
// (account_validity.period), if one is configured.
func (s *Service) setValidity(ctx context.Context, tx *store.Tx, userID string, nowMS int64) error {
	p := s.cfg.AccountValidity.Period.Duration
	if p <= 0 {
		return nil
	}
	return tx.SetValidUntil(ctx, userID, sql.NullInt64{Int64: nowMS + p.Milliseconds(), Valid: true})
}

// replaceIDs replaces the third-party identifiers and single sign-on
// links c names; M_THREEPID_IN_USE or M_INVALID_PARAM when another account
// has one.
func (s *Service) replaceIDs(ctx context.Context, tx *store.Tx, userID string, c UserChange, nowMS int64) error {
	if c.ThreePIDs != nil {
		pids := make([]ThreePID, 0, len(*c.ThreePIDs))
		for _, p := range *c.ThreePIDs {
			pids = append(pids, ThreePID{Medium: p.Medium, Address: p.Address, ValidatedTS: nowMS, AddedTS: nowMS})
		}
		if err := tx.ReplaceThreePIDs(ctx, userID, pids); errors.Is(err, store.ErrExists) {
			return &errcode.Error{Code: "M_THREEPID_IN_USE", Status: 400, Message: "a threepid belongs to another account"}
		} else if err != nil {
			return err
		}
	}
	if c.ExternalIDs != nil {
		if err := tx.ReplaceExternalIDs(ctx, userID, *c.ExternalIDs, nowMS); errors.Is(err, store.ErrExists) {
			return errcode.InvalidParam("an external id belongs to another account")
		} else if err != nil {
			return err
		}
	}
	return nil
}

// changeByAdmin applies c to an existing account.
func (s *Service) changeByAdmin(ctx context.Context, userID string, c UserChange) error {
	u, err := s.store.GetUser(ctx, userID)
	if err != nil {
		return fmt.Errorf("get user: %w", err)
	}
	if c.Deactivated != nil && !*c.Deactivated && u.Deactivated {
		if err := s.store.InTx(ctx, func(tx *store.Tx) error { return tx.Reactivate(ctx, userID) }); err != nil {
			return fmt.Errorf("reactivate: %w", err)
		}
		u.Deactivated = false
	}
	if c.Password != nil {
		logout := c.LogoutDevices == nil || *c.LogoutDevices
		if err := s.SetPassword(ctx, userID, *c.Password, logout, ""); err != nil {
			return err
		}
	}
	if c.DisplayName != nil && !u.Deactivated {
		if err := s.SetProfileField(ctx, userID, userID, FieldDisplayName, *c.DisplayName); err != nil {
			return err
		}
	}
	if c.AvatarURL != nil && !u.Deactivated {
		if err := s.SetProfileField(ctx, userID, userID, FieldAvatarURL, *c.AvatarURL); err != nil {
			return err
		}
	}
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		if c.Admin != nil {
			if err := tx.SetUserFlag(ctx, userID, store.FlagAdmin, *c.Admin); err != nil {
				return err
			}
		}
		if c.Locked != nil {
			if err := tx.SetUserFlag(ctx, userID, store.FlagLocked, *c.Locked); err != nil {
				return err
			}
		}
		if c.SetUserType {
			if err := tx.SetUserType(ctx, userID, sql.NullString{String: c.UserType, Valid: c.UserType != ""}); err != nil {
				return err
			}
		}
		if err := s.replaceIDs(ctx, tx, userID, c, s.now().UnixMilli()); err != nil {
			return err
		}
		tx.OnCommit(func() { s.cache.invalidate(userID, "") })
		return nil
	})
	if err != nil {
		if _, ok := errcode.As(err); ok {
			return err
		}
		return fmt.Errorf("change user: %w", err)
	}
	if c.Deactivated != nil && *c.Deactivated && !u.Deactivated {
		return s.DeactivateUser(ctx, userID)
	}
	return nil
}

// setFlag sets a moderation flag of a local account; M_NOT_FOUND when
// there is none. The account's cached sessions are dropped, so that the
// next request sees the flag.
func (s *Service) setFlag(ctx context.Context, userID string, flag store.UserFlag, on bool) error {
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetUserFlag(ctx, userID, flag, on); err != nil {
			return err
		}
		tx.OnCommit(func() { s.cache.invalidate(userID, "") })
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return errcode.NotFound("user not found")
	}
	if err != nil {
		return fmt.Errorf("set %s: %w", flag, err)
	}
	return nil
}

// SetLocked locks or unlocks an account (the spec's account locking).
func (s *Service) SetLocked(ctx context.Context, userID string, locked bool) error {
	return s.setFlag(ctx, userID, store.FlagLocked, locked)
}

// SetSuspended suspends or reinstates an account.
func (s *Service) SetSuspended(ctx context.Context, userID string, suspended bool) error {
	return s.setFlag(ctx, userID, store.FlagSuspended, suspended)
}

// SetShadowBanned shadow-bans an account, or lifts it.
func (s *Service) SetShadowBanned(ctx context.Context, userID string, banned bool) error {
	return s.setFlag(ctx, userID, store.FlagShadowBanned, banned)
}

// ActiveUser returns a local account that exists and is not deactivated:
// M_NOT_FOUND otherwise (the spec's admin endpoints answer so for both).
func (s *Service) ActiveUser(ctx context.Context, userID string) (*store.User, error) {
	u, err := s.store.GetUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u.Deactivated) {
		return nil, errcode.NotFound("user not found")
	}
	if err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	return u, nil
}

// RenewAccount sets when an account's validity ends (account_validity):
// validUntil zero uses now + account_validity.period. The account is
// unlocked at once if that is in the future. It returns the new end.
func (s *Service) RenewAccount(ctx context.Context, userID string, validUntil time.Time) (time.Time, error) {
	if validUntil.IsZero() {
		p := s.cfg.AccountValidity.Period.Duration
		if p <= 0 {
			return time.Time{}, errcode.InvalidParam("expiration_ts is required when account_validity.period is not set")
		}
		validUntil = s.now().Add(p)
	}
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetValidUntil(ctx, userID, sql.NullInt64{Int64: validUntil.UnixMilli(), Valid: true}); err != nil {
			return err
		}
		tx.OnCommit(func() { s.cache.invalidate(userID, "") })
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, errcode.NotFound("user not found")
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("renew account: %w", err)
	}
	return validUntil, nil
}

// DeactivateByAdmin deactivates an account for good (DeactivateUser) and,
// with erase, erases it (EraseUser).
func (s *Service) DeactivateByAdmin(ctx context.Context, userID string, erase bool) error {
	if err := s.DeactivateUser(ctx, userID); err != nil {
		return err
	}
	if erase {
		return s.EraseUser(ctx, userID)
	}
	return nil
}

// EraseUser erases a deactivated account (GDPR article 17). Today it
// marks the account erased (the admin API shows "erased": true) and
// clears its display name and avatar (deactivation did so already; this
// holds for an account deactivated before), then runs the OnErase hook,
// where the rest of erasure is wired: what the user sent and uploaded is
// not touched here.
func (s *Service) EraseUser(ctx context.Context, userID string) error {
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		if err := tx.SetUserFlag(ctx, userID, store.FlagErased, true); err != nil {
			return err
		}
		return tx.SetProfile(ctx, userID, sql.NullString{}, sql.NullString{})
	})
	if errors.Is(err, store.ErrNotFound) {
		return errcode.NotFound("user not found")
	}
	if err != nil {
		return fmt.Errorf("erase user: %w", err)
	}
	if h := s.hooks.OnErase; h != nil {
		if err := h(ctx, userID); err != nil {
			return fmt.Errorf("erase user: %w", err)
		}
	}
	return nil
}
