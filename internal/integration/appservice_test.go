package integration

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/appservice"
	mevent "maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"luxchat/internal/config"
	"luxchat/internal/e2ee/e2eetest"
	ts "luxchat/internal/testserver"
)

// bridge is a mautrix-go appservice driven against a test server: what
// it receives by transaction is kept in order.
type bridge struct {
	as   *appservice.AppService
	reg  *appservice.Registration
	port uint16

	mu        sync.Mutex
	events    []*mevent.Event // timeline events, in arrival order
	ephemeral []*mevent.Event
	toDevice  []*mevent.Event
	otks      []*mautrix.OTKCount
	lists     []*mautrix.DeviceLists
}

func freePort(t *testing.T) uint16 {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

// newBridge writes a registration (users @_bridge_*, exclusive; aliases
// #_bridge_*) and returns the option that loads it.
func newBridge(t *testing.T) (*bridge, ts.Option) {
	b := &bridge{port: freePort(t)}
	b.reg = appservice.CreateRegistration()
	b.reg.ID = "bridge"
	b.reg.URL = fmt.Sprintf("http://127.0.0.1:%d", b.port)
	b.reg.SenderLocalpart = "_bridge_bot"
	b.reg.EphemeralEvents = true
	b.reg.SoruEphemeralEvents = true
	b.reg.MSC3202 = true
	rl := false
	b.reg.RateLimited = &rl
	b.reg.Namespaces.UserIDs.Register(regexp.MustCompile(`@_bridge_.*`), true)
	b.reg.Namespaces.RoomAliases.Register(regexp.MustCompile(`#_bridge_.*`), true)
	file := filepath.Join(t.TempDir(), "bridge.yaml")
	if err := b.reg.Save(file); err != nil {
		t.Fatal(err)
	}
	return b, ts.WithConfig(func(c *config.Config) { c.AppServices.ConfigFiles = []string{file} })
}

// start runs the appservice's HTTP server against the homeserver at hsURL.
func (b *bridge) start(t *testing.T, hsURL, serverName string) {
	as, err := appservice.CreateFull(appservice.CreateOpts{Registration: b.reg, HomeserverDomain: serverName, HomeserverURL: hsURL,
		HostConfig: appservice.HostConfig{Hostname: "127.0.0.1", Port: b.port}})
	if err != nil {
		t.Fatal(err)
	}
	b.as = as
	go as.Start()
	go func() {
		for {
			select {
			case ev, ok := <-as.Events:
				if !ok {
					return
				}
				b.mu.Lock()
				switch ev.Type.Class {
				case mevent.EphemeralEventType:
					b.ephemeral = append(b.ephemeral, ev)
				case mevent.ToDeviceEventType:
					b.toDevice = append(b.toDevice, ev)
				default:
					b.events = append(b.events, ev)
				}
				b.mu.Unlock()
			case ev := <-as.ToDeviceEvents:
				b.mu.Lock()
				b.toDevice = append(b.toDevice, ev)
				b.mu.Unlock()
			case c := <-as.OTKCounts:
				b.mu.Lock()
				b.otks = append(b.otks, c)
				b.mu.Unlock()
			case l := <-as.DeviceLists:
				b.mu.Lock()
				b.lists = append(b.lists, l)
				b.mu.Unlock()
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", b.port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("appservice did not listen")
}

func (b *bridge) stop() { b.as.Stop() }

// waitFor waits until cond holds on what the bridge received.
func (b *bridge) waitFor(t *testing.T, what string, cond func(b *bridge) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		ok := cond(b)
		b.mu.Unlock()
		if ok {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("appservice never received %s", what)
}

func (b *bridge) bodies(roomID id.RoomID) []string {
	var out []string
	for _, ev := range b.events {
		if ev.RoomID == roomID && ev.Type == mevent.EventMessage {
			out = append(out, ev.Content.Raw["body"].(string))
		}
	}
	return out
}

func countOf(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

func TestAppServiceWithMautrix(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			b, withAS := newBridge(t)
			opts := []ts.Option{withAS}
			if engine == "postgres" {
				opts = append(opts, ts.WithPostgres(t))
			}
			s := ts.New(t, opts...)
			server := s.Config.ServerName
			b.start(t, s.URL, server)
			ctx := context.Background()
			asClient := s.Anonymous(t)
			asClient.Token = b.reg.AppToken
			doAS := func(method, path string, body any) *ts.Response { return asClient.Do(method, path, body) }

			// Namespaced users register (m.login.application_service), join and talk.
			ghost := b.as.Intent(id.NewUserID("_bridge_alice", server))
			if err := ghost.EnsureRegistered(ctx); err != nil {
				t.Fatalf("register ghost: %v", err)
			}
			alice := s.Register(t, "alice")
			room := id.RoomID(alice.CreateRoom(map[string]any{"preset": "public_chat"}))
			if err := ghost.EnsureJoined(ctx, room); err != nil {
				t.Fatalf("ghost join: %v", err)
			}
			alice.SendText(string(room), "hello bridge")
			b.waitFor(t, "alice's message", func(b *bridge) bool { return countOf(b.bodies(room), "hello bridge") == 1 })
			if _, err := ghost.SendText(ctx, room, "hello from the bridge"); err != nil {
				t.Fatalf("ghost send: %v", err)
			}
			if got := messages(t, alice, string(room), "dir=b&limit=1"); len(got.Chunk) != 1 || got.Chunk[0].Sender != string(ghost.UserID) {
				t.Fatalf("alice sees %+v", got.Chunk)
			}

			// Ephemeral data: typing and a receipt of alice's.
			alice.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(string(room))+"/typing/"+esc(alice.UserID), map[string]any{"typing": true, "timeout": 10000}, nil)
			b.waitFor(t, "typing", func(b *bridge) bool {
				for _, ev := range b.ephemeral {
					if ev.Type == mevent.EphemeralEventTyping && ev.RoomID == room {
						return true
					}
				}
				return false
			})
			last := alice.SendText(string(room), "read me")
			alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(string(room))+"/receipt/m.read/"+esc(last), map[string]any{}, nil)
			b.waitFor(t, "a receipt", func(b *bridge) bool {
				for _, ev := range b.ephemeral {
					if ev.Type == mevent.EphemeralEventReceipt && ev.RoomID == room {
						return true
					}
				}
				return false
			})

			// Presence of a user sharing a room with the service's users.
			alice.MustDo("PUT", "/_matrix/client/v3/presence/"+esc(alice.UserID)+"/status", map[string]any{"presence": "unavailable"}, nil)
			b.waitFor(t, "alice's presence", func(b *bridge) bool {
				for _, ev := range b.ephemeral {
					if ev.Type == mevent.EphemeralEventPresence && ev.Sender == id.UserID(alice.UserID) {
						return true
					}
				}
				return false
			})

			// Private receipts reach the service for its own users only.
			alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(string(room))+"/receipt/m.read.private/"+esc(last), map[string]any{}, nil)
			if r := doAS("POST", "/_matrix/client/v3/rooms/"+esc(string(room))+"/receipt/m.read.private/"+esc(last)+"?user_id="+esc(string(ghost.UserID)), map[string]any{}); r.Status != 200 {
				t.Fatalf("ghost's private receipt: %d %s", r.Status, r.Body)
			}
			privateOf := func(b *bridge, user id.UserID) bool {
				for _, ev := range b.ephemeral {
					if ev.Type == mevent.EphemeralEventReceipt && strings.Contains(string(ev.Content.VeryRaw), `"m.read.private":{"`+string(user)+`"`) {
						return true
					}
				}
				return false
			}
			b.waitFor(t, "the ghost's private receipt", func(b *bridge) bool { return privateOf(b, ghost.UserID) })
			b.mu.Lock()
			if privateOf(b, id.UserID(alice.UserID)) {
				t.Fatal("alice's private receipt reached the service")
			}
			b.mu.Unlock()

			// To-device: alice sends to a device of the ghost (MSC4190 creates it).
			ghostDevice := id.DeviceID("GHOSTDEV")
			if r := doAS("PUT", "/_matrix/client/v3/devices/"+string(ghostDevice)+"?user_id="+esc(string(ghost.UserID)), map[string]any{"display_name": "bridge device"}); r.Status != 200 {
				t.Fatalf("create ghost device: %d %s", r.Status, r.Body)
			}
			// MSC3202: the device's keys, uploaded as the device, are a
			// device list change the service hears of; a claim followed
			// by a message brings the new one-time key count.
			gk := e2eetest.NewDevice(string(ghost.UserID), string(ghostDevice))
			if r := doAS("POST", "/_matrix/client/v3/keys/upload?user_id="+esc(string(ghost.UserID))+"&device_id="+string(ghostDevice),
				map[string]any{"device_keys": gk.DeviceKeys(), "one_time_keys": gk.OneTimeKeys(5)}); r.Status != 200 {
				t.Fatalf("upload ghost keys: %d %s", r.Status, r.Body)
			}
			b.waitFor(t, "the ghost's device list change", func(b *bridge) bool {
				for _, l := range b.lists {
					if slices.Contains(l.Changed, ghost.UserID) {
						return true
					}
				}
				return false
			})
			alice.MustDo("POST", "/_matrix/client/v3/keys/claim", map[string]any{"one_time_keys": map[string]any{
				string(ghost.UserID): map[string]string{string(ghostDevice): "signed_curve25519"}}}, nil)
			alice.MustDo("PUT", "/_matrix/client/v3/sendToDevice/m.test/txn1", map[string]any{
				"messages": map[string]any{string(ghost.UserID): map[string]any{string(ghostDevice): map[string]any{"hi": "there"}}}}, nil)
			b.waitFor(t, "a to-device message", func(b *bridge) bool {
				for _, ev := range b.toDevice {
					if ev.ToUserID == ghost.UserID && ev.ToDeviceID == ghostDevice {
						return true
					}
				}
				return false
			})
			b.waitFor(t, "the one-time key count after the claim", func(b *bridge) bool {
				for _, c := range b.otks {
					if c.UserID == ghost.UserID && c.DeviceID == ghostDevice && c.SignedCurve25519 == 4 {
						return true
					}
				}
				return false
			})
			// device_id masquerading: the device is the ghost's.
			var who struct {
				UserID   string `json:"user_id"`
				DeviceID string `json:"device_id"`
			}
			r := doAS("GET", "/_matrix/client/v3/account/whoami?user_id="+esc(string(ghost.UserID))+"&device_id="+string(ghostDevice), nil)
			if r.Status != 200 || r.JSON(&who) != nil || who.UserID != string(ghost.UserID) || who.DeviceID != string(ghostDevice) {
				t.Fatalf("whoami as ghost device: %d %s", r.Status, r.Body)
			}
			if r := doAS("GET", "/_matrix/client/v3/account/whoami?user_id="+esc(string(ghost.UserID))+"&device_id=NOPE", nil); r.Status != 400 || r.ErrCode() != "M_UNKNOWN_DEVICE" {
				t.Fatalf("unknown device: %d %s", r.Status, r.Body)
			}

			// Refusals: exclusive namespace, masquerading outside it, forged tokens.
			anon := s.Anonymous(t)
			if r := anon.Do("POST", "/_matrix/client/v3/register", map[string]any{"username": "_bridge_mallory", "password": "secret-password", "auth": map[string]string{"type": "m.login.dummy"}}); r.Status != 400 || r.ErrCode() != "M_EXCLUSIVE" {
				t.Fatalf("ordinary registration in the exclusive namespace: %d %s", r.Status, r.Body)
			}
			if r := alice.Do("PUT", "/_matrix/client/v3/directory/room/"+esc("#_bridge_x:"+server), map[string]string{"room_id": string(room)}); r.ErrCode() != "M_EXCLUSIVE" {
				t.Fatalf("alias in the exclusive namespace: %d %s", r.Status, r.Body)
			}
			if r := doAS("GET", "/_matrix/client/v3/account/whoami?user_id="+esc(alice.UserID), nil); r.Status != 403 {
				t.Fatalf("masquerade as alice: %d %s", r.Status, r.Body)
			}
			if r := doAS("POST", "/_matrix/client/v3/register", map[string]any{"type": "m.login.application_service", "username": "mallory", "inhibit_login": true}); r.ErrCode() != "M_EXCLUSIVE" {
				t.Fatalf("appservice registering outside its namespace: %d %s", r.Status, r.Body)
			}
			forged := &ts.Client{}
			*forged = *alice
			forged.Token = b.reg.AppToken + "x"
			if r := forged.Do("GET", "/_matrix/client/v3/account/whoami", nil); r.Status != 401 {
				t.Fatalf("forged token: %d %s", r.Status, r.Body)
			}

			// Ping.
			if _, err := b.as.BotClient().AppservicePing(ctx, b.reg.ID, "ping-1"); err != nil {
				t.Fatalf("ping: %v", err)
			}

			// The appservice is down for a while: nothing is lost.
			b.stop()
			for i := range 5 {
				alice.SendText(string(room), fmt.Sprintf("while down %d", i))
			}
			time.Sleep(200 * time.Millisecond)
			b.start(t, s.URL, server)
			b.waitFor(t, "what was sent while it was down", func(b *bridge) bool { return countOf(b.bodies(room), "while down 4") == 1 })

			// The server restarts: the queue goes on from where the
			// service acknowledged, without sending anything twice.
			s = s.Restart(t)
			b.as.SetHomeserverURL(s.URL)
			alice.URL, asClient.URL = s.URL, s.URL
			alice.SendText(string(room), "after restart")
			b.waitFor(t, "the message after the restart", func(b *bridge) bool { return countOf(b.bodies(room), "after restart") == 1 })
			time.Sleep(300 * time.Millisecond)
			b.mu.Lock()
			defer b.mu.Unlock()
			seen := map[id.EventID]bool{}
			for _, ev := range b.events {
				if seen[ev.ID] {
					t.Fatalf("event %s delivered twice", ev.ID)
				}
				seen[ev.ID] = true
			}
			for i := range 5 {
				if n := countOf(b.bodies(room), fmt.Sprintf("while down %d", i)); n != 1 {
					t.Fatalf("while down %d received %d times", i, n)
				}
			}
		})
	}
}

