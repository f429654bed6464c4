package accounts

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"luxchat/internal/config"
	"luxchat/internal/store"
)

func TestPasswordHashes(t *testing.T) {
	svc := New(testConfig(), nil, quiet, Hooks{})
	h, err := svc.hashPassword(bg, "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^\$argon2id\$v=19\$m=256,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`).MatchString(h) {
		t.Fatalf("not a PHC argon2id string: %s", h)
	}
	h2, _ := svc.hashPassword(bg, "correct horse")
	if h == h2 {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
	bc, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	stronger := testConfig()
	stronger.Auth.PasswordHashTime = 2
	old, _ := New(stronger, nil, quiet, Hooks{}).hashPassword(bg, "correct horse")
	for _, c := range []struct {
		name, hash, password string
		ok, rehash           bool
	}{
		{"argon2id", h, "correct horse", true, false},
		{"argon2id wrong", h, "correct horsE", false, false},
		{"argon2id other costs", old, "correct horse", true, true},
		{"bcrypt 2a", string(bc), "correct horse", true, true},
		{"bcrypt 2b", "$2b$" + string(bc[4:]), "correct horse", true, true},
		{"bcrypt wrong", string(bc), "wrong", false, false},
		{"empty", "", "", false, false},
		{"garbage", "$argon2id$v=19$m=99999999,t=1,p=1$AAAA$AAAA", "x", false, false},
		{"plaintext", "correct horse", "correct horse", false, false},
	} {
		ok, rehash, err := svc.checkPassword(bg, c.hash, c.password)
		if err != nil || ok != c.ok || rehash != c.rehash {
			t.Errorf("%s: ok=%v rehash=%v err=%v, want %v %v", c.name, ok, rehash, err, c.ok, c.rehash)
		}
	}
}

func TestSecretsAtRest(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		e.cfg.Auth.AccessTokenLifetime = config.Duration{Duration: time.Hour}
		res, err := e.svc.Register(bg, RegisterRequest{Username: "alice", Password: "hunter2hunter2", RefreshToken: true, Auth: auth(AuthDummy, "")})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(res.AccessToken, "lxc_") || !strings.HasPrefix(res.RefreshToken, "lxr_") || res.ExpiresInMS != time.Hour.Milliseconds() {
			t.Fatalf("tokens %+v", res.Tokens)
		}
		var access, refresh, pw string
		if err := e.raw.QueryRow(`SELECT token_hash FROM access_tokens WHERE user_id = $1`, res.UserID).Scan(&access); err != nil {
			t.Fatal(err)
		}
		if err := e.raw.QueryRow(`SELECT token_hash FROM refresh_tokens WHERE user_id = $1`, res.UserID).Scan(&refresh); err != nil {
			t.Fatal(err)
		}
		if err := e.raw.QueryRow(`SELECT password_hash FROM users WHERE user_id = $1`, res.UserID).Scan(&pw); err != nil {
			t.Fatal(err)
		}
		if access != hashToken(res.AccessToken) || refresh != hashToken(res.RefreshToken) {
			t.Fatalf("stored %s %s, want the SHA-256 of the tokens", access, refresh)
		}
		for _, secret := range []string{res.AccessToken, res.RefreshToken, strings.TrimPrefix(res.AccessToken, "lxc_")} {
			if strings.Contains(access+refresh, secret) {
				t.Fatal("plaintext token stored")
			}
		}
		if !strings.HasPrefix(pw, "$argon2id$") || strings.Contains(pw, "hunter2") {
			t.Fatalf("password stored as %q", pw)
		}
	})
}

