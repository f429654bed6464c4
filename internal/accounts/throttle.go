package accounts

import (
	"sync"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/matrix/errcode"
)

// loginThrottle slows password guessing (rate_limits.failed_logins). Each
// account and each client address counts its wrong passwords; past the
// free ones, every failure doubles the wait before the next attempt, up to
// a cap, and an attempt made while waiting is refused before any password
// is checked. Attempts on one account are checked one at a time, so that
// a burst of parallel guesses cannot all pass before the first failure is
// counted. A successful login clears its account's count (not its
// address's: one's own account must not launder guesses at others).
// Counts are forgotten once they have been quiet for max_delay after their
// wait ended.
type loginThrottle struct {
	cfg config.FailedLogins
	now func() time.Time

	mu        sync.Mutex
	entries   map[string]*throttleEntry
	lastSweep time.Time
}

type throttleEntry struct {
	failures int
	until    time.Time // no attempt before this
	last     time.Time // last failure
	holders  int       // attempts between acquire and release
	gate     sync.Mutex
}

// newLoginThrottle returns nil when throttling is off; a nil throttle lets
// every attempt through.
func newLoginThrottle(cfg config.FailedLogins, now func() time.Time) *loginThrottle {
	if !cfg.Enabled {
		return nil
	}
	return &loginThrottle{cfg: cfg, now: now, entries: map[string]*throttleEntry{}, lastSweep: now()}
}

// attempt waits for its turn on account, then returns a function to call
// with the attempt's outcome, or a 429 M_LIMIT_EXCEEDED whose
// retry_after_ms says when to try again. address may be empty.
func (t *loginThrottle) attempt(account, address string) (done func(failed bool), err error) {
	if t == nil {
		return func(bool) {}, nil
	}
	acct := t.hold("user:" + account)
	acct.gate.Lock()
	t.mu.Lock()
	now := t.now()
	wait := acct.until.Sub(now)
	addrKey := ""
	if address != "" {
		addrKey = "addr:" + address
		if e := t.entries[addrKey]; e != nil {
			wait = max(wait, e.until.Sub(now))
		}
	}
	t.mu.Unlock()
	release := func() {
		t.mu.Lock()
		acct.holders--
		t.mu.Unlock()
		acct.gate.Unlock()
	}
	if wait > 0 {
		release()
		return nil, errcode.LimitExceeded(wait.Milliseconds() + 1)
	}
	return func(failed bool) {
		t.mu.Lock()
		now := t.now()
		if failed {
			t.fail(acct, now, t.cfg.AccountFailures)
			if addrKey != "" {
				e := t.entries[addrKey]
				if e == nil {
					e = &throttleEntry{}
					t.entries[addrKey] = e
				}
				t.fail(e, now, t.cfg.AddressFailures)
			}
		} else {
			acct.failures, acct.until = 0, time.Time{}
		}
		t.sweep(now)
		t.mu.Unlock()
		release()
	}, nil
}

// hold returns key's entry, kept in the map until released.
func (t *loginThrottle) hold(key string) *throttleEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[key]
	if e == nil {
		e = &throttleEntry{}
		t.entries[key] = e
	}
	e.holders++
	return e
}

// fail counts a failure; past free ones it sets the next wait.
func (t *loginThrottle) fail(e *throttleEntry, now time.Time, free int) {
	e.failures++
	e.last = now
	if over := e.failures - free; over >= 0 {
		d := t.cfg.BaseDelay.Duration
		for i := 0; i < over && d < t.cfg.MaxDelay.Duration; i++ {
			d *= 2
		}
		e.until = now.Add(min(d, t.cfg.MaxDelay.Duration))
	}
}

// sweep forgets quiet entries, at most once a minute. Called with mu held.
func (t *loginThrottle) sweep(now time.Time) {
	if now.Sub(t.lastSweep) < time.Minute {
		return
	}
	t.lastSweep = now
	quiet := t.cfg.MaxDelay.Duration
	for k, e := range t.entries {
		if e.holders == 0 && now.Sub(e.last) > quiet && now.Sub(e.until) > quiet {
			delete(t.entries, k)
		}
	}
}
