package integration

import (
	"net/url"
	"testing"
	"time"
)

// BenchmarkJoinBigRoomHTTP measures one join over the client API into a
// public room that already has bigRoomMembers() members, by users whose
// access tokens the server has not seen yet (as the sector benchmark's
// joiners): the token's lookup, the device's last-seen time and the
// joiner's profile count with the join. CPU per join as in
// BenchmarkJoinBigRoom (the client's HTTP work included in cpu-ms/op).
//
//	LUXCHAT_BENCH_ENGINE=postgres LUXCHAT_BENCH_MEMBERS=3000 go test ./internal/integration -run '^$' -bench JoinBigRoomHTTP -benchtime 300x
func BenchmarkJoinBigRoomHTTP(b *testing.B) {
	s := bigRoomServer(b)
	alice := s.Register(b, "alice")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	n := bigRoomMembers()
	start := time.Now()
	joinAll(b, s, room, seedAccounts(b, s, "m", n))
	b.Logf("%d joins in %v", n, time.Since(start))
	joiners := seedSessions(b, s, seedAccounts(b, s, "x", b.N+1))
	// The first join after a start reads the room's state; not per join.
	joiners[0].MustDo("POST", "/_matrix/client/v3/join/"+url.PathEscape(room), map[string]any{}, nil)
	joiners = joiners[1:]
	b.ResetTimer()
	cpu := serverCPU(b, s)
	stop := profileTimed(b)
	for _, c := range joiners {
		c.MustDo("POST", "/_matrix/client/v3/join/"+url.PathEscape(room), map[string]any{}, nil)
	}
	stop()
	reportCPU(b, s, cpu)
}