func TestRegisterOpen(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		// No auth: 401 with the dummy flow and a session.
		_, err := e.svc.Register(bg, RegisterRequest{Username: "Bob", Password: "password1"})
		ar := wantAuthRequired(t, err, "")
		if fmt.Sprint(ar.Flows) != "[[m.login.dummy]]" || len(ar.Completed) != 0 {
			t.Fatalf("flows %v completed %v", ar.Flows, ar.Completed)
		}
		// The session resumes with the dummy stage.
		res, err := e.svc.Register(bg, RegisterRequest{Username: "Bob", Password: "password1", DeviceID: "PHONE",
			InitialDeviceDisplayName: "Bob's phone", Auth: auth(AuthDummy, ar.Session)})
		if err != nil {
			t.Fatal(err)
		}
		if res.UserID != "@bob:test.local" || res.DeviceID != "PHONE" || res.AccessToken == "" || res.RefreshToken != "" {
			t.Fatalf("result %+v", res)
		}
		if s := e.mustAuth(t, res.AccessToken); s.UserID != "@bob:test.local" || s.DeviceID != "PHONE" {
			t.Fatalf("session %+v", s)
		}
		d, err := e.svc.Device(bg, res.UserID, "PHONE")
		if err != nil || d.DisplayName != "Bob's phone" {
			t.Fatalf("device %+v %v", d, err)
		}
		p, _ := e.svc.Profile(bg, res.UserID)
		if p.DisplayName != "bob" {
			t.Fatalf("default display name %q", p.DisplayName)
		}
		// The finished session cannot authorise another registration.
		_, err = e.svc.Register(bg, RegisterRequest{Username: "bob2", Password: "password1", Auth: auth(AuthDummy, ar.Session)})
		wantCode(t, err, "M_UNKNOWN")

		// Username checks come before user-interactive auth.
		_, err = e.svc.Register(bg, RegisterRequest{Username: "bob", Password: "password1"})
		wantCode(t, err, "M_USER_IN_USE")
		_, err = e.svc.Register(bg, RegisterRequest{Username: "bad name", Password: "password1"})
		wantCode(t, err, "M_INVALID_USERNAME")
		_, err = e.svc.Register(bg, RegisterRequest{Username: "carol", Password: "short", Auth: auth(AuthDummy, "")})
		wantCode(t, err, "M_WEAK_PASSWORD")
		_, err = e.svc.Register(bg, RegisterRequest{Username: "carol", Auth: auth(AuthDummy, "")})
		wantCode(t, err, "M_MISSING_PARAM")
		_, err = e.svc.Register(bg, RegisterRequest{Guest: true})
		wantCode(t, err, "M_FORBIDDEN")
		// A stage outside the flows is refused, the session kept.
		_, err = e.svc.Register(bg, RegisterRequest{Username: "carol", Password: "password1", Auth: auth(AuthRegistrationToken, "", "token", "x")})
		wantAuthRequired(t, err, "M_FORBIDDEN")

		// No username: one is generated. inhibit_login: no device, no token.
		res, err = e.svc.Register(bg, RegisterRequest{Password: "password1", InhibitLogin: true, Auth: auth(AuthDummy, "")})
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^@u[a-z0-9]{11}:test\.local$`).MatchString(res.UserID) || res.DeviceID != "" || res.AccessToken != "" {
			t.Fatalf("result %+v", res)
		}
		if ds, _ := e.svc.Devices(bg, res.UserID); len(ds) != 0 {
			t.Fatalf("devices %v", ds)
		}

		e.cfg.Registration.Mode = config.RegistrationClosed
		_, err = e.svc.Register(bg, RegisterRequest{Username: "dave", Password: "password1", Auth: auth(AuthDummy, "")})
		wantCode(t, err, "M_FORBIDDEN")
	})
}

func TestRegisterWithToken(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		e.cfg.Registration.Mode = config.RegistrationToken
		one := int64(1)
		tok, err := e.svc.CreateRegistrationToken(bg, "", &one, nil)
		if err != nil || len(tok) != 16 {
			t.Fatalf("token %q %v", tok, err)
		}
		if ok, _ := e.svc.RegistrationTokenValid(bg, tok); !ok {
			t.Fatal("new token invalid")
		}
		_, err = e.svc.Register(bg, RegisterRequest{Username: "a1", Password: "password1", Auth: auth(AuthDummy, "")})
		wantAuthRequired(t, err, "M_FORBIDDEN") // dummy is not offered in token mode
		_, err = e.svc.Register(bg, RegisterRequest{Username: "a1", Password: "password1", Auth: auth(AuthRegistrationToken, "", "token", "nope")})
		wantAuthRequired(t, err, "M_UNAUTHORIZED")

		// Stage completed, but the request lacks a password: the session
		// keeps the stage.
		_, err = e.svc.Register(bg, RegisterRequest{Username: "a1", Auth: auth(AuthRegistrationToken, "", "token", tok)})
		wantCode(t, err, "M_MISSING_PARAM")
		sessions := e.sessionIDs(t)
		if len(sessions) != 1 {
			t.Fatalf("sessions %v", sessions)
		}
		// Meanwhile someone else uses the token's only use.
		if _, err := e.svc.Register(bg, RegisterRequest{Username: "a2", Password: "password1", Auth: auth(AuthRegistrationToken, "", "token", tok)}); err != nil {
			t.Fatal(err)
		}
		if ok, _ := e.svc.RegistrationTokenValid(bg, tok); ok {
			t.Fatal("used-up token still valid")
		}
		// Resuming the first session now fails at the end and asks again.
		_, err = e.svc.Register(bg, RegisterRequest{Username: "a1", Password: "password1", Auth: auth("", sessions[0])})
		ar := wantAuthRequired(t, err, "M_UNAUTHORIZED")
		if len(ar.Completed) != 0 {
			t.Fatalf("completed %v", ar.Completed)
		}

		// Expiry.
		exp := e.svc.now().Add(time.Hour)
		tok2, err := e.svc.CreateRegistrationToken(bg, "fixed-Token_1.~", nil, &exp)
		if err != nil || tok2 != "fixed-Token_1.~" {
			t.Fatalf("%q %v", tok2, err)
		}
		_, err = e.svc.CreateRegistrationToken(bg, "fixed-Token_1.~", nil, nil)
		wantCode(t, err, "M_INVALID_PARAM")
		_, err = e.svc.CreateRegistrationToken(bg, "no spaces", nil, nil)
		wantCode(t, err, "M_INVALID_PARAM")
		e.advance(2 * time.Hour)
		if ok, _ := e.svc.RegistrationTokenValid(bg, tok2); ok {
			t.Fatal("expired token valid")
		}
		_, err = e.svc.Register(bg, RegisterRequest{Username: "a3", Password: "password1", Auth: auth(AuthRegistrationToken, "", "token", tok2)})
		wantAuthRequired(t, err, "M_UNAUTHORIZED")
		e.advance(-2 * time.Hour)
		if _, err := e.svc.Register(bg, RegisterRequest{Username: "a3", Password: "password1", Auth: auth(AuthRegistrationToken, "", "token", tok2)}); err != nil {
			t.Fatal(err)
		}

		list, err := e.svc.ListRegistrationTokens(bg)
		if err != nil || len(list) != 2 || list[0].Completed != 1 || *list[0].UsesAllowed != 1 || list[1].Expiry == nil || list[1].UsesAllowed != nil {
			t.Fatalf("list %+v %v", list, err)
		}
		if err := e.svc.RevokeRegistrationToken(bg, tok2); err != nil {
			t.Fatal(err)
		}
		wantCode(t, e.svc.RevokeRegistrationToken(bg, tok2), "M_NOT_FOUND")

		e.cfg.Registration.Mode = config.RegistrationClosed
		_, err = e.svc.RegistrationTokenValid(bg, tok)
		wantCode(t, err, "M_FORBIDDEN")
	})
}

// sessionIDs lists the stored UIA sessions that completed a stage.
func (e *env) sessionIDs(t *testing.T) []string {
	t.Helper()
	rows, err := e.raw.Query(`SELECT session_id FROM uia_sessions WHERE completed <> '[]'`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		out = append(out, id)
	}
	return out
}

func TestLogin(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		e.register(t, "alice", "password1")
		for _, c := range []struct {
			name string
			r    LoginRequest
		}{
			{"localpart", LoginRequest{Identifier: &Identifier{Type: "m.id.user", User: "alice"}}},
			{"full id", LoginRequest{Identifier: &Identifier{Type: "m.id.user", User: "@alice:test.local"}}},
			{"uppercase", LoginRequest{Identifier: &Identifier{Type: "m.id.user", User: "@ALICE:test.local"}}},
			{"deprecated user", LoginRequest{User: "alice"}},
		} {
			c.r.Type, c.r.Password = LoginPassword, "password1"
			res, err := e.svc.Login(bg, c.r)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if res.UserID != "@alice:test.local" || e.mustAuth(t, res.AccessToken).DeviceID != res.DeviceID {
				t.Fatalf("%s: %+v", c.name, res)
			}
		}
		for _, c := range []struct {
			name, code string
			r          LoginRequest
		}{
			{"wrong password", "M_FORBIDDEN", LoginRequest{User: "alice", Password: "password2"}},
			{"unknown user", "M_FORBIDDEN", LoginRequest{User: "nobody", Password: "password1"}},
			{"remote user", "M_FORBIDDEN", LoginRequest{User: "@alice:elsewhere", Password: "password1"}},
			{"third party", "M_FORBIDDEN", LoginRequest{Identifier: &Identifier{Type: "m.id.thirdparty", Medium: "email", Address: "a@b"}, Password: "password1"}},
			{"bad identifier", "M_UNKNOWN", LoginRequest{Identifier: &Identifier{Type: "m.id.what"}, Password: "password1"}},
			{"no user", "M_MISSING_PARAM", LoginRequest{Password: "password1"}},
			{"bad type", "M_UNKNOWN", LoginRequest{Type: "m.login.bogus", User: "alice"}},
			{"unknown login token", "M_FORBIDDEN", LoginRequest{Type: "m.login.token", Token: "lxl_nope"}},
		} {
			if c.r.Type == "" {
				c.r.Type = LoginPassword
			}
			_, err := e.svc.Login(bg, c.r)
			wantCode(t, err, c.code)
		}

		// Logging in again with a device id keeps the device and its name
		// but revokes its earlier token.
		first, err := e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "alice", Password: "password1", DeviceID: "LAPTOP", InitialDeviceDisplayName: "laptop"})
		if err != nil {
			t.Fatal(err)
		}
		e.mustAuth(t, first.AccessToken) // cache it
		second, err := e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "alice", Password: "password1", DeviceID: "LAPTOP", InitialDeviceDisplayName: "renamed?"})
		if err != nil || second.DeviceID != "LAPTOP" {
			t.Fatalf("%+v %v", second, err)
		}
		e.wantUnknownToken(t, first.AccessToken, false)
		e.mustAuth(t, second.AccessToken)
		if d, _ := e.svc.Device(bg, "@alice:test.local", "LAPTOP"); d.DisplayName != "laptop" {
			t.Fatalf("device renamed to %q", d.DisplayName)
		}
	})
}

func TestBcryptUpgradedOnLogin(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		bc, _ := bcrypt.GenerateFromPassword([]byte("from synapse"), bcrypt.MinCost)
		err := e.st.InTx(bg, func(tx *store.Tx) error {
			return tx.CreateUser(bg, store.User{UserID: "@imported:test.local", PasswordHash: string(bc)})
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "imported", Password: "from synapse"}); err != nil {
			t.Fatal(err)
		}
		u, _ := e.st.GetUser(bg, "@imported:test.local")
		if !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
			t.Fatalf("hash not upgraded: %s", u.PasswordHash)
		}
		if _, err := e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "imported", Password: "from synapse"}); err != nil {
			t.Fatalf("login after upgrade: %v", err)
		}
	})
}

func TestRefreshAndSoftLogout(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		e.cfg.Auth.AccessTokenLifetime = config.Duration{Duration: 5 * time.Minute}
		e.register(t, "alice", "password1")
		login, err := e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "alice", Password: "password1", RefreshToken: true})
		if err != nil {
			t.Fatal(err)
		}
		a0, r0 := login.AccessToken, login.RefreshToken
		e.mustAuth(t, a0)

		// Expired: soft logout, the device survives.
		e.advance(6 * time.Minute)
		e.wantUnknownToken(t, a0, true)

		t1, err := e.svc.Refresh(bg, r0)
		if err != nil {
			t.Fatal(err)
		}
		if t1.ExpiresInMS != (5*time.Minute).Milliseconds() || t1.RefreshToken == r0 {
			t.Fatalf("refresh %+v", t1)
		}
		e.wantUnknownToken(t, a0, false) // the old access token is gone
		// The response was "lost": r0 still works and replaces t1.
		t2, err := e.svc.Refresh(bg, r0)
		if err != nil {
			t.Fatalf("retry refresh: %v", err)
		}
		e.wantUnknownToken(t, t1.AccessToken, false)
		_, err = e.svc.Refresh(bg, t1.RefreshToken)
		wantCode(t, err, "M_UNKNOWN_TOKEN")
		// Using the new access token retires r0.
		if s := e.mustAuth(t, t2.AccessToken); s.DeviceID != login.DeviceID {
			t.Fatalf("device %s, want %s", s.DeviceID, login.DeviceID)
		}
		_, err = e.svc.Refresh(bg, r0)
		wantCode(t, err, "M_UNKNOWN_TOKEN")
		// Using the new refresh token retires its predecessor too.
		t3, err := e.svc.Refresh(bg, t2.RefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Refresh(bg, t3.RefreshToken); err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.Refresh(bg, t2.RefreshToken)
		wantCode(t, err, "M_UNKNOWN_TOKEN")

		// Without refresh support, tokens do not expire.
		plain, _ := e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "alice", Password: "password1"})
		if plain.RefreshToken != "" || plain.ExpiresInMS != 0 {
			t.Fatalf("%+v", plain)
		}
		e.advance(24 * time.Hour)
		e.mustAuth(t, plain.AccessToken)

		// Soft logout recovery: log in again with the same device id.
		again, err := e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "alice", Password: "password1", DeviceID: login.DeviceID, RefreshToken: true})
		if err != nil || again.DeviceID != login.DeviceID {
			t.Fatalf("%+v %v", again, err)
		}
		e.mustAuth(t, again.AccessToken)
	})
}

func TestDevicesAndLogout(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		var deleted []string
		e.svc.hooks.OnDevicesDeleted = func(_ context.Context, _ string, ids []string) error {
			deleted = append(deleted, ids...)
			return nil
		}
		alice := e.register(t, "alice", "password1")
		other, _ := e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "alice", Password: "password1", DeviceID: "OTHER"})
		e.mustAuth(t, other.AccessToken) // cached: deletion must still revoke it

		if err := e.svc.RenameDevice(bg, alice.UserID, "OTHER", "tablet"); err != nil {
			t.Fatal(err)
		}
		wantCode(t, e.svc.RenameDevice(bg, alice.UserID, "NOPE", "x"), "M_NOT_FOUND")
		_, err := e.svc.Device(bg, alice.UserID, "NOPE")
		wantCode(t, err, "M_NOT_FOUND")
		ds, _ := e.svc.Devices(bg, alice.UserID)
		i := slices.IndexFunc(ds, func(d Device) bool { return d.DeviceID == "OTHER" })
		if len(ds) != 2 || i < 0 || ds[i].DisplayName != "tablet" || ds[i].LastSeenTS == 0 {
			t.Fatalf("devices %+v", ds)
		}

		// Deleting needs the password.
		err = e.svc.DeleteDevices(bg, alice.UserID, []string{"OTHER"}, nil)
		ar := wantAuthRequired(t, err, "")
		err = e.svc.DeleteDevices(bg, alice.UserID, []string{"OTHER"}, passwordAuth(ar.Session, "alice", "wrong"))
		if wantAuthRequired(t, err, "M_FORBIDDEN").Session != ar.Session {
			t.Fatal("session changed")
		}
		e.mustAuth(t, other.AccessToken)
		bob := e.register(t, "bob", "password2")
		err = e.svc.DeleteDevices(bg, alice.UserID, []string{"OTHER"}, passwordAuth(ar.Session, "bob", "password2"))
		if e := wantCode(t, err, "M_FORBIDDEN"); e.Status != 403 {
			t.Fatalf("someone else's password: status %d", e.Status)
		}
		var ar2 *AuthRequired
		if errors.As(err, &ar2) {
			t.Fatal("someone else's password asks for auth again instead of refusing")
		}
		if err := e.svc.DeleteDevices(bg, alice.UserID, []string{"OTHER"}, passwordAuth(ar.Session, "alice", "password1")); err != nil {
			t.Fatal(err)
		}
		e.wantUnknownToken(t, other.AccessToken, false)
		e.mustAuth(t, alice.AccessToken)
		// A session of one user is not usable by another.
		err = e.svc.DeleteDevices(bg, bob.UserID, []string{bob.DeviceID}, nil)
		bobSession := wantAuthRequired(t, err, "").Session
		err = e.svc.DeleteDevices(bg, alice.UserID, []string{alice.DeviceID}, passwordAuth(bobSession, "alice", "password1"))
		wantCode(t, err, "M_UNKNOWN")

		if err := e.svc.Logout(bg, alice.UserID, alice.DeviceID); err != nil {
			t.Fatal(err)
		}
		e.wantUnknownToken(t, alice.AccessToken, false)

		a, _ := e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "alice", Password: "password1"})
		b, _ := e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "alice", Password: "password1"})
		e.mustAuth(t, a.AccessToken)
		if err := e.svc.LogoutAll(bg, alice.UserID); err != nil {
			t.Fatal(err)
		}
		e.wantUnknownToken(t, a.AccessToken, false)
		e.wantUnknownToken(t, b.AccessToken, false)
		if ds, _ := e.svc.Devices(bg, alice.UserID); len(ds) != 0 {
			t.Fatalf("devices left %v", ds)
		}
		e.mustAuth(t, bob.AccessToken)
		if len(deleted) != 4 {
			t.Fatalf("OnDevicesDeleted saw %v", deleted)
		}
	})
}

func TestChangePasswordAndDeactivate(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		alice := e.register(t, "alice", "password1")
		other, _ := e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "alice", Password: "password1"})
		me := Caller{UserID: alice.UserID, DeviceID: alice.DeviceID}

		err := e.svc.ChangePassword(bg, me, "password2", true, nil)
		ar := wantAuthRequired(t, err, "")
		wantCode(t, e.svc.ChangePassword(bg, me, "short", true, nil), "M_WEAK_PASSWORD")
		if err := e.svc.ChangePassword(bg, me, "password2", true, passwordAuth(ar.Session, alice.UserID, "password1")); err != nil {
			t.Fatal(err)
		}
		e.mustAuth(t, alice.AccessToken) // the caller's device stays
		e.wantUnknownToken(t, other.AccessToken, false)
		_, err = e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "alice", Password: "password1"})
		wantCode(t, err, "M_FORBIDDEN")
		// Without an access token, the password stage names the user;
		// logout_devices false keeps every device.
		if err := e.svc.ChangePassword(bg, Caller{}, "password3", false, passwordAuth("", "alice", "password2")); err != nil {
			t.Fatal(err)
		}
		e.mustAuth(t, alice.AccessToken)

		var left []string
		e.svc.hooks.OnDeactivate = func(_ context.Context, userID string) error { left = append(left, userID); return nil }
		err = e.svc.Deactivate(bg, me, nil, false)
		ar = wantAuthRequired(t, err, "")
		if err := e.svc.Deactivate(bg, me, passwordAuth(ar.Session, "alice", "password3"), false); err != nil {
			t.Fatal(err)
		}
		if len(left) != 1 || left[0] != alice.UserID {
			t.Fatalf("OnDeactivate saw %v", left)
		}
		e.wantUnknownToken(t, alice.AccessToken, false)
		_, err = e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "alice", Password: "password3"})
		wantCode(t, err, "M_USER_DEACTIVATED")
		_, err = e.svc.Register(bg, RegisterRequest{Username: "alice", Password: "password1"})
		wantCode(t, err, "M_USER_IN_USE")
		if p, err := e.svc.Profile(bg, alice.UserID); err != nil || p.DisplayName != "" {
			t.Fatalf("profile %+v %v", p, err)
		}
		wantCode(t, e.svc.DeactivateUser(bg, "@nobody:test.local"), "M_NOT_FOUND")
	})
}

func TestProfiles(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		type change struct{ user, name, avatar string }
		var changes []change
		e.svc.hooks.OnProfileChange = func(_ context.Context, u, n, a string) error {
			changes = append(changes, change{u, n, a})
			return nil
		}
		alice := e.register(t, "alice", "password1").UserID
		bob := e.register(t, "bob", "password1").UserID
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(e.svc.SetProfileField(bg, alice, alice, FieldDisplayName, "Alice"))
		must(e.svc.SetProfileField(bg, alice, alice, FieldAvatarURL, "mxc://test.local/abc_D-1"))
		must(e.svc.SetProfileField(bg, alice, alice, FieldAvatarURL, "mxc://test.local/abc_D-1")) // unchanged: no hook
		p, err := e.svc.Profile(bg, alice)
		if err != nil || *p != (Profile{"Alice", "mxc://test.local/abc_D-1"}) {
			t.Fatalf("%+v %v", p, err)
		}
		want := []change{{alice, "Alice", ""}, {alice, "Alice", "mxc://test.local/abc_D-1"}}
		if fmt.Sprint(changes) != fmt.Sprint(want) {
			t.Fatalf("hook saw %v, want %v", changes, want)
		}
		must(e.svc.SetProfileField(bg, alice, alice, FieldDisplayName, ""))
		if p, _ := e.svc.Profile(bg, alice); p.DisplayName != "" {
			t.Fatalf("not cleared: %+v", p)
		}
		wantCode(t, e.svc.SetProfileField(bg, alice, bob, FieldDisplayName, "x"), "M_FORBIDDEN")
		wantCode(t, e.svc.SetProfileField(bg, alice, alice, FieldAvatarURL, "mxc://x/y\x00"), "M_INVALID_PARAM")
		wantCode(t, e.svc.SetProfileField(bg, alice, alice, FieldDisplayName, strings.Repeat("x", 257)), "M_INVALID_PARAM")
		_, err = e.svc.Profile(bg, "@nobody:test.local")
		wantCode(t, err, "M_NOT_FOUND")
		_, err = e.svc.Profile(bg, "nobody")
		wantCode(t, err, "M_INVALID_PARAM")
	})
}

func TestSharedSecretRegistration(t *testing.T) {
	// Vectors computed independently (Python hmac).
	if got := SharedSecretMAC("complement", "abcdef", "alice", "wonderland-password", true, ""); got != "9f8c29c7772cb42c57927696121b42f1a6b2b35c" {
		t.Fatalf("mac %s", got)
	}
	if got := SharedSecretMAC("complement", "abcdef", "bob", "builder-password", false, "bot"); got != "9d69ea97a5c59cbe6dfcbbc58252967b7ca70f03" {
		t.Fatalf("mac %s", got)
	}
	forEachEngine(t, func(t *testing.T, e *env) {
		_, err := e.svc.NewRegistrationNonce(bg)
		wantCode(t, err, "M_UNRECOGNIZED")
		e.cfg.Registration.SharedSecret = "complement"
		e.cfg.Registration.Mode = config.RegistrationClosed // independent of the mode

		req := func(nonce, user string, admin bool, secret string) SharedSecretRequest {
			return SharedSecretRequest{Nonce: nonce, Username: user, Password: "password1", Admin: admin,
				MAC: SharedSecretMAC(secret, nonce, user, "password1", admin, "")}
		}
		n1, _ := e.svc.NewRegistrationNonce(bg)
		res, err := e.svc.RegisterWithSharedSecret(bg, req(n1, "root", true, "complement"))
		if err != nil {
			t.Fatal(err)
		}
		if s := e.mustAuth(t, res.AccessToken); s.UserID != "@root:test.local" || !s.IsAdmin {
			t.Fatalf("session %+v", s)
		}
		_, err = e.svc.RegisterWithSharedSecret(bg, req(n1, "root2", true, "complement"))
		wantCode(t, err, "M_UNKNOWN") // replayed nonce

		n2, _ := e.svc.NewRegistrationNonce(bg)
		_, err = e.svc.RegisterWithSharedSecret(bg, req(n2, "eve", true, "guess"))
		wantCode(t, err, "M_FORBIDDEN")
		// A wrong MAC burns the nonce too.
		_, err = e.svc.RegisterWithSharedSecret(bg, req(n2, "eve", true, "complement"))
		wantCode(t, err, "M_UNKNOWN")
		// admin must match what the MAC covers.
		n3, _ := e.svc.NewRegistrationNonce(bg)
		r := req(n3, "eve", false, "complement")
		r.Admin = true
		_, err = e.svc.RegisterWithSharedSecret(bg, r)
		wantCode(t, err, "M_FORBIDDEN")

		n4, _ := e.svc.NewRegistrationNonce(bg)
		e.advance(2 * time.Minute)
		_, err = e.svc.RegisterWithSharedSecret(bg, req(n4, "late", false, "complement"))
		wantCode(t, err, "M_UNKNOWN") // expired

		e.advance(-2 * time.Minute)
		n5, _ := e.svc.NewRegistrationNonce(bg)
		r = req(n5, "bot", false, "complement")
		r.UserType, r.MAC, r.InhibitLogin = "bot", SharedSecretMAC("complement", n5, "bot", "password1", false, "bot"), true
		res, err = e.svc.RegisterWithSharedSecret(bg, r)
		if err != nil || res.UserID != "@bot:test.local" || res.AccessToken != "" {
			t.Fatalf("%+v %v", res, err)
		}
		u, _ := e.st.GetUser(bg, res.UserID)
		if u.IsAdmin {
			t.Fatal("notadmin registered as admin")
		}
	})
}

func TestCreateUser(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		id, err := e.svc.CreateUser(bg, "admin", "password1", true)
		if err != nil || id != "@admin:test.local" {
			t.Fatalf("%q %v", id, err)
		}
		_, err = e.svc.CreateUser(bg, "admin", "password1", false)
		wantCode(t, err, "M_USER_IN_USE")
		res, err := e.svc.Login(bg, LoginRequest{Type: LoginPassword, User: "admin", Password: "password1"})
		if err != nil || !e.mustAuth(t, res.AccessToken).IsAdmin {
			t.Fatalf("%+v %v", res, err)
		}
	})
}

func TestParallelRegistrations(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		const n = 20
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				_, errs[i] = e.svc.Register(bg, RegisterRequest{Username: fmt.Sprintf("user%d", i), Password: "password1", Auth: auth(AuthDummy, "")})
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("user%d: %v", i, err)
			}
		}
		var count int
		if err := e.raw.QueryRow(`SELECT COUNT(*) FROM users`).Scan(&count); err != nil || count != n {
			t.Fatalf("%d users, %v", count, err)
		}
	})
}

// A lookup that raced with a logout must not put the revoked token back.
func TestTokenCacheGeneration(t *testing.T) {
	c := newTokenCache()
	now := time.Now()
	gen := c.generation()
	c.invalidate("@a:x", "D") // the logout commits while the lookup runs
	c.put(Session{UserID: "@a:x", DeviceID: "D", TokenHash: "h"}, gen, now, now)
	if _, _, ok := c.get("h", now); ok {
		t.Fatal("stale session cached")
	}
	c.put(Session{UserID: "@a:x", DeviceID: "D", TokenHash: "h"}, c.generation(), now, now)
	if _, _, ok := c.get("h", now); !ok {
		t.Fatal("session not cached")
	}
	if _, _, ok := c.get("h", now.Add(cacheTTL+time.Second)); ok {
		t.Fatal("entry outlived its TTL")
	}
	c.invalidate("@a:x", "")
	if _, _, ok := c.get("h", now); ok || len(c.byUser) != 0 {
		t.Fatal("invalidate left entries")
	}
}

// TestHashersRunInParallel checks that as many password hashes as
// configured (default: one per core) run at once, and no more.
func TestHashersRunInParallel(t *testing.T) {
	for _, tc := range []struct{ configured, want int }{{0, runtime.GOMAXPROCS(0)}, {3, 3}} {
		cfg := testConfig()
		cfg.Auth.PasswordHashConcurrency = tc.configured
		s := New(cfg, nil, nil, Hooks{})
		ctx := context.Background()
		for i := range tc.want {
			if err := s.acquireHasher(ctx); err != nil {
				t.Fatalf("configured %d: hasher %d waits: %v", tc.configured, i+1, err)
			}
		}
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		if err := s.acquireHasher(short); err == nil {
			t.Fatalf("configured %d: hasher %d did not wait", tc.configured, tc.want+1)
		}
		cancel()
		s.releaseHasher()
		if err := s.acquireHasher(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// A device's last-seen time follows its use, stored at most every
// seenEvery: a long-polling client re-reads its token every cacheTTL, and
// a write each time was most of the cost of idle clients.
func TestLastSeenStoredEveryFewMinutes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		alice := e.register(t, "alice", "password1")
		lastSeen := func() int64 {
			t.Helper()
			d, err := e.svc.Device(bg, alice.UserID, alice.DeviceID)
			if err != nil {
				t.Fatal(err)
			}
			return d.LastSeenTS
		}
		e.mustAuth(t, alice.AccessToken)
		first := lastSeen()
		if first == 0 {
			t.Fatal("no last-seen time after use")
		}
		e.advance(cacheTTL + time.Second) // looked up again, not stored
		e.mustAuth(t, alice.AccessToken)
		if got := lastSeen(); got != first {
			t.Fatalf("last seen stored again after %v: %d, then %d", cacheTTL, first, got)
		}
		e.advance(seenEvery)
		e.mustAuth(t, alice.AccessToken)
		if got := lastSeen(); got < first+seenEvery.Milliseconds() {
			t.Fatalf("last seen not noted after %v: %d, then %d", seenEvery, first, got)
		}
		// Noted in memory, stored by the next flush.
		if err := e.svc.FlushSeen(bg); err != nil {
			t.Fatal(err)
		}
		row, err := e.svc.store.GetDevice(bg, alice.UserID, alice.DeviceID)
		if err != nil {
			t.Fatal(err)
		}
		if row.LastSeenTS.Int64 < first+seenEvery.Milliseconds() {
			t.Fatalf("last seen not stored by the flush: %d, want at least %d", row.LastSeenTS.Int64, first+seenEvery.Milliseconds())
		}
	})
}

// TestRecheckTokens: the tokens in use are re-checked in bulk, so that a
// client polling every 30 s is served from the cache; a token revoked
// behind the service's back (another process, by hand) still stops
// working within cacheTTL, and an unused one leaves the cache. The device
// of a token served from the cache is still seen.
func TestRecheckTokens(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		alice := e.register(t, "alice", "password1")
		bob := e.register(t, "bob", "password1")
		e.mustAuth(t, alice.AccessToken)
		e.mustAuth(t, bob.AccessToken)
		lastSeen := func() int64 {
			t.Helper()
			d, err := e.svc.Device(bg, alice.UserID, alice.DeviceID)
			if err != nil {
				t.Fatal(err)
			}
			return d.LastSeenTS
		}
		first := lastSeen()
		// Alice polls every 20 s for longer than seenEvery, with a
		// re-check every 20 s, as the server runs it.
		for elapsed := time.Duration(0); elapsed <= seenEvery; elapsed += 20 * time.Second {
			e.advance(20 * time.Second)
			if err := e.svc.RecheckTokens(bg); err != nil {
				t.Fatal(err)
			}
			e.mustAuth(t, alice.AccessToken)
		}
		if got := lastSeen(); got < first+seenEvery.Milliseconds() {
			t.Fatalf("last seen of a cached token not stored after %v: %d, then %d", seenEvery, first, got)
		}
		if len(e.svc.cache.byHash) != 1 {
			t.Fatalf("bob's unused token still cached: %d entries", len(e.svc.cache.byHash))
		}
		// Revoked by hand: the cache serves it until the next re-check,
		// which drops it, well within cacheTTL.
		if _, err := e.raw.Exec(`DELETE FROM access_tokens WHERE user_id = '` + alice.UserID + `'`); err != nil {
			t.Fatal(err)
		}
		e.mustAuth(t, alice.AccessToken)
		e.advance(cacheTTL / 2)
		if err := e.svc.RecheckTokens(bg); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Authenticate(bg, alice.AccessToken); err == nil {
			t.Fatal("token revoked in the database still accepted after a re-check")
		}
	})
}

// TestRecheckSkipsUnusedTokens: a token its client stopped using is not
// re-checked (a server that had 10,000 clients would re-check them all
// until they leave the cache), yet is not served stale: revoked by hand
// meanwhile, its next use is refused; still valid, it is read again.
func TestRecheckSkipsUnusedTokens(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e *env) {
		alice := e.register(t, "alice", "password1")
		bob := e.register(t, "bob", "password1")
		e.mustAuth(t, alice.AccessToken)
		e.mustAuth(t, bob.AccessToken)
		fetched := func(token string) time.Time {
			t.Helper()
			e.svc.cache.mu.Lock()
			defer e.svc.cache.mu.Unlock()
			return e.svc.cache.byHash[hashToken(token)].fetched
		}
		bobFetched := fetched(bob.AccessToken)
		e.advance(20 * time.Second)
		e.mustAuth(t, alice.AccessToken)
		e.advance(cacheTTL - 10*time.Second) // bob unused for longer than cacheTTL, alice for less
		if err := e.svc.RecheckTokens(bg); err != nil {
			t.Fatal(err)
		}
		if got := fetched(bob.AccessToken); !got.Equal(bobFetched) {
			t.Fatal("a token unused for longer than cacheTTL was re-checked")
		}
		if got := fetched(alice.AccessToken); got.Equal(bobFetched) {
			t.Fatal("a token in use was not re-checked")
		}
		carol := e.register(t, "carol", "password1")
		e.mustAuth(t, carol.AccessToken)
		e.advance(cacheTTL + time.Second)
		e.mustAuth(t, alice.AccessToken)
		e.mustAuth(t, bob.AccessToken) // read again
		e.advance(cacheTTL/2 + time.Second)
		if _, err := e.raw.Exec(`DELETE FROM access_tokens WHERE user_id = '` + carol.UserID + `'`); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.RecheckTokens(bg); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Authenticate(bg, carol.AccessToken); err == nil {
			t.Fatal("an unused token revoked in the database was accepted from the cache")
		}
	})
}
