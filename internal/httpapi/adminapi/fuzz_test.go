package adminapi_test

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

// adminClient makes a registered user an administrator and returns a
// fresh session of it.
func adminClient(t testing.TB, s *ts.Server) *ts.Client {
	u := s.Register(t, "admin")
	ctx := context.Background()
	if err := s.Store.InTx(ctx, func(tx *store.Tx) error { return tx.SetAdmin(ctx, u.UserID, true) }); err != nil {
		t.Fatal(err)
	}
	c := s.Anonymous(t)
	var login struct {
		AccessToken string `json:"access_token"`
	}
	c.MustDo("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": u.UserID}, "password": "correct horse battery"}, &login)
	c.UserID, c.Token = u.UserID, login.AccessToken
	return c
}

// The user list's query and the account and token bodies are parsed into
// a clear error or an answer, never a 500.
func FuzzAdminUserInput(f *testing.F) {
	s := ts.New(f)
	admin := adminClient(f, s)
	for _, seed := range []struct{ query, body string }{
		{"from=0&limit=10&guests=false", `{"displayname":"x"}`},
		{"order_by=displayname&dir=b&name=%25_%5C", `{"threepids":[{"medium":"email","address":"a@b"}],"user_type":null}`},
		{"limit=99999999999999999999", `{"password":"short"}`},
		{"not_user_type=&not_user_type=bot&admins=true&locked=true", `{"external_ids":[{"auth_provider":"","external_id":"x"}]}`},
		{"from=-1", `{"uses_allowed":-5,"expiry_time":null}`},
		{"user_id=%00", `[1,2]`},
		{"deactivated=TRUE", `{"admin":null,"locked":"no"}`},
	} {
		f.Add(seed.query, seed.body)
	}
	f.Fuzz(func(t *testing.T, query, body string) {
		if strings.ContainsFunc(query, func(r rune) bool { return r < ' ' || r == 0x7f || r == ' ' || r == '#' }) {
			t.Skip("not a query a client can send")
		}
		admin.SetT(t)
		if r := admin.Do("GET", "/_synapse/admin/v2/users?"+query, nil); r.Status >= 500 {
			t.Fatalf("list %q: %d %s", query, r.Status, r.Body)
		}
		if r := admin.Do("PUT", "/_synapse/admin/v2/users/"+url.PathEscape("@fuzz:localhost"), []byte(body)); r.Status >= 500 {
			t.Fatalf("put user %q: %d %s", body, r.Status, r.Body)
		}
		if r := admin.Do("PUT", "/_synapse/admin/v1/registration_tokens/"+url.PathEscape(query), []byte(body)); r.Status >= 500 {
			t.Fatalf("put token %q %q: %d %s", query, body, r.Status, r.Body)
		}
		if r := admin.Do("POST", "/_synapse/admin/v1/registration_tokens/new", []byte(body)); r.Status >= 500 {
			t.Fatalf("new token %q: %d %s", body, r.Status, r.Body)
		}
	})
}
