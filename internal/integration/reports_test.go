package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	ts "luxchat/internal/testserver"
)

func TestReports(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob, carol := s.Register(t, "alice"), s.Register(t, "bob"), s.Register(t, "carol")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat", "initial_state": []map[string]any{
			{"type": "m.room.history_visibility", "state_key": "", "content": map[string]string{"history_visibility": "joined"}}}})
		hidden := alice.SendText(room, "said before bob joined")
		bob.Join(room)
		msg := alice.SendText(room, "something offensive")
		reportEvent := func(c *ts.Client, roomID, eventID string, body any) *ts.Response {
			return c.Do("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%s/report/%s", esc(roomID), esc(eventID)), body)
		}
		want := func(r *ts.Response, status int, code string) {
			t.Helper()
			if r.Status != status || (code != "" && r.ErrCode() != code) {
				t.Fatalf("want %d %s, got %d %s", status, code, r.Status, r.Body)
			}
		}

		// Event reports: the reporter must be joined and able to see it.
		want(reportEvent(bob, room, msg, map[string]any{"reason": "rude", "score": -80}), 200, "")
		want(reportEvent(bob, room, msg, map[string]any{}), 200, "") // reason is optional
		want(reportEvent(bob, room, "$unknown:localhost", map[string]any{"reason": "x"}), 404, "M_NOT_FOUND")
		want(reportEvent(bob, room, hidden, map[string]any{"reason": "x"}), 404, "M_NOT_FOUND")
		want(reportEvent(carol, room, msg, map[string]any{"reason": "x"}), 404, "M_NOT_FOUND")
		want(reportEvent(bob, "!nowhere:localhost", msg, map[string]any{"reason": "x"}), 404, "M_NOT_FOUND")
		want(reportEvent(bob, room, msg, map[string]any{"reason": "x", "score": 5}), 400, "M_INVALID_PARAM")
		want(reportEvent(bob, room, msg, map[string]any{"reason": 7}), 400, "M_BAD_JSON")
		want(reportEvent(bob, room, msg, map[string]any{"reason": strings.Repeat("x", 5000)}), 400, "M_INVALID_PARAM")
		want(reportEvent(bob, room, msg, map[string]any{"reason": "a\x00b"}), 400, "M_INVALID_PARAM")

		// Room reports need no membership; the room must exist.
		want(carol.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/report", map[string]any{"reason": "spam room"}), 200, "")
		want(carol.Do("POST", "/_matrix/client/v3/rooms/"+esc("!nowhere:localhost")+"/report", map[string]any{"reason": ""}), 404, "M_NOT_FOUND")
		want(carol.Do("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/report", map[string]any{}), 400, "M_MISSING_PARAM")

		// User reports need no shared room; local users must exist.
		want(carol.Do("POST", "/_matrix/client/v3/users/"+esc(alice.UserID)+"/report", map[string]any{"reason": "harassment"}), 200, "")
		want(carol.Do("POST", "/_matrix/client/v3/users/"+esc("@ghost:localhost")+"/report", map[string]any{"reason": ""}), 404, "M_NOT_FOUND")
		want(carol.Do("POST", "/_matrix/client/v3/users/"+esc("not-a-user")+"/report", map[string]any{"reason": ""}), 400, "M_INVALID_PARAM")
		want(s.Anonymous(t).Do("POST", "/_matrix/client/v3/users/"+esc(alice.UserID)+"/report", map[string]any{"reason": ""}), 401, "M_MISSING_TOKEN")

		reps, err := s.Store.Reports(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(reps) != 4 {
			t.Fatalf("%d reports stored: %+v", len(reps), reps)
		}
		first := reps[0]
		if first.Kind != "event" || first.Reporter != bob.UserID || first.RoomID != room || first.EventID != msg || first.Reason != "rude" || !first.Score.Valid || first.Score.Int64 != -80 {
			t.Fatalf("first report: %+v", first)
		}
		if reps[3].Kind != "user" || reps[3].UserID != alice.UserID || reps[3].Reporter != carol.UserID {
			t.Fatalf("user report: %+v", reps[3])
		}

		// A flood of reports from one account is cut off.
		limited := false
		for i := 0; i < 20 && !limited; i++ {
			r := carol.Do("POST", "/_matrix/client/v3/users/"+esc(alice.UserID)+"/report", map[string]any{"reason": "again"})
			switch r.Status {
			case http.StatusOK:
			case http.StatusTooManyRequests:
				limited = r.ErrCode() == "M_LIMIT_EXCEEDED"
			default:
				t.Fatalf("report %d: %d %s", i, r.Status, r.Body)
			}
		}
		if !limited {
			t.Fatal("20 reports in a row were all accepted")
		}
	})
}
