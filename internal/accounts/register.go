package accounts

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/store"
)

// RegisterRequest is a POST /register with the fields the server uses.
type RegisterRequest struct {
	Guest                    bool   // kind=guest, which is not supported
	Username                 string // "" generates a localpart
	Password                 string
	DeviceID                 string
	InitialDeviceDisplayName string
	InhibitLogin             bool
	RefreshToken             bool
	Auth                     json.RawMessage
	IP                       string
}

// Register creates an account after user-interactive auth: m.login.dummy
// when registration is open, m.login.registration_token in token mode;
// M_FORBIDDEN when it is closed. Unless login is inhibited, the result
// carries a device and tokens; otherwise only the user id.
func (s *Service) Register(ctx context.Context, r RegisterRequest) (*LoginResult, error) {
	if r.Guest {
		return nil, errcode.Forbidden("guest accounts are not supported")
	}
	var flows [][]string
	switch s.cfg.Registration.Mode {
	case config.RegistrationOpen:
		flows = [][]string{{AuthDummy}}
	case config.RegistrationToken:
		flows = [][]string{{AuthRegistrationToken}}
	default:
		return nil, errcode.Forbidden("registration is disabled")
	}
	// The spec wants username errors before user-interactive auth.
	var localpart string
	if r.Username != "" {
		var err error
		if localpart, err = s.CheckUsername(ctx, r.Username); err != nil {
			return nil, err
		}
	}
	if r.Password != "" {
		if err := s.checkNewPassword(r.Password); err != nil {
			return nil, err
		}
	}
	if err := checkDeviceID(r.DeviceID); err != nil {
		return nil, err
	}
	sess, err := s.userInteractiveAuth(ctx, uiaOp{name: "register", flows: flows}, r.Auth)
	if err != nil {
		return nil, err
	}
	if r.Password == "" {
		return nil, errcode.MissingParam("password is required")
	}
	hash, err := s.hashPassword(ctx, r.Password)
	if err != nil {
		return nil, err
	}
	a := newAccount{localpart: localpart, passwordHash: hash, regToken: sess.params.RegistrationToken}
	if !r.InhibitLogin {
		a.login = &sessionParams{deviceID: r.DeviceID, displayName: r.InitialDeviceDisplayName, ip: r.IP, refresh: r.RefreshToken}
	}
	res, err := s.createAccount(ctx, a)
	if errors.Is(err, errTokenUsedUp) {
		// Used up or expired since the stage was completed: the client
		// must complete it again with another token.
		sess.completed, sess.params.RegistrationToken = nil, ""
		if err := s.saveUIASession(ctx, sess); err != nil {
			return nil, err
		}
		return nil, &AuthRequired{Flows: flows, Params: map[string]any{}, Session: sess.id,
			Err: errcode.Unauthorized("the registration token is no longer valid")}
	}
	if err != nil {
		return nil, err
	}
	s.finishUIA(ctx, sess)
	return res, nil
}

// CheckUsername maps a requested username to the localpart it would get
// (lowercased) and checks that it is valid (M_INVALID_USERNAME) and free
// (M_USER_IN_USE).
func (s *Service) CheckUsername(ctx context.Context, username string) (string, error) {
	localpart := strings.ToLower(username)
	if _, err := id.NewUserID(localpart, s.serverName()); err != nil {
		return "", errcode.InvalidUsername("invalid username: %v", err)
	}
	taken, err := s.store.UserExists(ctx, s.localUserID(localpart))
	if err != nil {
		return "", fmt.Errorf("check username: %w", err)
	}
	if taken {
		return "", errcode.UserInUse("this user id is already taken")
	}
	return localpart, nil
}

