package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"luxchat/internal/config"
	"luxchat/internal/rooms"
	"luxchat/internal/sync"
	ts "luxchat/internal/testserver"
)

// BenchmarkSendTenMembers measures sending a message to a room of ten local
// members, each of whom has the message evaluated against their push rules
// (SQLite), and the same without push rules.
func BenchmarkSendTenMembers(b *testing.B) {
	b.Run("push", func(b *testing.B) { benchSendTen(b, ts.New(b)) })
	b.Run("nopush", func(b *testing.B) {
		benchSendTen(b, ts.New(b, ts.WithConfig(func(c *config.Config) { c.Push.Enabled = false })))
	})
}

func benchSendTen(b *testing.B, s *ts.Server) {
	alice := s.Register(b, "alice")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	for i := range 9 {
		s.Register(b, fmt.Sprint("member", i)).Join(room)
	}
	ctx := context.Background()
	content := json.RawMessage(`{"msgtype":"m.text","body":"hello","m.mentions":{"user_ids":["@member1:` + s.Config.ServerName + `"]}}`)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Rooms.Send(ctx, room, rooms.Proto{Type: "m.room.message", Sender: alice.UserID, Content: content},
			&rooms.Txn{DeviceID: alice.DeviceID, ID: fmt.Sprint(i), Scope: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIncrementalSyncCounts measures an incremental sync that
// carries one new message, with notification counts from push rules and
// without (SQLite).
func BenchmarkIncrementalSyncCounts(b *testing.B) {
	b.Run("push", func(b *testing.B) { benchIncremental(b, ts.New(b)) })
	b.Run("nopush", func(b *testing.B) {
		benchIncremental(b, ts.New(b, ts.WithConfig(func(c *config.Config) { c.Push.Enabled = false })))
	})
}

func benchIncremental(b *testing.B, s *ts.Server) {
	alice, bob := s.Register(b, "alice"), s.Register(b, "bob")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	bob.Join(room)
	ctx := context.Background()
	resp, err := s.Sync.Sync(ctx, sync.Request{UserID: bob.UserID, DeviceID: bob.DeviceID, SetPresence: "offline"})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		alice.SendText(room, "ping")
		b.StartTimer()
		resp, err = s.Sync.Sync(ctx, sync.Request{UserID: bob.UserID, DeviceID: bob.DeviceID, Since: resp.NextBatch, SetPresence: "offline"})
		if err != nil || len(resp.Rooms.Join[room].Timeline.Events) != 1 {
			b.Fatalf("sync: %v", err)
		}
	}
}
