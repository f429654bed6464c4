package adminapi_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"luxchat/internal/httpapi/adminapi"
	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

// syncBuffer is a log sink read while the server writes to it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fill replaces a pattern's path variables with values of the test.
func fill(path string, vars map[string]string) string {
	for k, v := range vars {
		path = strings.ReplaceAll(path, "{"+k+"}", url.PathEscape(v))
		path = strings.ReplaceAll(path, "{"+k+"...}", url.PathEscape(v))
	}
	return path
}

// Every route of the admin API refuses a caller without a token (401) and
// a user who is not an administrator (403 M_FORBIDDEN) before anything
// else, answers an administrator without a 500, and leaves an audit line
// naming the administrator and the route for every call.
func TestEveryAdminRouteIsForAdminsAndAudited(t *testing.T) {
	logs := &syncBuffer{}
	s := ts.New(t, ts.WithLog(logs))
	ctx := context.Background()
	adminUser, bob, eve := s.Register(t, "admin"), s.Register(t, "bob"), s.Register(t, "eve")
	if err := s.Store.InTx(ctx, func(tx *store.Tx) error { return tx.SetAdmin(ctx, adminUser.UserID, true) }); err != nil {
		t.Fatal(err)
	}
	admin := s.Anonymous(t)
	var login struct {
		AccessToken string `json:"access_token"`
	}
	admin.MustDo("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": adminUser.UserID}, "password": "correct horse battery"}, &login)
	admin.UserID, admin.Token = adminUser.UserID, login.AccessToken
	room := bob.CreateRoom(map[string]any{})

	vars := map[string]string{"userId": bob.UserID, "roomId": room, "deviceId": bob.DeviceID, "token": "tok", "txnId": "t1",
		"serverName": "localhost", "mediaId": "abc", "reportId": "1", "destination": "other.test", "eventId": "$e", "deleteId": "d1", "sub": "delete_status"}
	patterns := adminapi.RoutePatterns()
	if len(patterns) < 30 {
		t.Fatalf("only %d admin routes", len(patterns))
	}
	for _, p := range patterns {
		method, path, _ := strings.Cut(p, " ")
		path = fill(path, vars)
		if strings.Contains(path, "{") {
			t.Fatalf("%s: a path variable the test does not fill", p)
		}
		var body any
		if method != http.MethodGet && method != http.MethodDelete {
			body = map[string]any{}
		}
		if r := s.Anonymous(t).Do(method, path, body); r.Status != http.StatusUnauthorized {
			t.Errorf("%s anonymous: %d %s", p, r.Status, r.Body)
		}
		if r := eve.Do(method, path, body); r.Status != http.StatusForbidden || r.ErrCode() != "M_FORBIDDEN" {
			t.Errorf("%s non-admin: %d %s", p, r.Status, r.Body)
		}
		if !strings.Contains(logs.String(), `admin=`+eve.UserID) {
			t.Fatalf("%s: the refused call is not audited:\n%s", p, logs.String())
		}
	}
	for _, p := range patterns {
		method, path, _ := strings.Cut(p, " ")
		var body any
		if method != http.MethodGet && method != http.MethodDelete {
			body = map[string]any{}
		}
		before := len(logs.String())
		r := admin.Do(method, fill(path, vars), body)
		if r.Status >= 500 {
			t.Errorf("%s admin: %d %s", p, r.Status, r.Body)
		}
		line := logs.String()[before:]
		if !strings.Contains(line, `msg="admin call"`) || !strings.Contains(line, `route="`+p+`"`) || !strings.Contains(line, "admin="+admin.UserID) {
			t.Errorf("%s: no audit line with the admin and the route:\n%s", p, line)
		}
	}
	// The target is named: the path's user here.
	if !strings.Contains(logs.String(), "target="+bob.UserID) {
		t.Errorf("no audit line names the target %s", bob.UserID)
	}
}
