package integration

import (
	"net/http"
	"testing"

	ts "luxchat/internal/testserver"
)

// FuzzClientAPI throws arbitrary bodies at the endpoints that decode JSON:
// whatever comes in, the answer is a Matrix error or success, never a 500.
func FuzzClientAPI(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"name":"x","invite":["@a:b"]}`, `{"initial_state":[{"type":"m.room.name","content":{"name":1}}]}`,
		`{"msgtype":"m.text","body":"\u0000"}`, `[`, `{"room_version":"1","power_level_content_override":{"users":{"@x:y":"100"}}}`,
		`{"preset":"trusted_private_chat","is_direct":true,"creation_content":{"m.federate":false}}`, "\xff",
	} {
		f.Add(seed)
	}
	s := ts.New(f)
	alice := s.Register(f, "fuzz")
	room := alice.CreateRoom(map[string]any{})
	f.Fuzz(func(t *testing.T, body string) {
		alice.SetT(t)
		for _, ep := range []struct{ method, path string }{
			{"POST", "/_matrix/client/v3/createRoom"},
			{"PUT", "/_matrix/client/v3/rooms/" + esc(room) + "/send/m.room.message/fz"},
			{"PUT", "/_matrix/client/v3/rooms/" + esc(room) + "/state/m.room.power_levels/"},
			{"PUT", "/_matrix/client/v3/rooms/" + esc(room) + "/state/m.room.member/" + esc(alice.UserID)},
			{"POST", "/_matrix/client/v3/user/" + esc(alice.UserID) + "/filter"},
			{"POST", "/_matrix/client/v3/rooms/" + esc(room) + "/invite"},
			{"PUT", "/_matrix/client/v3/user/" + esc(alice.UserID) + "/account_data/x.fuzz"},
			{"POST", ssPath},
		} {
			r := alice.Do(ep.method, ep.path, []byte(body))
			if r.Status >= http.StatusInternalServerError {
				t.Fatalf("%s %s with %q: %d %s", ep.method, ep.path, body, r.Status, r.Body)
			}
		}
	})
}