// CreateUser creates an account without logging it in, for the command line
// and tests; it returns the user id.
func (s *Service) CreateUser(ctx context.Context, localpart, password string, admin bool) (string, error) {
	lp, err := s.CheckUsername(ctx, localpart)
	if err != nil {
		return "", err
	}
	if err := s.checkNewPassword(password); err != nil {
		return "", err
	}
	hash, err := s.hashPassword(ctx, password)
	if err != nil {
		return "", err
	}
	res, err := s.createAccount(ctx, newAccount{localpart: lp, passwordHash: hash, admin: admin})
	if err != nil {
		return "", err
	}
	return res.UserID, nil
}

// newAccount is an account to create. The password is already hashed.
type newAccount struct {
	localpart    string // "" generates one
	passwordHash string
	admin        bool
	displayName  string         // "" starts with the localpart
	regToken     string         // counted as used in the same transaction
	login        *sessionParams // nil: no device, no tokens
	// extra runs in the account's transaction after the user row is in.
	extra func(tx *store.Tx, userID string) error
}

// errTokenUsedUp: the registration token expired or ran out of uses.
var errTokenUsedUp = errors.New("registration token used up or expired")

// generatedLocalpartAlphabet is used for users who registered without a
// username.
const generatedLocalpartAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// createAccount inserts the user and, when asked, its first device and
// tokens, in one transaction.
func (s *Service) createAccount(ctx context.Context, a newAccount) (*LoginResult, error) {
	for attempt := 0; ; attempt++ {
		lp := a.localpart
		if lp == "" {
			lp = "u" + randomString(generatedLocalpartAlphabet, 11)
		}
		display := a.displayName
		if display == "" {
			display = lp
		}
		res := &LoginResult{UserID: s.localUserID(lp)}
		err := s.store.InTx(ctx, func(tx *store.Tx) error {
			if a.regToken != "" {
				err := tx.UseRegistrationToken(ctx, a.regToken, s.now().UnixMilli())
				if errors.Is(err, store.ErrNotFound) {
					return errTokenUsedUp
				}
				if err != nil {
					return fmt.Errorf("use registration token: %w", err)
				}
			}
			err := tx.CreateUser(ctx, store.User{UserID: res.UserID, PasswordHash: a.passwordHash, IsAdmin: a.admin,
				DisplayName: sql.NullString{String: display, Valid: true}})
			if err != nil {
				return err
			}
			if a.extra != nil {
				if err := a.extra(tx, res.UserID); err != nil {
					return err
				}
			}
			if a.login == nil {
				return nil
			}
			res.DeviceID, res.Tokens, err = s.startSession(ctx, tx, res.UserID, *a.login)
			return err
		})
		switch {
		case errors.Is(err, store.ErrExists) && a.localpart == "" && attempt < 5:
			continue // a generated localpart collided
		case errors.Is(err, store.ErrExists):
			return nil, errcode.UserInUse("this user id is already taken")
		case errors.Is(err, errTokenUsedUp):
			return nil, err
		case err != nil:
			return nil, fmt.Errorf("create account: %w", err)
		}
		if h := s.hooks.OnRegister; h != nil {
			s.runHook("OnRegister", func() error { return h(ctx, res.UserID, display) })
		}
		return res, nil
	}
}

// RegistrationToken is a token that allows registration in token mode.
type RegistrationToken struct {
	Token       string
	UsesAllowed *int64 // nil: unlimited
	Pending     int64
	Completed   int64
	Expiry      *time.Time // nil: never
}

// Valid reports whether the token can still be used at now.
func (t RegistrationToken) Valid(now time.Time) bool {
	return (t.UsesAllowed == nil || t.Completed+t.Pending < *t.UsesAllowed) && (t.Expiry == nil || now.Before(*t.Expiry))
}

func tokenFromRow(r store.RegistrationToken) RegistrationToken {
	t := RegistrationToken{Token: r.Token, Pending: r.Pending, Completed: r.Completed}
	if r.UsesAllowed.Valid {
		n := r.UsesAllowed.Int64
		t.UsesAllowed = &n
	}
	if r.ExpiryTS.Valid {
		e := time.UnixMilli(r.ExpiryTS.Int64)
		t.Expiry = &e
	}
	return t
}

