package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// writeEndpoint is a client API call that acts: a suspended account is
// refused it (M_USER_SUSPENDED), a locked one everything.
type writeEndpoint struct {
	method, path string
	body         any
}

// writeEndpoints are the acting endpoints of the client API, with a
// target that exists (room, event, user) so that the only reason to
// refuse is the account's state.
func writeEndpoints(room, event, other string) []writeEndpoint {
	r := url.PathEscape(room)
	return []writeEndpoint{
		{"POST", "/_matrix/client/v3/createRoom", map[string]any{}},
		{"POST", "/_matrix/client/v3/join/" + r, map[string]any{}},
		{"POST", "/_matrix/client/v3/rooms/" + r + "/join", map[string]any{}},
		{"POST", "/_matrix/client/v3/knock/" + r, map[string]any{}},
		{"POST", "/_matrix/client/v3/rooms/" + r + "/invite", map[string]any{"user_id": other}},
		{"POST", "/_matrix/client/v3/rooms/" + r + "/kick", map[string]any{"user_id": other}},
		{"POST", "/_matrix/client/v3/rooms/" + r + "/ban", map[string]any{"user_id": other}},
		{"POST", "/_matrix/client/v3/rooms/" + r + "/unban", map[string]any{"user_id": other}},
		{"PUT", "/_matrix/client/v3/rooms/" + r + "/send/m.room.message/s1", map[string]any{"msgtype": "m.text", "body": "hi"}},
		{"PUT", "/_matrix/client/v3/rooms/" + r + "/state/m.room.topic", map[string]any{"topic": "t"}},
		{"PUT", "/_matrix/client/v3/rooms/" + r + "/state/m.room.topic/", map[string]any{"topic": "t"}},
		{"PUT", "/_matrix/client/v3/rooms/" + r + "/redact/" + url.PathEscape(event) + "/r1", map[string]any{}},
		{"POST", "/_matrix/client/v3/rooms/" + r + "/upgrade", map[string]any{"new_version": "11"}},
		{"PUT", "/_matrix/client/v3/profile/{self}/displayname", map[string]any{"displayname": "x"}},
		{"DELETE", "/_matrix/client/v3/profile/{self}/displayname", nil},
		{"PUT", "/_matrix/client/v3/profile/{self}/avatar_url", map[string]any{"avatar_url": "mxc://x/y"}},
		{"DELETE", "/_matrix/client/v3/profile/{self}/avatar_url", nil},
		{"PUT", "/_matrix/client/v3/directory/room/" + url.PathEscape("#suspended:localhost"), map[string]any{"room_id": room}},
		{"PUT", "/_matrix/client/v3/directory/list/room/" + r, map[string]any{"visibility": "public"}},
		{"PUT", "/_matrix/client/unstable/org.matrix.msc4140/rooms/" + r + "/delayed_event/m.room.message/d1", map[string]any{"body": "x"}},
	}
}

