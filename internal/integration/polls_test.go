package integration

import (
	"fmt"
	"net/http"
	"testing"

	ts "luxchat/internal/testserver"
)

// Polls with very many answers: one that fits in an event is stored and
// relayed like any other, with its responses listed; one over the event
// size limit is refused with M_TOO_LARGE and nothing is stored.
func TestPollWithThousandsOfAnswers(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		poll := func(n int) map[string]any {
			answers := make([]any, n)
			for i := range answers {
				answers[i] = map[string]any{"m.id": fmt.Sprint(i), "m.text": []any{map[string]any{"body": fmt.Sprint("option ", i)}}}
			}
			return map[string]any{
				"m.text": []any{map[string]any{"body": "Pick"}},
				"m.poll": map[string]any{"kind": "m.disclosed", "max_selections": n,
					"question": map[string]any{"m.text": []any{map[string]any{"body": "Pick"}}},
					"answers":  answers},
			}
		}
		start := alice.Send(room, "m.poll.start", poll(1000))
		all := make([]string, 1000)
		for i := range all {
			all[i] = fmt.Sprint(i)
		}
		resp := bob.Send(room, "m.poll.response", map[string]any{
			"m.selections": all,
			"m.relates_to": map[string]any{"rel_type": "m.reference", "event_id": start}})
		p := relGet(t, alice, room, start, "/m.reference", "dir=f")
		if ids := relIDs(p.Chunk); len(ids) != 1 || ids[0] != resp {
			t.Fatalf("responses of the big poll: %v", ids)
		}
		r := alice.Do("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.poll.start/huge", poll(5000))
		if r.Status != http.StatusRequestEntityTooLarge && r.ErrCode() != "M_TOO_LARGE" {
			t.Fatalf("poll of 5000 answers: %d %s", r.Status, r.Body)
		}
		if got := bodies(messages(t, bob, room, "dir=b&limit=5").Chunk); len(got) != 0 {
			t.Fatalf("messages after the refused poll: %v", got)
		}
	})
}
