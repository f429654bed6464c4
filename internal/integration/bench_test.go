package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"luxchat/internal/rooms"
	"luxchat/internal/sync"
	ts "luxchat/internal/testserver"
)

// BenchmarkSend measures the event pipeline without HTTP: build, sign,
// authorise and persist one message (SQLite).
func BenchmarkSend(b *testing.B) {
	s := ts.New(b)
	alice := s.Register(b, "alice")
	room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
	ctx := context.Background()
	content := json.RawMessage(`{"msgtype":"m.text","body":"hello"}`)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Rooms.Send(ctx, room, rooms.Proto{Type: "m.room.message", Sender: alice.UserID, Content: content},
			&rooms.Txn{DeviceID: alice.DeviceID, ID: fmt.Sprint(i), Scope: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInitialSync measures building an initial sync for a user in 10
// rooms of 50 messages each.
func BenchmarkInitialSync(b *testing.B) {
	s := ts.New(b)
	alice := s.Register(b, "alice")
	for r := range 10 {
		room := alice.CreateRoom(map[string]any{"preset": "public_chat", "name": fmt.Sprint("room ", r)})
		for i := range 50 {
			alice.SendText(room, fmt.Sprint("message ", i))
		}
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := s.Sync.Sync(ctx, sync.Request{UserID: alice.UserID, DeviceID: alice.DeviceID, SetPresence: "offline"})
		if err != nil {
			b.Fatal(err)
		}
		if len(resp.Rooms.Join) != 10 {
			b.Fatalf("%d rooms", len(resp.Rooms.Join))
		}
	}
}

// BenchmarkIncrementalSync measures an incremental sync that carries one
// new message.
func BenchmarkIncrementalSync(b *testing.B) { benchIncremental(b, ts.New(b)) }