func TestSuspendedAndLockedAccounts(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := bob.CreateRoom(map[string]any{"preset": "public_chat"})
		alice.Join(room)
		aliceEvent := alice.SendText(room, "mine")
		bobEvent := bob.SendText(room, "bob's")
		// Alice is made room admin so that only her account's state can
		// refuse her acts.
		bob.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.power_levels", map[string]any{
			"users": map[string]int{bob.UserID: 100, alice.UserID: 100}}, nil)
		spec := "/_matrix/client/v1/admin"
		var caps struct {
			Capabilities map[string]any `json:"capabilities"`
		}
		admin.MustDo("GET", "/_matrix/client/v3/capabilities", nil, &caps)
		if m, _ := caps.Capabilities["m.account_moderation"].(map[string]any); m["suspend"] != true || m["lock"] != true {
			t.Fatalf("capabilities: %v", caps.Capabilities)
		}

		// The spec's endpoints: bad ids, unknown users, admins.
		for _, c := range []struct {
			method, path string
			body         any
			status       int
			code         string
		}{
			{"GET", spec + "/suspend/" + esc("@nobody:localhost"), nil, 404, "M_NOT_FOUND"},
			{"GET", spec + "/suspend/" + esc("@x:elsewhere.test"), nil, 400, "M_INVALID_PARAM"},
			{"GET", spec + "/suspend/nobody", nil, 400, "M_INVALID_PARAM"},
			{"PUT", spec + "/suspend/" + esc(alice.UserID), map[string]any{}, 400, "M_MISSING_PARAM"},
			{"PUT", spec + "/suspend/" + esc(alice.UserID), map[string]any{"suspended": "yes"}, 400, "M_BAD_JSON"},
			{"PUT", spec + "/suspend/" + esc(admin.UserID), map[string]any{"suspended": true}, 403, "M_FORBIDDEN"},
			{"PUT", spec + "/lock/" + esc(admin.UserID), map[string]any{"locked": true}, 403, "M_FORBIDDEN"},
			{"GET", spec + "/lock/" + esc("@nobody:localhost"), nil, 404, "M_NOT_FOUND"},
		} {
			if r := admin.Do(c.method, c.path, c.body); r.Status != c.status || r.ErrCode() != c.code {
				t.Errorf("%s %s: %d %s", c.method, c.path, r.Status, r.Body)
			}
		}
		for _, p := range []string{spec + "/suspend/" + esc(alice.UserID), spec + "/lock/" + esc(alice.UserID)} {
			if r := bob.Do("GET", p, nil); r.Status != 403 || r.ErrCode() != "M_FORBIDDEN" {
				t.Errorf("non-admin GET %s: %d", p, r.Status)
			}
		}

		// Suspended: reads work, every acting endpoint answers 403
		// M_USER_SUSPENDED, leaving, redacting her own event and logging
		// out work.
		var st map[string]bool
		admin.MustDo("PUT", spec+"/suspend/"+esc(alice.UserID), map[string]any{"suspended": true}, &st)
		admin.MustDo("GET", spec+"/suspend/"+esc(alice.UserID), nil, &st)
		if !st["suspended"] {
			t.Fatal("not suspended")
		}
		alice.Sync("timeout=0")
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/messages?dir=b", nil, nil)
		for _, w := range writeEndpoints(room, bobEvent, bob.UserID) {
			path := fillSelf(w.path, alice.UserID)
			if r := alice.Do(w.method, path, w.body); r.Status != http.StatusForbidden || r.ErrCode() != "M_USER_SUSPENDED" {
				t.Errorf("suspended %s %s: %d %s", w.method, path, r.Status, r.Body)
			}
		}
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(aliceEvent)+"/own", map[string]any{}, nil)
		alice.MustDo("PUT", "/_matrix/client/v3/sendToDevice/m.test/td1", map[string]any{"messages": map[string]any{}}, nil)
		var u map[string]any
		admin.MustDo("GET", synapseAdmin+"/v2/users/"+esc(alice.UserID), nil, &u)
		if u["suspended"] != true {
			t.Fatalf("admin API does not show the suspension: %v", u)
		}
		// Synapse's form lifts it.
		admin.MustDo("PUT", synapseAdmin+"/v1/suspend/"+esc(alice.UserID), map[string]any{"suspend": false}, nil)
		alice.SendText(room, "back")

		// Locked: 401 M_USER_LOCKED with soft_logout on everything, reads
		// and writes, but logout; the token survives the lock.
		admin.MustDo("PUT", spec+"/lock/"+esc(alice.UserID), map[string]any{"locked": true}, &st)
		reads := []writeEndpoint{{"GET", "/_matrix/client/v3/sync?timeout=0", nil}, {"GET", "/_matrix/client/v3/account/whoami", nil},
			{"GET", "/_matrix/client/v3/rooms/" + esc(room) + "/messages", nil}, {"GET", "/_matrix/client/v3/joined_rooms", nil}}
		for _, w := range append(reads, writeEndpoints(room, aliceEvent, bob.UserID)...) {
			path := fillSelf(w.path, alice.UserID)
			r := alice.Do(w.method, path, w.body)
			var body struct {
				SoftLogout bool `json:"soft_logout"`
			}
			_ = r.JSON(&body)
			if r.Status != http.StatusUnauthorized || r.ErrCode() != "M_USER_LOCKED" || !body.SoftLogout {
				t.Errorf("locked %s %s: %d %s", w.method, path, r.Status, r.Body)
			}
		}
		// A locked account cannot log in either.
		if r := s.Anonymous(t).Do("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
			"identifier": map[string]string{"type": "m.id.user", "user": alice.UserID}, "password": "correct horse battery"}); r.Status != 401 || r.ErrCode() != "M_USER_LOCKED" {
			t.Fatalf("locked login: %d %s", r.Status, r.Body)
		}
		admin.MustDo("GET", spec+"/lock/"+esc(alice.UserID), nil, &st)
		if !st["locked"] {
			t.Fatal("not locked")
		}
		admin.MustDo("PUT", spec+"/lock/"+esc(alice.UserID), map[string]any{"locked": false}, nil)
		alice.MustDo("GET", "/_matrix/client/v3/account/whoami", nil, nil)
		// Logout works while locked.
		admin.MustDo("PUT", spec+"/lock/"+esc(alice.UserID), map[string]any{"locked": true}, nil)
		alice.MustDo("POST", "/_matrix/client/v3/logout", map[string]any{}, nil)
	})
}

