package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	ts "luxchat/internal/testserver"
)

// Clients (Cinny, Element Web, Complement) address state with an empty
// state key both as /state/{type} and /state/{type}/; both must work for
// GET (content and ?format=event) and PUT.
func TestStateEmptyKeyBothForms(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"name": "first"})
		base := "/_matrix/client/v3/rooms/" + esc(room) + "/state/m.room.name"
		alice.MustDo("PUT", base+"/", map[string]any{"name": "with slash"}, nil)
		for _, path := range []string{base, base + "/"} {
			var content map[string]any
			alice.MustDo("GET", path, nil, &content)
			if content["name"] != "with slash" {
				t.Fatalf("GET %s = %v", path, content)
			}
		}
		alice.MustDo("PUT", base, map[string]any{"name": "no slash"}, nil)
		var ev event
		alice.MustDo("GET", base+"/?format=event", nil, &ev)
		if ev.Type != "m.room.name" || ev.StateKey == nil || *ev.StateKey != "" || ev.Content["name"] != "no slash" {
			t.Fatalf("format=event: %+v", ev)
		}
		// A state key holding a slash, escaped, is one key.
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/state/org.example.k/"+esc("a/b"), map[string]any{"v": 1}, nil)
		var st []event
		alice.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/state", nil, &st)
		found := false
		for _, e := range st {
			if e.Type == "org.example.k" && e.StateKey != nil && *e.StateKey == "a/b" {
				found = true
			}
		}
		if !found {
			t.Fatal("state key a/b not in room state")
		}
	})
}

// Browsers only let a web client read an error when the answer carries
// CORS headers, so 404 and 405 answers carry them too.
func TestCORSOnEveryAnswer(t *testing.T) {
	s := ts.New(t)
	c := s.Anonymous(t)
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/_matrix/client/versions", http.StatusOK},
		{"GET", "/_matrix/client/v3/no/such/endpoint", http.StatusNotFound},
		{"DELETE", "/_matrix/client/versions", http.StatusMethodNotAllowed},
		{"GET", "/_matrix/client/v3/sync", http.StatusUnauthorized},
	} {
		r := c.Do(tc.method, tc.path, nil)
		if r.Status != tc.status {
			t.Fatalf("%s %s: status %d, want %d", tc.method, tc.path, r.Status, tc.status)
		}
		if r.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(r.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
			t.Fatalf("%s %s: no CORS headers: %v", tc.method, tc.path, r.Header)
		}
	}
}

// Older clients (matrix-nio 0.20) still upload and download through the
// r0 media prefix.
func TestMediaR0Alias(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		var up struct {
			ContentURI string `json:"content_uri"`
		}
		alice.MustDo("POST", "/_matrix/media/r0/upload?filename=a.txt", []byte("hello r0"), &up)
		if !strings.HasPrefix(up.ContentURI, "mxc://") {
			t.Fatalf("upload: %q", up.ContentURI)
		}
		r := alice.Do("GET", "/_matrix/client/v1/media/download/"+strings.TrimPrefix(up.ContentURI, "mxc://"), nil)
		if r.Status != http.StatusOK || string(r.Body) != "hello r0" {
			t.Fatalf("download: %d %q", r.Status, r.Body)
		}
		r = alice.Do("GET", fmt.Sprintf("/_matrix/media/r0/config"), nil)
		if r.Status != http.StatusOK {
			t.Fatalf("r0 config: %d %s", r.Status, r.Body)
		}
	})
}
