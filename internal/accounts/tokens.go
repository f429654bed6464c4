package accounts

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	gosync "sync"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// Token prefixes make leaked tokens recognisable (secret scanners, logs).
const (
	accessPrefix  = "lxc_"
	refreshPrefix = "lxr_"
)

// newToken returns prefix + 32 random bytes in unpadded base64url.
func newToken(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// hashToken is how tokens are stored and looked up: SHA-256, hex. A fast
// hash suffices because the tokens are 256-bit random values.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Session is the owner of an access token.
type Session struct {
	UserID    string
	DeviceID  string
	IsAdmin   bool
	TokenHash string
	ExpiresTS int64 // unix ms; 0: the token does not expire
}

// cacheTTL bounds how long a cached session may outlive a change made
// outside this process (another process on the same PostgreSQL, or the
// database edited by hand). Changes made through Service are applied to the
// cache at once. The tokens in use are re-checked in bulk before they get
// that old (RecheckTokens), so that a client polling every 30 s does not
// cost a query per poll; a token unused for keptUnused leaves the cache.
const (
	cacheTTL   = 30 * time.Second
	keptUnused = 2 * cacheTTL
)

// maxCached bounds the cache; when full it is emptied (rare, and refilling
// costs one query per active token).
const maxCached = 100_000

// tokenCache maps token hashes to sessions.
//
// Concurrency: one mutex guards everything. A reader that misses records the
// generation before querying the database and stores its result only if no
// invalidation happened since, so that a lookup racing with a logout cannot
// put a revoked token back into the cache. (The generation is global because
// the token's user is unknown before the lookup.)
type tokenCache struct {
	mu     gosync.Mutex
	byHash map[string]cacheEntry
	// byUser lists each user's cached token hashes (strings shared with
	// byHash's keys): a slice, most users having one token, where a map
	// per user cost ~200 bytes of each of 10,000 connected clients.
	byUser map[string][]string
	gen    uint64 // invalidations so far
}

type cacheEntry struct {
	s       Session
	fetched time.Time
	seen    time.Time // when the device's last-seen time was last stored
	used    time.Time // last Authenticate that found it
}

// seenEvery is how often an active device's last-seen time is noted: a
// write per token lookup (one per cacheTTL for a long-polling client) was
// most of what a thousand idle pollers cost.
const seenEvery = 5 * time.Minute

// seenLog holds the last-seen times of devices noted and not stored yet:
// the server stores them in bulk every half minute (FlushSeen), rather
// than a write transaction with the first request of every session (a
// join by a client that just logged in paid for two commits). Device
// reads show them meanwhile.
type seenLog struct {
	mu      gosync.Mutex
	pending map[store.DeviceKey]int64 // unix ms
}

func (l *seenLog) note(userID, deviceID string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		l.pending = map[store.DeviceKey]int64{}
	}
	k := store.DeviceKey{UserID: userID, DeviceID: deviceID}
	l.pending[k] = max(l.pending[k], t.UnixMilli())
}

// of returns the time noted for a device and not stored yet (0: none).
func (l *seenLog) of(userID, deviceID string) int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending[store.DeviceKey{UserID: userID, DeviceID: deviceID}]
}

// take empties the log.
func (l *seenLog) take() map[store.DeviceKey]int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.pending
	l.pending = nil
	return m
}

// putBack returns times whose write failed, for the next flush.
func (l *seenLog) putBack(m map[store.DeviceKey]int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pending == nil {
		l.pending = map[store.DeviceKey]int64{}
	}
	for k, ts := range m {
		l.pending[k] = max(l.pending[k], ts)
	}
}

// FlushSeen stores the devices' last-seen times noted since the last
// flush, in one transaction. The server's housekeeping calls it every
// half minute and at shutdown.
func (s *Service) FlushSeen(ctx context.Context) error {
	seen := s.seen.take()
	if err := s.store.TouchDevicesSeen(ctx, seen); err != nil {
		s.seen.putBack(seen)
		return fmt.Errorf("store devices' last-seen times: %w", err)
	}
	return nil
}

func newTokenCache() *tokenCache {
	return &tokenCache{byHash: map[string]cacheEntry{}, byUser: map[string][]string{}}
}

// get returns the cached session of a token and, cached or expired, when
// its device's last-seen time was last stored (zero if unknown).
func (c *tokenCache) get(hash string, now time.Time) (s Session, seen time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byHash[hash]
	if !ok || now.Sub(e.fetched) > cacheTTL {
		return Session{}, e.seen, false
	}
	e.used = now
	c.byHash[hash] = e
	return e.s, e.seen, true
}

