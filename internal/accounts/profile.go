package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/store"
)

// Profile is a user's public profile; "" fields are unset.
type Profile struct {
	DisplayName string
	AvatarURL   string
}

// Bounds on profile fields: they are copied into every member event.
const (
	maxDisplayNameBytes = 256
	maxAvatarURLBytes   = 1000
)

// Profile returns a user's profile (another server's user through
// RemoteProfile); M_NOT_FOUND for unknown users.
func (s *Service) Profile(ctx context.Context, userID string) (*Profile, error) {
	parsed, err := id.ParseUserID(userID)
	if err != nil {
		return nil, errcode.InvalidParam("invalid user id: %v", err)
	}
	if string(parsed.Server()) != s.cfg.ServerName && s.hooks.RemoteProfile != nil {
		return s.hooks.RemoteProfile(ctx, userID)
	}
	u, err := s.store.GetUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errcode.NotFound("profile not found")
	}
	if err != nil {
		return nil, fmt.Errorf("get profile: %w", err)
	}
	return &Profile{DisplayName: u.DisplayName.String, AvatarURL: u.AvatarURL.String}, nil
}

// Profile fields that can be set.
const (
	FieldDisplayName = "displayname"
	FieldAvatarURL   = "avatar_url"
)

// SetProfileField sets a user's display name or avatar URL ("" clears it).
// Only the user may change its own profile. When the value changed,
// OnProfileChange runs with the new profile.
func (s *Service) SetProfileField(ctx context.Context, callerID, userID, field, value string) error {
	if callerID != userID {
		return errcode.Forbidden("cannot change another user's profile")
	}
	switch field {
	case FieldDisplayName:
		if len(value) > maxDisplayNameBytes {
			return errcode.InvalidParam("displayname longer than %d bytes", maxDisplayNameBytes)
		}
	case FieldAvatarURL:
		if len(value) > maxAvatarURLBytes {
			return errcode.InvalidParam("avatar_url longer than %d bytes", maxAvatarURLBytes)
		}
		// Clients are to send mxc:// URIs, but the spec does not make
		// servers refuse other strings (clients ignore what they cannot
		// load); only text that no URI holds is refused.
		if !utf8.ValidString(value) || strings.ContainsFunc(value, unicode.IsControl) {
			return errcode.InvalidParam("avatar_url must be text without control characters")
		}
	default:
		return errcode.InvalidParam("unknown profile field %q", field)
	}
	var after Profile
	changed := false
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		u, err := tx.GetUser(ctx, userID)
		if err != nil {
			return err
		}
		after = Profile{DisplayName: u.DisplayName.String, AvatarURL: u.AvatarURL.String}
		v := sql.NullString{String: value, Valid: value != ""}
		if field == FieldDisplayName {
			changed, after.DisplayName = after.DisplayName != value, value
			return tx.SetDisplayName(ctx, userID, v)
		}
		changed, after.AvatarURL = after.AvatarURL != value, value
		return tx.SetAvatarURL(ctx, userID, v)
	})
	if errors.Is(err, store.ErrNotFound) {
		return errcode.NotFound("no such user")
	}
	if err != nil {
		return fmt.Errorf("set %s: %w", field, err)
	}
	if h := s.hooks.OnProfileChange; changed && h != nil {
		s.runHook("OnProfileChange", func() error { return h(ctx, userID, after.DisplayName, after.AvatarURL) })
	}
	return nil
}
