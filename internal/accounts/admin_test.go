package accounts

import (
	"testing"
	"time"

	"luxchat/internal/config"
)

// A locked account keeps its tokens but cannot use them, log in or
// refresh, and its validity period locks it the same way until renewed.
func TestLockedAccountSessions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		e.cfg.Auth.AccessTokenLifetime = config.Duration{Duration: 5 * time.Minute}
		e.register(t, "alice", "password1")
		login, err := e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "alice", Password: "password1", RefreshToken: true})
		if err != nil {
			t.Fatal(err)
		}
		uid := "@alice:test.local"
		if err := e.svc.SetLocked(bg, uid, true); err != nil {
			t.Fatal(err)
		}
		if s := e.mustAuth(t, login.AccessToken); !s.Locked {
			t.Fatal("session of a locked account not locked")
		}
		_, err = e.svc.Refresh(bg, login.RefreshToken)
		wantCode(t, err, "M_USER_LOCKED")
		_, err = e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "alice", Password: "password1"})
		wantCode(t, err, "M_USER_LOCKED")
		// A wrong password is still just a wrong password.
		_, err = e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "alice", Password: "nope"})
		wantCode(t, err, "M_FORBIDDEN")
		if err := e.svc.SetLocked(bg, uid, false); err != nil {
			t.Fatal(err)
		}
		// The refused refresh changed nothing: the refresh token works.
		if _, err := e.svc.Refresh(bg, login.RefreshToken); err != nil {
			t.Fatal(err)
		}

		// Validity: an account created with a period locks after it.
		e.cfg.AccountValidity.Period = config.Duration{Duration: time.Hour}
		e.register(t, "bob", "password2")
		bob, err := e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "bob", Password: "password2"})
		if err != nil {
			t.Fatal(err)
		}
		if s := e.mustAuth(t, bob.AccessToken); s.Locked {
			t.Fatal("locked before its time")
		}
		e.advance(2 * time.Hour)
		if s := e.mustAuth(t, bob.AccessToken); !s.Locked {
			t.Fatal("not locked after its validity")
		}
		if _, err := e.svc.RenewAccount(bg, "@bob:test.local", time.Time{}); err != nil {
			t.Fatal(err)
		}
		if s := e.mustAuth(t, bob.AccessToken); s.Locked {
			t.Fatal("still locked after renewal")
		}
		_, err = e.svc.RenewAccount(bg, "@nobody:test.local", time.Time{})
		wantCode(t, err, "M_NOT_FOUND")
	})
}