// markSeen records that the device's last-seen time of a cached token
// was stored at t.
func (c *tokenCache) markSeen(hash string, t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byHash[hash]; ok {
		e.seen = t
		c.byHash[hash] = e
	}
}

// due returns the tokens to re-check now (fetched at least half cacheTTL
// ago, and used within cacheTTL) with when each was fetched, and drops
// those unused for keptUnused. A token its client stopped using is not
// re-checked: once older than cacheTTL it is not served (get), and its
// next use reads it again; 10,000 clients that came and went would
// otherwise be re-checked until they leave the cache.
func (c *tokenCache) due(now time.Time) map[string]time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]time.Time{}
	for h, e := range c.byHash {
		switch {
		case now.Sub(e.used) > keptUnused:
			c.drop(h, e.s.UserID)
		case now.Sub(e.fetched) >= cacheTTL/2 && now.Sub(e.used) <= cacheTTL:
			out[h] = e.fetched
		}
	}
	return out
}

// rechecked stores the answer of a bulk re-check started at now for the
// tokens of due: a session found replaces the entry, a token not found
// (or of a deactivated user) leaves the cache. Entries invalidated or
// fetched again meanwhile are left alone.
func (c *tokenCache) rechecked(due map[string]time.Time, found map[string]store.Session, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, fetched := range due {
		e, ok := c.byHash[h]
		if !ok || !e.fetched.Equal(fetched) {
			continue
		}
		row, ok := found[h]
		if !ok || row.Deactivated || row.UserID != e.s.UserID || row.DeviceID != e.s.DeviceID {
			c.drop(h, e.s.UserID)
			continue
		}
		e.s.IsAdmin, e.s.ExpiresTS, e.fetched = row.IsAdmin, row.ExpiresTS, now
		c.byHash[h] = e
	}
}

// drop removes one cached token; c.mu is held.
func (c *tokenCache) drop(hash, userID string) {
	delete(c.byHash, hash)
	hs := slices.DeleteFunc(c.byUser[userID], func(h string) bool { return h == hash })
	if len(hs) == 0 {
		delete(c.byUser, userID)
	} else {
		c.byUser[userID] = hs
	}
}

// generation returns a value to pass to put for a lookup about to start.
func (c *tokenCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

func (c *tokenCache) put(s Session, gen uint64, now, seen time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return // something was invalidated while the lookup ran
	}
	if len(c.byHash) >= maxCached {
		clear(c.byHash)
		clear(c.byUser)
	}
	if _, ok := c.byHash[s.TokenHash]; !ok {
		c.byUser[s.UserID] = append(c.byUser[s.UserID], s.TokenHash)
	}
	c.byHash[s.TokenHash] = cacheEntry{s: s, fetched: now, seen: seen, used: now}
}

// invalidate drops the cached tokens of a user's device, or of all the
// user's devices when deviceID is "".
func (c *tokenCache) invalidate(userID, deviceID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	hs := slices.DeleteFunc(c.byUser[userID], func(h string) bool {
		if deviceID == "" || c.byHash[h].s.DeviceID == deviceID {
			delete(c.byHash, h)
			return true
		}
		return false
	})
	if len(hs) == 0 {
		delete(c.byUser, userID)
	} else {
		c.byUser[userID] = hs
	}
}