// registrationTokenAlphabet is the opaque identifier grammar the spec gives
// registration tokens.
const registrationTokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~-"

// CreateRegistrationToken stores a registration token; an empty token
// generates a random one. usesAllowed nil means unlimited, expiry nil never.
func (s *Service) CreateRegistrationToken(ctx context.Context, token string, usesAllowed *int64, expiry *time.Time) (string, error) {
	if len(token) > 64 {
		return "", errcode.InvalidParam("token longer than 64 characters")
	}
	for _, c := range token {
		if !strings.ContainsRune(registrationTokenAlphabet, c) {
			return "", errcode.InvalidParam("token may only contain A-Z, a-z, 0-9, '.', '_', '~' and '-'")
		}
	}
	row := store.RegistrationToken{}
	if usesAllowed != nil {
		if *usesAllowed < 0 {
			return "", errcode.InvalidParam("uses allowed must not be negative")
		}
		row.UsesAllowed = sql.NullInt64{Int64: *usesAllowed, Valid: true}
	}
	if expiry != nil {
		if !expiry.After(s.now()) {
			return "", errcode.InvalidParam("expiry must be in the future")
		}
		row.ExpiryTS = sql.NullInt64{Int64: expiry.UnixMilli(), Valid: true}
	}
	for attempt := 0; ; attempt++ {
		row.Token = token
		if token == "" {
			// Letters and digits only: easy to read out and type.
			row.Token = randomString(alnum, 16)
		}
		err := s.store.InTx(ctx, func(tx *store.Tx) error { return tx.CreateRegistrationToken(ctx, row) })
		switch {
		case errors.Is(err, store.ErrExists) && token == "" && attempt < 5:
			continue
		case errors.Is(err, store.ErrExists):
			return "", errcode.InvalidParam("token %q already exists", token)
		case err != nil:
			return "", fmt.Errorf("create registration token: %w", err)
		}
		return row.Token, nil
	}
}

// ListRegistrationTokens returns every registration token, oldest first.
func (s *Service) ListRegistrationTokens(ctx context.Context) ([]RegistrationToken, error) {
	rows, err := s.store.RegistrationTokens(ctx)
	if err != nil {
		return nil, fmt.Errorf("list registration tokens: %w", err)
	}
	out := make([]RegistrationToken, 0, len(rows))
	for _, r := range rows {
		out = append(out, tokenFromRow(r))
	}
	return out, nil
}

// RevokeRegistrationToken deletes a token; M_NOT_FOUND when unknown.
func (s *Service) RevokeRegistrationToken(ctx context.Context, token string) error {
	err := s.store.InTx(ctx, func(tx *store.Tx) error { return tx.DeleteRegistrationToken(ctx, token) })
	if errors.Is(err, store.ErrNotFound) {
		return errcode.NotFound("no such registration token")
	}
	if err != nil {
		return fmt.Errorf("revoke registration token: %w", err)
	}
	return nil
}

// RegistrationTokenValid reports whether a token could register an account
// now. M_FORBIDDEN when registration is closed: no token is valid then.
func (s *Service) RegistrationTokenValid(ctx context.Context, token string) (bool, error) {
	if s.cfg.Registration.Mode == config.RegistrationClosed {
		return false, errcode.Forbidden("registration is disabled")
	}
	if token == "" || len(token) > 64 {
		return false, nil
	}
	row, err := s.store.GetRegistrationToken(ctx, token)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get registration token: %w", err)
	}
	return tokenFromRow(*row).Valid(s.now()), nil
}

// AppServiceRegisterRequest is a POST /register of type
// m.login.application_service, whose namespace the caller checked.
type AppServiceRegisterRequest struct {
	Username                 string
	DeviceID                 string
	InitialDeviceDisplayName string
	InhibitLogin             bool
	RefreshToken             bool
	IP                       string
}

