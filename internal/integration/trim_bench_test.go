package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"luxchat/internal/rooms"
)

// BenchmarkSendUnloadedRoom measures one message into a group of three
// whose parsed state the server kept ("kept") or had unloaded
// (rooms.TrimStates) since its last use ("unloaded"): what a trimmed
// cache costs the next send into a room nobody used for a while.
//
//	go test ./internal/integration -run '^$' -bench SendUnloadedRoom -benchtime 400x
func BenchmarkSendUnloadedRoom(b *testing.B) {
	for _, unload := range []bool{false, true} {
		name := map[bool]string{false: "kept", true: "unloaded"}[unload]
		b.Run(name, func(b *testing.B) {
			s := bigRoomServer(b)
			alice := s.Register(b, "alice")
			members := seedAccounts(b, s, "m", 2)
			const groups = 50
			ids := make([]string, groups)
			for i := range ids {
				ids[i] = alice.CreateRoom(map[string]any{"preset": "public_chat"})
				joinAll(b, s, ids[i], members)
			}
			ctx := context.Background()
			content := json.RawMessage(`{"msgtype":"m.text","body":"hello"}`)
			b.ResetTimer()
			cpu := serverCPU(b, s)
			for i := 0; i < b.N; i++ {
				if unload {
					// Unloading is the housekeeping's work, not the send's:
					// its CPU is taken out of the sample.
					b.StopTimer()
					before := serverCPU(b, s)
					s.Rooms.TrimStates(0, 0)
					cpu.self += serverCPU(b, s).self - before.self
					b.StartTimer()
				}
				if _, err := s.Rooms.Send(ctx, ids[i%groups], rooms.Proto{Type: "m.room.message", Sender: alice.UserID, Content: content},
					&rooms.Txn{DeviceID: alice.DeviceID, ID: fmt.Sprint(i), Scope: "bench"}); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, s, cpu)
		})
	}
}
