package alertbot_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"luxchat/internal/e2ee/e2eetest"
	ts "luxchat/internal/testserver"
)

// BenchmarkEncryptedPost measures Post into an encrypted room whose
// Megolm session is established: 6 members with 2 devices each (keys
// made by e2eetest), the first post shares the session, then every post
// reads the room's encryption, history visibility and members, checks
// the devices, encrypts, stores the session and sends. The room rotates
// its session after 100 messages (the default) in "rotating", never in
// "established"; "clear" is an unencrypted room (an m.room.encryption
// without algorithm), the server's part alone. Reported: p50 and p99 of one post, and the CPU time per
// post of the process (bot and server: one process) and, on PostgreSQL
// (LUXCHAT_BENCH_POSTGRES=1), of its backends.
func BenchmarkEncryptedPost(b *testing.B) {
	for _, c := range []struct {
		name string
		msgs int
	}{{"established", 1_000_000}, {"rotating", 100}, {"clear", 0}} {
		b.Run(c.name, func(b *testing.B) {
			var opts []ts.Option
			if os.Getenv("LUXCHAT_BENCH_POSTGRES") != "" {
				opts = append(opts, ts.WithPostgres(b))
			}
			s := ts.New(b, opts...)
			owner := s.Register(b, "owner")
			room := encryptedRoom(b, s, owner, map[string]any{"rotation_period_msgs": c.msgs})
			if c.msgs == 0 { // the same room, unencrypted: the server's part alone
				room = clearRoom(b, s, owner)
			}
			for i := range 6 {
				u := owner
				if i > 0 {
					u = s.Register(b, fmt.Sprint("member", i))
					owner.MustDo("POST", "/_matrix/client/v3/rooms/"+room+"/invite", map[string]any{"user_id": u.UserID}, nil)
					u.MustDo("POST", "/_matrix/client/v3/join/"+room, map[string]any{}, nil)
				}
				for _, c := range []*ts.Client{u, loginDevice(b, s, u)} {
					dev := e2eetest.NewDevice(c.UserID, c.DeviceID)
					c.MustDo("POST", "/_matrix/client/v3/keys/upload", map[string]any{
						"device_keys": dev.DeviceKeys(), "one_time_keys": dev.OneTimeKeys(5)}, nil)
				}
			}
			ctx := context.Background()
			if _, err := s.AlertBot.Post(ctx, room, "m.room.message", text("warm-up")); err != nil {
				b.Fatal(err)
			}
			// The room key reached the members' devices (Olm, to-device).
			var sync struct {
				ToDevice struct {
					Events []struct {
						Type    string         `json:"type"`
						Content map[string]any `json:"content"`
					} `json:"events"`
				} `json:"to_device"`
			}
			owner.MustDo("GET", "/_matrix/client/v3/sync?timeout=0", nil, &sync)
			if c.msgs > 0 && (len(sync.ToDevice.Events) != 1 || sync.ToDevice.Events[0].Type != "m.room.encrypted" ||
				sync.ToDevice.Events[0].Content["algorithm"] != "m.olm.v1.curve25519-aes-sha2") {
				b.Fatalf("the owner's device got %+v", sync.ToDevice.Events)
			}
			lat := make([]time.Duration, 0, b.N)
			cpu := cpuNow(b, s)
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				if _, err := s.AlertBot.Post(ctx, room, "m.room.message", text(fmt.Sprint("[FIRING:1] HighLatency api-", i))); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			end := cpuNow(b, s)
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
			b.ReportMetric(pct(0.5), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64((end.self-cpu.self).Microseconds())/1000/float64(b.N), "cpu-ms/op")
			if end.pg > 0 {
				b.ReportMetric(float64((end.pg-cpu.pg).Microseconds())/1000/float64(b.N), "pg-cpu-ms/op")
			}
		})
	}
}

// clearRoom makes an unencrypted room with the bot in it.
func clearRoom(b *testing.B, s *ts.Server, c *ts.Client) string {
	var room struct {
		RoomID string `json:"room_id"`
	}
	c.MustDo("POST", "/_matrix/client/v3/createRoom", map[string]any{"preset": "private_chat",
		"initial_state": []any{map[string]any{"type": "m.room.encryption", "state_key": "", "content": map[string]any{}}}}, &room)
	inviteBot(b, s, c, room.RoomID)
	return room.RoomID
}

// loginDevice logs the user in on a second device.
func loginDevice(b *testing.B, s *ts.Server, u *ts.Client) *ts.Client {
	var out struct {
		AccessToken string `json:"access_token"`
		DeviceID    string `json:"device_id"`
	}
	c := s.Anonymous(b)
	c.MustDo("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": u.UserID}, "password": "correct horse battery"}, &out)
	c.UserID, c.DeviceID, c.Token = u.UserID, out.DeviceID, out.AccessToken
	return c
}

type cpuSample struct{ self, pg time.Duration }

// cpuNow is the CPU time of this process and of the store's PostgreSQL
// backends (when on PostgreSQL and on this machine).
func cpuNow(b *testing.B, s *ts.Server) cpuSample {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	c := cpuSample{self: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	backends, err := s.Store.Backends(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	for _, be := range backends {
		data, err := os.ReadFile("/proc/" + strconv.Itoa(be.PID) + "/schedstat")
		if err != nil {
			continue
		}
		if f := strings.Fields(string(data)); len(f) > 0 {
			ns, _ := strconv.ParseInt(f[0], 10, 64)
			c.pg += time.Duration(ns)
		}
	}
	return c
}