// fillSelf puts the caller's id in a path.
func fillSelf(path, userID string) string {
	const self = "{self}"
	for i := 0; i+len(self) <= len(path); i++ {
		if path[i:i+len(self)] == self {
			return path[:i] + url.PathEscape(userID) + path[i+len(self):]
		}
	}
	return path
}

// A shadow-banned user's sends succeed for them and reach no one.
func TestShadowBan(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		mallory, bob, carol := s.Register(t, "mallory"), s.Register(t, "bob"), s.Register(t, "carol")
		room := bob.CreateRoom(map[string]any{"preset": "public_chat"})
		mallory.Join(room)
		seen := mallory.SendText(room, "before")
		admin.MustDo("POST", synapseAdmin+"/v1/users/"+esc(mallory.UserID)+"/shadow_ban", nil, nil)
		var u map[string]any
		admin.MustDo("GET", synapseAdmin+"/v2/users/"+esc(mallory.UserID), nil, &u)
		if u["shadow_banned"] != true {
			t.Fatalf("not shown shadow-banned: %v", u)
		}
		hidden := mallory.SendText(room, "spam")
		if hidden == "" || hidden[0] != '$' {
			t.Fatalf("send answered %q", hidden)
		}
		var state map[string]string
		mallory.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/m.room.topic", map[string]any{"topic": "spam"}, &state)
		mallory.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(seen)+"/r1", map[string]any{}, nil)
		mallory.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/invite", map[string]any{"user_id": carol.UserID}, nil)
		admin.MustDo("DELETE", synapseAdmin+"/v1/users/"+esc(mallory.UserID)+"/shadow_ban", nil, nil)
		after := mallory.SendText(room, "after")

		// Bob sees "before" (not redacted), no spam, no topic, "after";
		// Carol got no invite.
		var msgs struct {
			Chunk []event `json:"chunk"`
		}
		bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/messages?dir=b&limit=50", nil, &msgs)
		var got []string
		for _, e := range msgs.Chunk {
			if e.Type == "m.room.topic" || e.Type == "m.room.redaction" || e.EventID == hidden || e.EventID == state["event_id"] {
				t.Fatalf("a shadow-banned event reached the room: %+v", e)
			}
			if e.Type == "m.room.message" {
				got = append(got, fmt.Sprint(e.Content["body"]))
				if e.EventID == seen && len(e.Content) == 0 {
					t.Fatal("the shadow-banned redaction applied")
				}
			}
		}
		if len(got) != 2 || got[0] != "after" || got[1] != "before" {
			t.Fatalf("bob sees %v (after %s)", got, after)
		}
		sync := carol.Sync("timeout=0")
		if rooms, _ := sync["rooms"].(map[string]any); rooms != nil && rooms["invite"] != nil {
			if inv, _ := rooms["invite"].(map[string]any); len(inv) > 0 {
				t.Fatalf("carol got an invite: %v", inv)
			}
		}
	})
}