// Authenticate resolves an access token. Errors are *errcode.Error:
// M_UNKNOWN_TOKEN, with soft_logout true when the token has expired (the
// device survives and a refresh or a new login with its device id revives
// the session).
func (s *Service) Authenticate(ctx context.Context, token string) (*Session, error) {
	hash := hashToken(token)
	now := s.now()
	sess, seen, ok := s.cache.get(hash, now)
	if !ok {
		gen := s.cache.generation()
		row, err := s.store.LookupAccessToken(ctx, hash)
		if errors.Is(err, store.ErrNotFound) {
			return nil, errcode.UnknownToken("unknown access token")
		}
		if err != nil {
			return nil, fmt.Errorf("look up access token: %w", err)
		}
		if row.Deactivated {
			// Deactivation deletes every token; this is a belt for a race.
			return nil, errcode.UnknownToken("user is deactivated")
		}
		sess = Session{UserID: row.UserID, DeviceID: row.DeviceID, IsAdmin: row.IsAdmin, TokenHash: hash, ExpiresTS: row.ExpiresTS}
		if row.ExpiresTS == 0 || now.UnixMilli() < row.ExpiresTS {
			if row.PrevRefreshHash != "" {
				// First use of a refreshed token: the refresh token it
				// replaced is no longer needed.
				if err := s.store.ForgetPrevRefresh(ctx, hash, row.PrevRefreshHash); err != nil {
					return nil, fmt.Errorf("revoke previous refresh token: %w", err)
				}
			}
			if now.Sub(seen) >= seenEvery {
				s.seen.note(row.UserID, row.DeviceID, now)
				seen = now
			}
		}
		s.cache.put(sess, gen, now, seen)
	}
	if sess.ExpiresTS != 0 && now.UnixMilli() >= sess.ExpiresTS {
		return nil, errcode.UnknownToken("access token has expired").With("soft_logout", true)
	}
	if ok && now.Sub(seen) >= seenEvery {
		// A token kept in the cache by RecheckTokens: its device is seen.
		s.seen.note(sess.UserID, sess.DeviceID, now)
		s.cache.markSeen(hash, now)
	}
	return &sess, nil
}

// RecheckTokens re-reads the cached sessions of the tokens in use, all in
// one statement (per 500), before cacheTTL makes each request re-read its
// own; tokens unused for a while leave the cache. The server calls it
// every few seconds.
func (s *Service) RecheckTokens(ctx context.Context) error {
	now := s.now()
	due := s.cache.due(now)
	if len(due) == 0 {
		return nil
	}
	hashes := make([]string, 0, len(due))
	for h := range due {
		hashes = append(hashes, h)
	}
	found, err := s.store.AccessTokenSessions(ctx, hashes)
	if err != nil {
		return fmt.Errorf("re-check access tokens: %w", err)
	}
	s.cache.rechecked(due, found, now)
	return nil
}

// Tokens are the credentials handed out by login, registration and refresh.
type Tokens struct {
	AccessToken  string
	RefreshToken string // "" unless the client supports refresh tokens
	ExpiresInMS  int64  // 0: the access token does not expire
}

// issueTokens stores new tokens for a device. Access tokens expire only
// when the client supports refresh tokens and a lifetime is configured.
func (s *Service) issueTokens(ctx context.Context, tx *store.Tx, userID, deviceID string, wantRefresh bool) (*Tokens, error) {
	t := &Tokens{AccessToken: newToken(accessPrefix)}
	lifetime := s.cfg.Auth.AccessTokenLifetime.Duration
	if !wantRefresh || lifetime <= 0 {
		if err := tx.InsertAccessToken(ctx, hashToken(t.AccessToken), userID, deviceID, 0); err != nil {
			return nil, fmt.Errorf("insert access token: %w", err)
		}
		return t, nil
	}
	t.RefreshToken = newToken(refreshPrefix)
	t.ExpiresInMS = lifetime.Milliseconds()
	expires := s.now().Add(lifetime).UnixMilli()
	if err := tx.InsertTokenPair(ctx, hashToken(t.AccessToken), hashToken(t.RefreshToken), userID, deviceID, expires, "", ""); err != nil {
		return nil, err
	}
	return t, nil
}

// Refresh exchanges a refresh token for a new access token and a new
// refresh token. The access token issued with the old refresh token stops
// working at once; the old refresh token keeps working until the new access
// or refresh token is used, so that a client that lost the response can
// retry (which revokes the pair it never received).
func (s *Service) Refresh(ctx context.Context, refreshToken string) (*Tokens, error) {
	// With the lifetime since set to 0, old refresh tokens yield
	// non-expiring access tokens.
	lifetime := max(s.cfg.Auth.AccessTokenLifetime.Duration, 0)
	t := &Tokens{AccessToken: newToken(accessPrefix), RefreshToken: newToken(refreshPrefix), ExpiresInMS: lifetime.Milliseconds()}
	var expires int64
	if lifetime > 0 {
		expires = s.now().Add(lifetime).UnixMilli()
	}
	var rt *store.RefreshToken
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		var err error
		rt, err = tx.RotateRefreshToken(ctx, hashToken(refreshToken), "", hashToken(t.AccessToken), hashToken(t.RefreshToken), expires)
		if err != nil {
			return err
		}
		tx.OnCommit(func() { s.cache.invalidate(rt.UserID, rt.DeviceID) })
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, errcode.UnknownToken("unknown refresh token")
	}
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", err)
	}
	return t, nil
}
