package accounts

import (
	"context"
	"crypto/rand"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/matrix/id"
	"luxchat/internal/store"
)

// Service is the accounts domain. It is safe for concurrent use.
//
// Password hashing is slow on purpose and never runs inside a database
// transaction: hash first, then write. At most GOMAXPROCS hashes run at once
// (each argon2id call holds its memory cost in RAM).
//
// Access tokens are looked up through an in-process cache (see tokenCache)
// that every change made here invalidates right after its commit.
type Service struct {
	cfg   *config.Config
	store *store.Store
	log   *slog.Logger

	hooks Hooks

	cache    *tokenCache
	seen     seenLog
	throttle *loginThrottle // nil: failed logins are not throttled
	hashSem  chan struct{}
	now      func() time.Time // see SetClock

	dummyOnce sync.Once
	dummyHash string // hashed when a user is unknown, so timing does not tell

	lastSweep atomic.Int64 // unix ms of the last sweep of stale UIA sessions and nonces
}

// Hooks are what other domains do when accounts change; the server's
// wiring supplies them (nil: nothing to do). They run after the change
// has been committed; an error is logged, the change stands.
type Hooks struct {
	// OnDeactivate runs after an account was deactivated, so that rooms can
	// make the user leave.
	OnDeactivate func(ctx context.Context, userID string) error
	// OnProfileChange runs after a display name or avatar changed, so that
	// rooms can update the user's member events.
	OnProfileChange func(ctx context.Context, userID string, displayName, avatarURL string) error
	// RemoteProfile fetches the profile of another server's user (nil:
	// such profiles are not found).
	RemoteProfile func(ctx context.Context, userID string) (*Profile, error)
	// OnDevicesDeleted runs after devices were deleted (logout, device
	// deletion, password change, deactivation), so that their end-to-end
	// keys can be deleted too.
	OnDevicesDeleted func(ctx context.Context, userID string, deviceIDs []string) error
	// OnDeviceRenamed runs after a device's display name changed, which
	// others see with its keys.
	OnDeviceRenamed func(ctx context.Context, userID, deviceID string) error
	// OnRegister runs after an account was created, with its first
	// display name, so that the user directory can index it.
	OnRegister func(ctx context.Context, userID, displayName string) error
	// OnErase runs when a deactivated account is erased (EraseUser), for
	// the erasure of what other domains hold of it. Unlike the other
	// hooks its error is returned to the caller: erasure must not be
	// reported done when it is not.
	OnErase func(ctx context.Context, userID string) error
}

// New returns the accounts service.
func New(cfg *config.Config, st *store.Store, log *slog.Logger, hooks Hooks) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{
		cfg:      cfg,
		store:    st,
		log:      log,
		hooks:    hooks,
		cache:    newTokenCache(),
		throttle: newLoginThrottle(cfg.RateLimits.FailedLogins, time.Now),
		// A bounded number of hashes at once: each argon2id call holds
		// its whole memory cost, and bursts of logins must not multiply
		// it beyond what the operator allows.
		hashSem: make(chan struct{}, hashConcurrency(cfg)),
		now:     time.Now,
	}
}

// SetClock replaces the clock that token, session and registration token
// expiry are measured with (time.Now), so that tests outside the package
// can move time instead of sleeping. Call it before the service is used.
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// serverName is the server part of local user ids.
func (s *Service) serverName() id.ServerName { return id.ServerName(s.cfg.ServerName) }

// localUserID returns "@localpart:server".
func (s *Service) localUserID(localpart string) string {
	return "@" + localpart + ":" + s.cfg.ServerName
}

// isLocal reports whether a user id belongs to this server.
func (s *Service) isLocal(userID string) bool {
	u, err := id.ParseUserID(userID)
	return err == nil && u.Server() == s.serverName()
}

// alnum is the alphabet of session ids and generated registration tokens.
const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomString returns n characters drawn from alphabet (len ≤ 256).
func randomString(alphabet string, n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	// The slight modulo bias does not matter for identifiers that only need
	// to be unpredictable and unique.
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// runHook runs a post-commit hook, logging its failure.
func (s *Service) runHook(name string, f func() error) {
	if err := f(); err != nil {
		s.log.Error("accounts hook failed", "hook", name, "err", err)
	}
}

// devicesDeleted runs OnDevicesDeleted (the tokens cache was invalidated on
// commit).
func (s *Service) devicesDeleted(ctx context.Context, userID string, deviceIDs []string) {
	if len(deviceIDs) == 0 {
		return
	}
	if h := s.hooks.OnDevicesDeleted; h != nil {
		s.runHook("OnDevicesDeleted", func() error { return h(ctx, userID, deviceIDs) })
	}
}

// hashConcurrency is how many password hashes may run at once: the
// configured number, or one per core.
func hashConcurrency(cfg *config.Config) int {
	if n := cfg.Auth.PasswordHashConcurrency; n > 0 {
		return n
	}
	return runtime.GOMAXPROCS(0)
}