// Registration tokens made through the admin API are the tokens of
// m.login.registration_token.
func TestAdminRegistrationTokens(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		s.Config.Registration.Mode = config.RegistrationToken
		base := synapseAdmin + "/v1/registration_tokens"
		var tok map[string]any
		admin.MustDo("POST", base+"/new", map[string]any{}, &tok)
		hasFields(t, "token", tok, "token", "uses_allowed", "pending", "completed", "expiry_time")
		if s, _ := tok["token"].(string); len(s) != 16 || tok["uses_allowed"] != nil || tok["expiry_time"] != nil {
			t.Fatalf("default token: %v", tok)
		}
		admin.MustDo("POST", base+"/new", map[string]any{"length": 5}, &tok)
		if len(tok["token"].(string)) != 5 {
			t.Fatalf("length 5: %v", tok)
		}
		admin.MustDo("POST", base+"/new", map[string]any{"token": "defg", "uses_allowed": 1}, &tok)
		if tok["token"] != "defg" || tok["uses_allowed"] != float64(1) {
			t.Fatalf("defg: %v", tok)
		}
		expiry := time.Now().Add(time.Hour).UnixMilli()
		admin.MustDo("PUT", base+"/defg", map[string]any{"expiry_time": expiry}, &tok)
		if tok["expiry_time"] != float64(expiry) || tok["uses_allowed"] != float64(1) {
			t.Fatalf("updated: %v", tok)
		}
		// The client API's validity check and registration use it.
		var v map[string]bool
		s.Anonymous(t).MustDo("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=defg", nil, &v)
		if !v["valid"] {
			t.Fatal("defg not valid for the client API")
		}
		c := s.Anonymous(t)
		first := c.Do("POST", "/_matrix/client/v3/register", map[string]any{"username": "tokuser", "password": "long enough password"})
		var flows struct {
			Session string `json:"session"`
		}
		_ = first.JSON(&flows)
		c.MustDo("POST", "/_matrix/client/v3/register", map[string]any{"username": "tokuser", "password": "long enough password",
			"auth": map[string]any{"type": "m.login.registration_token", "token": "defg", "session": flows.Session}}, nil)
		admin.MustDo("GET", base+"/defg", nil, &tok)
		if tok["completed"] != float64(1) {
			t.Fatalf("after a registration: %v", tok)
		}
		var list struct {
			Tokens []map[string]any `json:"registration_tokens"`
		}
		admin.MustDo("GET", base+"?valid=false", nil, &list)
		if len(list.Tokens) != 1 || list.Tokens[0]["token"] != "defg" {
			t.Fatalf("valid=false: %v", list.Tokens)
		}
		admin.MustDo("GET", base+"?valid=true", nil, &list)
		if len(list.Tokens) != 2 {
			t.Fatalf("valid=true: %v", list.Tokens)
		}
		admin.MustDo("PUT", base+"/defg", map[string]any{"uses_allowed": nil, "expiry_time": nil}, &tok)
		if tok["uses_allowed"] != nil || tok["expiry_time"] != nil {
			t.Fatalf("cleared: %v", tok)
		}
		admin.MustDo("DELETE", base+"/defg", nil, nil)
		if r := admin.Do("GET", base+"/defg", nil); r.Status != 404 {
			t.Fatalf("deleted: %d", r.Status)
		}
	})
}

// account_validity.period locks an account that long after its creation
// until an administrator renews it.
func TestAccountValidity(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		var offset time.Duration
		s.Accounts.SetClock(func() time.Time { return time.Now().Add(offset) })
		s.Config.AccountValidity.Period.Duration = 24 * time.Hour
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		leaver := s.Register(t, "leaver")
		leaver.MustDo("GET", "/_matrix/client/v3/account/whoami", nil, nil)
		offset = 25 * time.Hour
		// The admin was created before too: renew it first.
		ctx := context.Background()
		if _, err := s.Accounts.RenewAccount(ctx, admin.UserID, time.Now().Add(48*time.Hour)); err != nil {
			t.Fatal(err)
		}
		if r := leaver.Do("GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 401 || r.ErrCode() != "M_USER_LOCKED" {
			t.Fatalf("expired account: %d %s", r.Status, r.Body)
		}
		var out map[string]int64
		until := time.Now().Add(72 * time.Hour).UnixMilli()
		admin.MustDo("POST", synapseAdmin+"/v1/account_validity/validity", map[string]any{"user_id": leaver.UserID, "expiration_ts": until}, &out)
		if out["expiration_ts"] != until {
			t.Fatalf("renewed: %v", out)
		}
		leaver.MustDo("GET", "/_matrix/client/v3/account/whoami", nil, nil)
		for _, bad := range []map[string]any{{}, {"user_id": "nobody"}, {"user_id": "@nobody:localhost", "expiration_ts": until}, {"user_id": leaver.UserID, "expiration_ts": -1}} {
			if r := admin.Do("POST", synapseAdmin+"/v1/account_validity/validity", bad); r.Status != 400 && r.Status != 404 {
				t.Errorf("bad renewal %v: %d %s", bad, r.Status, r.Body)
			}
		}
	})
}
