package accounts

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// LoginRequest is a POST /login with the fields the server uses.
type LoginRequest struct {
	Type       string
	Identifier *Identifier
	User       string // deprecated top-level user
	Medium     string // deprecated third-party login
	Address    string
	Password   string
	Token      string // m.login.token
	// DeviceID reuses a device (its old tokens are revoked) or names a new
	// one; "" generates one.
	DeviceID                 string
	InitialDeviceDisplayName string
	RefreshToken             bool // the client supports refresh tokens
	IP                       string
}

// LoginResult is what login and registration hand out.
type LoginResult struct {
	UserID   string
	DeviceID string
	Tokens
}

// LoginPassword is the password login type.
const LoginPassword = "m.login.password"

// Login checks a user's password (m.login.password) or spends a login
// token (m.login.token) and starts a session on a device.
func (s *Service) Login(ctx context.Context, r LoginRequest) (*LoginResult, error) {
	// Checked first: a refused request must not spend a login token.
	if err := checkDeviceID(r.DeviceID); err != nil {
		return nil, err
	}
	var u *store.User
	switch {
	case r.Type == LoginPassword && s.PasswordLoginEnabled():
		if r.Identifier == nil && r.User == "" && (r.Medium != "" || r.Address != "") {
			return nil, errcode.Forbidden("unknown third-party identifier")
		}
		userID, err := s.resolveUser(r.Identifier, r.User)
		if err != nil {
			return nil, err
		}
		if u, err = s.throttledVerify(ctx, userID, r.Password, r.IP); err != nil {
			return nil, err
		}
	case r.Type == LoginToken:
		var err error
		if u, err = s.takeLoginToken(ctx, r.Token); err != nil {
			return nil, err
		}
		// The identifier, when given, must name the token's user.
		if r.Identifier != nil || r.User != "" {
			userID, err := s.resolveUser(r.Identifier, r.User)
			if err != nil {
				return nil, err
			}
			if userID != u.UserID {
				return nil, errcode.Forbidden("the login token is not for this user")
			}
		}
	default:
		return nil, errcode.Unknown("unsupported login type %q", r.Type)
	}
	return s.loginSession(ctx, u.UserID, r)
}

// loginSession starts the session (device and tokens) a login asked for.
func (s *Service) loginSession(ctx context.Context, userID string, r LoginRequest) (*LoginResult, error) {
	res := &LoginResult{UserID: userID}
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		var err error
		res.DeviceID, res.Tokens, err = s.startSession(ctx, tx, userID, sessionParams{
			deviceID: r.DeviceID, displayName: r.InitialDeviceDisplayName, ip: r.IP, refresh: r.RefreshToken,
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	return res, nil
}

// errBadCredentials is the one answer for an unknown user or a wrong
// password, so that login does not tell which.
func errBadCredentials() *errcode.Error { return errcode.Forbidden("invalid username or password") }

// throttledVerify is verifyPassword behind the failed-login throttle of the
// account and, when known, the client address.
func (s *Service) throttledVerify(ctx context.Context, userID, password, ip string) (*store.User, error) {
	done, err := s.throttle.attempt(strings.ToLower(userID), ip)
	if err != nil {
		return nil, err
	}
	u, err := s.verifyPassword(ctx, userID, password)
	e, ok := errcode.As(err)
	done(ok && (e.Code == "M_FORBIDDEN" || e.Code == "M_USER_DEACTIVATED"))
	return u, err
}

// verifyPassword checks a local user's password. Unknown users cost a hash
// too, so that timing does not reveal which accounts exist. A deactivated
// account is M_USER_DEACTIVATED. On success with an outdated hash (bcrypt
// from Synapse, or older argon2 costs) the hash is upgraded.
func (s *Service) verifyPassword(ctx context.Context, userID, password string) (*store.User, error) {
	if len(password) > maxPasswordBytes {
		return nil, errBadCredentials()
	}
	u, err := s.lookupUser(ctx, userID)
	if err != nil {
		return nil, err
	}
	if u == nil || u.Deactivated || u.PasswordHash == "" {
		if _, _, err := s.checkPassword(ctx, s.dummy(), password); err != nil {
			return nil, err
		}
		if u != nil && u.Deactivated {
			return nil, errcode.UserDeactivated("this account has been deactivated")
		}
		return nil, errBadCredentials()
	}
	ok, rehash, err := s.checkPassword(ctx, u.PasswordHash, password)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errBadCredentials()
	}
	if rehash {
		if h, err := s.hashPassword(ctx, password); err == nil {
			err = s.store.ReplacePasswordHash(ctx, u.UserID, u.PasswordHash, h)
			if err != nil {
				s.log.Warn("upgrade password hash", "user", u.UserID, "err", err)
			}
		}
	}
	return u, nil
}

// lookupUser finds a local user by id, trying the lowercased localpart when
// the exact id is unknown (user ids are lowercase since registration maps
// usernames to lowercase). nil when there is no such user.
func (s *Service) lookupUser(ctx context.Context, userID string) (*store.User, error) {
	u, err := s.store.GetUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		local, server, _ := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
		if lower := "@" + strings.ToLower(local) + ":" + server; lower != userID {
			u, err = s.store.GetUser(ctx, lower)
		}
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up user: %w", err)
	}
	return u, nil
}

// dummy returns a hash to verify against when there is no real one.
func (s *Service) dummy() string {
	s.dummyOnce.Do(func() {
		// Not the caller's context: a cancelled request must not leave
		// every later one without a dummy hash.
		h, err := s.hashPassword(context.Background(), randomString(alnum, 16))
		if err != nil {
			s.log.Warn("dummy password hash", "err", err)
		}
		s.dummyHash = h
	})
	return s.dummyHash
}

