package integration

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	ts "luxchat/internal/testserver"
)

// Media whose every referencing event was redacted is purged; media never
// seen referenced (it may sit in encrypted events) and media still
// referenced are kept.
func TestPurgeUnreferencedMedia(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		upload := func(body string) string {
			var r struct {
				ContentURI string `json:"content_uri"`
			}
			alice.MustDo("POST", "/_matrix/media/v3/upload?filename=x.txt", []byte(body), &r)
			if !strings.HasPrefix(r.ContentURI, "mxc://") {
				t.Fatalf("upload: %q", r.ContentURI)
			}
			return r.ContentURI
		}
		gone, never, kept := upload("redacted away"), upload("never referenced"), upload("still referenced")
		ev := alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.file", "body": "a", "url": gone})
		alice.Send(room, "m.room.message", map[string]any{"msgtype": "m.file", "body": "b", "url": kept})
		alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/redact/"+esc(ev)+"/r1", map[string]any{}, nil)

		n, err := s.Media.PurgeUnreferenced(context.Background(), time.Now().Add(time.Hour), nil)
		if err != nil || n != 1 {
			t.Fatalf("purged %d, %v; want 1", n, err)
		}
		for uri, want := range map[string]int{gone: http.StatusNotFound, never: http.StatusOK, kept: http.StatusOK} {
			r := alice.Do("GET", "/_matrix/client/v1/media/download/"+strings.TrimPrefix(uri, "mxc://"), nil)
			if r.Status != want {
				t.Errorf("%s: %d, want %d", uri, r.Status, want)
			}
		}
	})
}