// AppServiceUserID is the user id a username registered by an
// application service gets (lowercased), or M_INVALID_USERNAME.
func (s *Service) AppServiceUserID(username string) (string, error) {
	localpart := strings.ToLower(username)
	if _, err := id.NewUserID(localpart, s.serverName()); err != nil {
		return "", errcode.InvalidUsername("invalid username: %v", err)
	}
	return s.localUserID(localpart), nil
}

// RegisterAppServiceUser creates a passwordless account for an
// application service, bypassing user-interactive auth and the
// registration mode ("Server admin style permissions").
func (s *Service) RegisterAppServiceUser(ctx context.Context, r AppServiceRegisterRequest) (*LoginResult, error) {
	localpart, err := s.CheckUsername(ctx, r.Username)
	if err != nil {
		return nil, err
	}
	if err := checkDeviceID(r.DeviceID); err != nil {
		return nil, err
	}
	a := newAccount{localpart: localpart}
	if !r.InhibitLogin {
		a.login = &sessionParams{deviceID: r.DeviceID, displayName: r.InitialDeviceDisplayName, ip: r.IP, refresh: r.RefreshToken}
	}
	return s.createAccount(ctx, a)
}

// EnsureAppServiceUser creates an application service's sender account
// when it does not exist yet.
func (s *Service) EnsureAppServiceUser(ctx context.Context, userID string) error {
	ok, err := s.store.UserExists(ctx, userID)
	if err != nil || ok {
		return err
	}
	localpart, _, _ := strings.Cut(strings.TrimPrefix(userID, "@"), ":")
	_, err = s.createAccount(ctx, newAccount{localpart: localpart})
	if e, ok := errcode.As(err); ok && e.Code == "M_USER_IN_USE" {
		return nil // made meanwhile
	}
	return err
}

// RegistrationFormOpen reports whether people may create an account with
// a password on the server's own pages (the OAuth 2.0 API's prompt=create):
// registration open or by token, and password login on.
func (s *Service) RegistrationFormOpen() bool {
	m := s.cfg.Registration.Mode
	return (m == config.RegistrationOpen || m == config.RegistrationToken) && s.PasswordLoginEnabled()
}

// RegistrationNeedsToken reports whether registration takes a
// registration token.
func (s *Service) RegistrationNeedsToken() bool {
	return s.cfg.Registration.Mode == config.RegistrationToken
}

// ErrBadRegistrationToken is a registration token that is unknown, used
// up or expired.
var ErrBadRegistrationToken = errcode.Unauthorized("invalid registration token")

// RegisterWithPassword creates an account from the registration page
// under the rules of POST /register: M_FORBIDDEN when the form is closed
// (RegistrationFormOpen), M_INVALID_USERNAME, M_USER_IN_USE,
// M_WEAK_PASSWORD, ErrBadRegistrationToken in token mode (the token is
// counted in the account's transaction). No device is created: the
// caller logs the browser in. It returns the user id.
func (s *Service) RegisterWithPassword(ctx context.Context, username, password, token string) (string, error) {
	if !s.RegistrationFormOpen() {
		return "", errcode.Forbidden("registration is disabled")
	}
	localpart, err := s.CheckUsername(ctx, username)
	if err != nil {
		return "", err
	}
	if err := s.checkNewPassword(password); err != nil {
		return "", err
	}
	if !s.RegistrationNeedsToken() {
		token = ""
	} else if ok, err := s.RegistrationTokenValid(ctx, token); err != nil {
		return "", err
	} else if !ok {
		return "", ErrBadRegistrationToken
	}
	hash, err := s.hashPassword(ctx, password)
	if err != nil {
		return "", err
	}
	res, err := s.createAccount(ctx, newAccount{localpart: localpart, passwordHash: hash, regToken: token})
	if errors.Is(err, errTokenUsedUp) {
		return "", ErrBadRegistrationToken
	}
	if err != nil {
		return "", err
	}
	s.log.Info("account registered on the registration page", "user", res.UserID)
	return res.UserID, nil
}