// sessionParams describe the device a login or registration starts.
type sessionParams struct {
	deviceID    string // "" generates one
	displayName string // for a new device
	ip          string
	refresh     bool
}

// deviceIDAlphabet matches the device ids clients are used to (10 capitals).
const deviceIDAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

// maxDeviceIDBytes bounds client-chosen device ids.
const maxDeviceIDBytes = 255

func checkDeviceID(deviceID string) error {
	if len(deviceID) > maxDeviceIDBytes {
		return errcode.InvalidParam("device_id longer than %d bytes", maxDeviceIDBytes)
	}
	for _, c := range deviceID {
		if c < 0x21 || c == 0x7f {
			return errcode.InvalidParam("device_id must not contain spaces or control characters")
		}
	}
	return nil
}

// startSession gives a user a device and tokens. An existing device keeps
// its name (and its keys) but loses its old tokens, as the spec asks when a
// client logs in again with its device id.
func (s *Service) startSession(ctx context.Context, tx *store.Tx, userID string, p sessionParams) (string, Tokens, error) {
	deviceID, err := s.sessionDevice(ctx, tx, userID, p)
	if err != nil {
		return "", Tokens{}, err
	}
	t, err := s.issueTokens(ctx, tx, userID, deviceID, p.refresh)
	if err != nil {
		return "", Tokens{}, err
	}
	return deviceID, *t, nil
}

// sessionDevice creates the device of a new session, or revokes the
// tokens of the existing device it reuses; it returns the device id.
func (s *Service) sessionDevice(ctx context.Context, tx *store.Tx, userID string, p sessionParams) (string, error) {
	deviceID := p.deviceID
	if deviceID == "" {
		deviceID = randomString(deviceIDAlphabet, 10)
	}
	_, err := tx.GetDevice(ctx, userID, deviceID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		now := s.now().UnixMilli()
		err = tx.UpsertDevice(ctx, store.Device{
			UserID: userID, DeviceID: deviceID,
			DisplayName: sql.NullString{String: p.displayName, Valid: p.displayName != ""},
			LastSeenTS:  sql.NullInt64{Int64: now, Valid: true},
			LastSeenIP:  sql.NullString{String: p.ip, Valid: p.ip != ""},
		})
		if err != nil {
			return "", fmt.Errorf("create device: %w", err)
		}
	case err != nil:
		return "", fmt.Errorf("look up device: %w", err)
	default:
		if err := tx.DeleteDeviceTokens(ctx, userID, deviceID); err != nil {
			return "", fmt.Errorf("revoke device tokens: %w", err)
		}
		tx.OnCommit(func() { s.cache.invalidate(userID, deviceID) })
	}
	return deviceID, nil
}

// Logout deletes the device of an access token (and so every token of it).
func (s *Service) Logout(ctx context.Context, userID, deviceID string) error {
	return s.deleteDevices(ctx, userID, []string{deviceID})
}

// LogoutAll deletes every device of a user.
func (s *Service) LogoutAll(ctx context.Context, userID string) error {
	var deleted []string
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if deleted, err = tx.DeleteAllDevices(ctx, userID, ""); err != nil {
			return err
		}
		tx.OnCommit(func() { s.cache.invalidate(userID, "") })
		return nil
	})
	if err != nil {
		return fmt.Errorf("log out everywhere: %w", err)
	}
	s.devicesDeleted(ctx, userID, deleted)
	return nil
}

// LoginAppService is a POST /login of type m.login.application_service
// for a user the caller's namespace holds (checked by the caller): a
// session on a device, no password.
func (s *Service) LoginAppService(ctx context.Context, userID string, r LoginRequest) (*LoginResult, error) {
	u, err := s.lookupUser(ctx, userID)
	if err != nil {
		return nil, err
	}
	if u == nil {
		return nil, errcode.Forbidden("unknown user %s", userID)
	}
	if u.Deactivated {
		return nil, errcode.UserDeactivated("this account has been deactivated")
	}
	if err := checkDeviceID(r.DeviceID); err != nil {
		return nil, err
	}
	return s.loginSession(ctx, u.UserID, r)
}

// ResolveUserID is the user id a login identifier names.
func (s *Service) ResolveUserID(ident *Identifier, user string) (string, error) {
	return s.resolveUser(ident, user)
}

// CreateAppServiceDevice creates a device of a user without tokens
// (MSC4190: PUT /devices/{deviceId} by an application service); false
// when it existed.
func (s *Service) CreateAppServiceDevice(ctx context.Context, userID, deviceID, displayName string) (bool, error) {
	if err := checkDeviceID(deviceID); err != nil {
		return false, err
	}
	created := false
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.GetDevice(ctx, userID, deviceID)
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		created = true
		return tx.UpsertDevice(ctx, store.Device{UserID: userID, DeviceID: deviceID,
			DisplayName: sql.NullString{String: displayName, Valid: displayName != ""},
			LastSeenTS:  sql.NullInt64{Int64: s.now().UnixMilli(), Valid: true}})
	})
	return created, err
}

// DeleteDevicesNoAuth deletes devices without user-interactive auth: an
// application service deleting its users' devices (MSC4190).
func (s *Service) DeleteDevicesNoAuth(ctx context.Context, userID string, deviceIDs []string) error {
	return s.deleteDevices(ctx, userID, deviceIDs)
}
