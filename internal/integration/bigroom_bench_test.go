package integration

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"luxchat/internal/rooms"
	"luxchat/internal/store"
	ts "luxchat/internal/testserver"
)

// bigRoomMembers is the size the big-room benchmarks grow a room to
// (LUXCHAT_BENCH_MEMBERS, default 2,000).
func bigRoomMembers() int {
	if n, err := strconv.Atoi(os.Getenv("LUXCHAT_BENCH_MEMBERS")); err == nil && n > 0 {
		return n
	}
	return 2000
}

// seedAccounts creates n accounts through the store (no password hashing).
func seedAccounts(b *testing.B, s *ts.Server, prefix string, n int) []string {
	ids := make([]string, n)
	err := s.Store.InTx(context.Background(), func(tx *store.Tx) error {
		for i := range n {
			ids[i] = fmt.Sprintf("@%s%d:%s", prefix, i, s.Config.ServerName)
			if err := tx.CreateUser(context.Background(), store.User{UserID: ids[i], DisplayName: sql.NullString{String: fmt.Sprint(prefix, " ", i), Valid: true}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return ids
}

func joinAll(b *testing.B, s *ts.Server, room string, users []string) {
	ctx := context.Background()
	for _, u := range users {
		if _, err := s.Rooms.ChangeMembership(ctx, rooms.MemberChange{RoomID: room, Sender: u, Target: u, Membership: "join"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJoinBigRoom measures one join into a public room that already
// has bigRoomMembers() members.
func BenchmarkJoinBigRoom(b *testing.B) {
	s := ts.New(b)
	alice := s.Register(b, "alice")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	n := bigRoomMembers()
	start := time.Now()
	joinAll(b, s, room, seedAccounts(b, s, "m", n))
	b.Logf("%d joins in %v", n, time.Since(start))
	extra := seedAccounts(b, s, "x", b.N)
	b.ResetTimer()
	joinAll(b, s, room, extra)
}

// BenchmarkSendBigRoom measures one message into a public room of
// bigRoomMembers() members.
func BenchmarkSendBigRoom(b *testing.B) {
	s := ts.New(b)
	alice := s.Register(b, "alice")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	joinAll(b, s, room, seedAccounts(b, s, "m", bigRoomMembers()))
	ctx := context.Background()
	content := json.RawMessage(`{"msgtype":"m.text","body":"hello everyone"}`)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Rooms.Send(ctx, room, rooms.Proto{Type: "m.room.message", Sender: alice.UserID, Content: content},
			&rooms.Txn{DeviceID: alice.DeviceID, ID: fmt.Sprint(i), Scope: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}