// TestAppServiceDeviceLists checks MSC3202's device lists as a mautrix-go
// service receives them: a user who comes to share a room with the
// service's users is changed, one who no longer shares any is left, a key
// upload of a user sharing nothing is not sent, and a change made while
// the service is down and the server restarts still arrives.
func TestAppServiceDeviceLists(t *testing.T) {
	forEachEngineOpts := func(t *testing.T, f func(t *testing.T, engine string)) {
		for _, engine := range []string{"sqlite", "postgres"} {
			t.Run(engine, func(t *testing.T) { f(t, engine) })
		}
	}
	forEachEngineOpts(t, func(t *testing.T, engine string) {
		b, withAS := newBridge(t)
		opts := []ts.Option{withAS}
		if engine == "postgres" {
			opts = append(opts, ts.WithPostgres(t))
		}
		s := ts.New(t, opts...)
		server := s.Config.ServerName
		b.start(t, s.URL, server)
		ctx := context.Background()
		ghost := b.as.Intent(id.NewUserID("_bridge_lists", server))
		if err := ghost.EnsureRegistered(ctx); err != nil {
			t.Fatal(err)
		}
		alice, carol, dave := s.Register(t, "alice"), s.Register(t, "carol"), s.Register(t, "dave")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		if err := ghost.EnsureJoined(ctx, id.RoomID(room)); err != nil {
			t.Fatal(err)
		}
		upload := func(c *ts.Client) {
			c.MustDo("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": e2eetest.NewDevice(c.UserID, c.DeviceID).DeviceKeys()}, nil)
		}
		listed := func(user string, left bool) func(b *bridge) bool {
			return func(b *bridge) bool {
				for _, l := range b.lists {
					if (!left && slices.Contains(l.Changed, id.UserID(user))) || (left && slices.Contains(l.Left, id.UserID(user))) {
						return true
					}
				}
				return false
			}
		}
		upload(carol) // shares no room with the service's users yet
		upload(dave)

		carol.MustDo("POST", "/_matrix/client/v3/join/"+esc(room), map[string]any{}, nil)
		b.waitFor(t, "carol changed when she joins", listed(carol.UserID, false))
		carol.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		b.waitFor(t, "carol left when she leaves", listed(carol.UserID, true))
		alice.SendText(room, "a marker after carol")
		b.waitFor(t, "the marker", func(b *bridge) bool { return countOf(b.bodies(id.RoomID(room)), "a marker after carol") == 1 })
		b.mu.Lock()
		if listed(dave.UserID, false)(b) || listed(dave.UserID, true)(b) {
			b.mu.Unlock()
			t.Fatal("dave, who shares no room with the service's users, was listed")
		}
		b.mu.Unlock()

		// Down, then the server restarts: alice's new keys, uploaded
		// after a transaction was built, still arrive.
		b.stop()
		b.mu.Lock()
		b.lists = nil // alice was listed when the ghost joined
		b.mu.Unlock()
		alice.SendText(room, "while down")
		time.Sleep(300 * time.Millisecond) // the transaction is built and waits
		upload(alice)
		s = s.Restart(t)
		b.as.SetHomeserverURL(s.URL)
		b.start(t, s.URL, server)
		b.waitFor(t, "the message sent while down", func(b *bridge) bool { return countOf(b.bodies(id.RoomID(room)), "while down") == 1 })
		b.waitFor(t, "alice's change made while down", listed(alice.UserID, false))
	})
}
