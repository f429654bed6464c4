package integration

import (
	"net/http"
	"testing"

	ts "luxchat/internal/testserver"
)

// With listen.admin set, /_synapse/admin is served there only; the spec's
// admin endpoints stay on the client listener; a non-administrator is
// refused on both.
func TestAdminListener(t *testing.T) {
	s := ts.New(t, ts.WithAdminListener(t))
	if s.AdminURL == s.URL {
		t.Fatal("no admin listener")
	}
	admin := makeAdmin(t, s, s.Register(t, "admin"))
	bob := s.Register(t, "bob")
	notice := map[string]any{"user_id": bob.UserID, "content": map[string]any{"msgtype": "m.text", "body": "hello"}}

	// The client listener no longer knows the admin API, whoever asks,
	// and no path trick reaches it.
	for _, p := range []string{"/_synapse/admin/v1/send_server_notice", "/_synapse/admin/v1/register", "/_matrix/client/v3/../../../_synapse/admin/v1/send_server_notice"} {
		if r := admin.Do("POST", p, notice); r.Status == http.StatusOK || (r.Status == http.StatusNotFound && r.ErrCode() != "M_UNRECOGNIZED") {
			t.Fatalf("client listener %s: %d %s", p, r.Status, r.Body)
		}
	}
	// The admin listener serves it, to administrators only.
	onAdmin := func(c *ts.Client) *ts.Client { cc := *c; cc.URL = s.AdminURL; return &cc }
	if r := onAdmin(bob).Do("POST", "/_synapse/admin/v1/send_server_notice", notice); r.Status != http.StatusForbidden || r.ErrCode() != "M_FORBIDDEN" {
		t.Fatalf("non-admin on the admin listener: %d %s", r.Status, r.Body)
	}
	onAdmin(admin).MustDo("POST", "/_synapse/admin/v1/send_server_notice", notice, nil)
	// and nothing else: the client API is not reachable through it.
	if r := onAdmin(bob).Do("GET", "/_matrix/client/v3/account/whoami", nil); r.Status != http.StatusNotFound || r.ErrCode() != "M_UNRECOGNIZED" {
		t.Fatalf("client API on the admin listener: %d %s", r.Status, r.Body)
	}
	// The client API still works on its own listener.
	bob.MustDo("GET", "/_matrix/client/v3/account/whoami", nil, nil)
}
