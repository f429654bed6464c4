package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"luxchat/internal/config"
	"slices"
	"testing"
	"time"

	"luxchat/internal/e2ee/e2eetest"
	ts "luxchat/internal/testserver"
)

// Device keys without the device's own signature are stored as given
// (clients verify device keys themselves); they may be replaced, and
// roommates hear of each change. Missing required members are M_BAD_JSON,
// keys of another user's device a 400.
func TestDeviceKeysUploadLeniencyAndErrors(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := newE2EEUser(t, s, "alice"), newE2EEUser(t, s, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		since := syncE2EE(t, bob.Client, "").NextBatch

		for i := 0; i < 2; i++ {
			keys := e2eetest.NewDevice(alice.UserID, alice.DeviceID).Unsigned()
			keys["signatures"] = map[string]any{}
			alice.MustDo("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": keys}, nil)
			q := query(t, bob.Client, alice.UserID)
			got := q.DeviceKeys[alice.UserID][alice.DeviceID]
			want := keys["keys"].(map[string]any)["ed25519:"+alice.DeviceID]
			if got == nil || got["keys"].(map[string]any)["ed25519:"+alice.DeviceID] != want {
				t.Fatalf("upload %d: queried keys %v", i, got)
			}
			bs := syncE2EE(t, bob.Client, since)
			if !slices.Contains(bs.DeviceLists.Changed, alice.UserID) {
				t.Fatalf("upload %d: bob's device_lists.changed %v", i, bs.DeviceLists.Changed)
			}
			since = bs.NextBatch
		}

		missing := map[string]any{"user_id": bob.UserID, "device_id": bob.DeviceID}
		wantError(t, bob.Do("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": missing}), 400, "M_BAD_JSON")
		noSigs := bob.keys.Unsigned()
		wantError(t, bob.Do("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": noSigs}), 400, "M_BAD_JSON")
		others := map[string]any{"user_id": alice.UserID, "device_id": alice.DeviceID}
		if r := bob.Do("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": others}); r.Status != 400 {
			t.Fatalf("another user's device keys: %d %s", r.Status, r.Body)
		}
		// A self-signature that does not verify is still refused.
		forged := alice.keys.Ed25519.Sign(bob.keys.Unsigned(), bob.UserID, bob.keys.KeyID())
		wantError(t, bob.Do("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": forged}), 400, "M_INVALID_SIGNATURE")
	})
}

// Once no room is shared with a remote user, their server stops telling
// us of device changes: a key query then asks it again instead of
// answering from the list kept while a room was shared.
func TestRemoteKeysQueriedAgainAfterLeaving(t *testing.T) {
	fqEngines(t, func(t *testing.T, p *fqPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		room := fqRoom(t, p, alice, bob)
		bobKey := func() string {
			var devs map[string]map[string]any
			_ = json.Unmarshal(keysOf(alice, bob.UserID)["device_keys"][bob.UserID], &devs)
			k, _ := devs[bob.DeviceID]["keys"].(map[string]any)
			s, _ := k["ed25519:"+bob.DeviceID].(string)
			return s
		}
		first := e2eetest.NewDevice(bob.UserID, bob.DeviceID)
		bob.MustDo("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": first.DeviceKeys()}, nil)
		eventually(t, 20*time.Second, func() string {
			if got := bobKey(); got != first.Ed25519.B64() {
				return "alice sees bob's key " + got
			}
			return ""
		})
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/leave", map[string]any{}, nil)
		eventually(t, 20*time.Second, func() string {
			var m struct {
				Joined map[string]any `json:"joined"`
			}
			bob.MustDo("GET", "/_matrix/client/v3/rooms/"+esc(room)+"/joined_members", nil, &m)
			if _, ok := m.Joined[alice.UserID]; ok {
				return "bob's server still has alice in the room"
			}
			return ""
		})
		second := e2eetest.NewDevice(bob.UserID, bob.DeviceID)
		bob.MustDo("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": second.DeviceKeys()}, nil)
		if got := bobKey(); got != second.Ed25519.B64() {
			t.Fatalf("after leaving, alice sees bob's key %s, want the new %s", got, second.Ed25519.B64())
		}
	})
}

// Account data is deleted (MSC3391) with DELETE on the unstable endpoints
// or by putting an empty object: GET answers 404, an incremental sync
// shows the type with empty content, an initial sync leaves it out.
func TestAccountDataDeletion(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		room := alice.CreateRoom(map[string]any{})
		const typ = "org.example.test"
		global := "/user/" + esc(alice.UserID) + "/account_data/" + typ
		inRoom := "/user/" + esc(alice.UserID) + "/rooms/" + esc(room) + "/account_data/" + typ
		type adEvents struct {
			Events []event `json:"events"`
		}
		var full struct {
			NextBatch   string   `json:"next_batch"`
			AccountData adEvents `json:"account_data"`
			Rooms       struct {
				Join map[string]struct {
					AccountData adEvents `json:"account_data"`
				} `json:"join"`
			} `json:"rooms"`
		}
		find := func(evs []event) *event {
			for i := range evs {
				if evs[i].Type == typ {
					return &evs[i]
				}
			}
			return nil
		}
		for _, tc := range []struct {
			name, path string
			viaDelete  bool
			events     func() []event
		}{
			{"global via DELETE", global, true, func() []event { return full.AccountData.Events }},
			{"global via PUT", global, false, func() []event { return full.AccountData.Events }},
			{"room via DELETE", inRoom, true, func() []event { return full.Rooms.Join[room].AccountData.Events }},
			{"room via PUT", inRoom, false, func() []event { return full.Rooms.Join[room].AccountData.Events }},
		} {
			alice.MustDo("PUT", "/_matrix/client/v3"+tc.path, map[string]any{"test_data": 1}, nil)
			alice.MustDo("GET", "/_matrix/client/v3/sync?timeout=0", nil, &full)
			if find(tc.events()) == nil {
				t.Fatalf("%s: not in the initial sync before deletion", tc.name)
			}
			since := full.NextBatch
			if tc.viaDelete {
				alice.MustDo("DELETE", "/_matrix/client/unstable/org.matrix.msc3391"+tc.path, nil, nil)
			} else {
				alice.MustDo("PUT", "/_matrix/client/v3"+tc.path, map[string]any{}, nil)
			}
			if r := alice.Do("GET", "/_matrix/client/v3"+tc.path, nil); r.Status != 404 {
				t.Fatalf("%s: GET after deletion: %d %s", tc.name, r.Status, r.Body)
			}
			full.AccountData.Events, full.Rooms.Join = nil, nil
			alice.MustDo("GET", "/_matrix/client/v3/sync?timeout=0&since="+since, nil, &full)
			if e := find(tc.events()); e == nil || len(e.Content) != 0 {
				t.Fatalf("%s: incremental sync: %+v", tc.name, e)
			}
			full.AccountData.Events, full.Rooms.Join = nil, nil
			alice.MustDo("GET", "/_matrix/client/v3/sync?timeout=0", nil, &full)
			if e := find(tc.events()); e != nil {
				t.Fatalf("%s: initial sync still holds %+v", tc.name, e)
			}
		}
	})
}

// A device's local notification settings (MSC3890 account data named for
// it) are deleted with the device.
func TestLocalNotificationSettingsDeletedWithDevice(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		first := newE2EEUser(t, s, "alice")
		second := first.login(t)
		path := "/_matrix/client/v3/user/" + esc(first.UserID) + "/account_data/org.matrix.msc3890.local_notification_settings."
		first.MustDo("PUT", path+second.DeviceID, map[string]any{"is_silenced": true}, nil)
		first.MustDo("PUT", path+first.DeviceID, map[string]any{"is_silenced": false}, nil)
		second.MustDo("POST", "/_matrix/client/v3/logout", map[string]any{}, nil)
		wantError(t, first.Do("GET", path+second.DeviceID, nil), 404, "M_NOT_FOUND")
		var kept map[string]any
		first.MustDo("GET", path+first.DeviceID, nil, &kept)
		if kept["is_silenced"] != false {
			t.Fatalf("the remaining device's settings: %v", kept)
		}
	})
}

// pushRuleActions returns the actions of a user's rule of a kind, nil when
// there is no such rule.
func pushRuleActions(t *testing.T, c *ts.Client, kind, ruleID string) []any {
	t.Helper()
	var all struct {
		Global map[string][]struct {
			RuleID  string `json:"rule_id"`
			Actions []any  `json:"actions"`
		} `json:"global"`
	}
	c.MustDo("GET", "/_matrix/client/v3/pushrules/", nil, &all)
	for _, r := range all.Global[kind] {
		if r.RuleID == ruleID {
			if r.Actions == nil {
				return []any{}
			}
			return r.Actions
		}
	}
	return nil
}

// The historical dont_notify action is kept as the client gave it (and
// ignored when evaluating: the sender's messages do not notify).
func TestPushRuleHistoricalActionRoundTrips(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
		alice.MustDo("PUT", "/_matrix/client/v3/pushrules/global/sender/"+esc(bob.UserID), map[string]any{"actions": []string{"dont_notify"}}, nil)
		for i := 0; i < 2; i++ {
			if got := pushRuleActions(t, alice, "sender", bob.UserID); len(got) != 1 || got[0] != "dont_notify" {
				t.Fatalf("read %d: actions %v", i, got)
			}
		}
		var acts struct {
			Actions []any `json:"actions"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/pushrules/global/sender/"+esc(bob.UserID)+"/actions", nil, &acts)
		if len(acts.Actions) != 1 || acts.Actions[0] != "dont_notify" {
			t.Fatalf("GET actions: %v", acts.Actions)
		}
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		bob.Join(room)
		bob.SendText(room, "hello alice")
		sr := alice.Sync("timeout=0")
		counts := path(sr, "rooms", "join", room, "unread_notifications")
		if m, _ := counts.(map[string]any); m == nil || m["notification_count"] != float64(0) {
			t.Fatalf("bob's message notified alice: %v", counts)
		}
	})
}

// A user's push rules for a room are carried to the room replacing it
// when they join it: after an upgrade, after a "manual" upgrade (a room
// created with a predecessor), and when joining through another server.
func TestPushRulesCarriedToUpgradedRoom(t *testing.T) {
	muted := map[string]any{"actions": []string{"dont_notify"}}
	wantCarried := func(t *testing.T, c *ts.Client, oldRoom, newRoom string) {
		t.Helper()
		eventually(t, 10*time.Second, func() string {
			if got := pushRuleActions(t, c, "room", newRoom); len(got) != 1 || got[0] != "dont_notify" {
				return fmt.Sprintf("%s's rule for the new room: %v", c.UserID, got)
			}
			return ""
		})
		if got := pushRuleActions(t, c, "room", oldRoom); len(got) != 1 {
			t.Fatalf("%s's rule for the old room: %v", c.UserID, got)
		}
	}
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice, alice2 := s.Register(t, "alice"), s.Register(t, "alice2")
		for _, manual := range []bool{false, true} {
			room := alice.CreateRoom(map[string]any{"preset": "public_chat", "room_version": "10"})
			alice2.Join(room)
			for _, c := range []*ts.Client{alice, alice2} {
				c.MustDo("PUT", "/_matrix/client/v3/pushrules/global/room/"+esc(room), muted, nil)
			}
			var newRoom string
			if manual {
				newRoom = alice.CreateRoom(map[string]any{"preset": "public_chat", "room_version": "11",
					"creation_content": map[string]any{"predecessor": map[string]any{"room_id": room}}})
			} else {
				var up struct {
					ReplacementRoom string `json:"replacement_room"`
				}
				alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/upgrade", map[string]any{"new_version": "11"}, &up)
				newRoom = up.ReplacementRoom
			}
			alice2.Join(newRoom)
			wantCarried(t, alice, room, newRoom)
			wantCarried(t, alice2, room, newRoom)
		}
		// A later profile change does not bring back a rule the user deleted.
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		alice.MustDo("PUT", "/_matrix/client/v3/pushrules/global/room/"+esc(room), muted, nil)
		var up struct {
			ReplacementRoom string `json:"replacement_room"`
		}
		alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/upgrade", map[string]any{"new_version": "11"}, &up)
		wantCarried(t, alice, room, up.ReplacementRoom)
		alice.MustDo("DELETE", "/_matrix/client/v3/pushrules/global/room/"+esc(up.ReplacementRoom), nil, nil)
		alice.MustDo("PUT", "/_matrix/client/v3/profile/"+esc(alice.UserID)+"/displayname", map[string]any{"displayname": "Alice A."}, nil)
		s.Push.Settle() // the rules the profile change's joins might carry
		if got := pushRuleActions(t, alice, "room", up.ReplacementRoom); got != nil {
			t.Fatalf("deleted rule came back: %v", got)
		}
	})
	t.Run("over federation", func(t *testing.T) {
		fqEngines(t, func(t *testing.T, p *fqPair) {
			alice := p.a.Register(t, "alice")
			bob := p.b.Register(t, "bob")
			room := fqRoom(t, p, alice, bob)
			bob.MustDo("PUT", "/_matrix/client/v3/pushrules/global/room/"+esc(room), muted, nil)
			var up struct {
				ReplacementRoom string `json:"replacement_room"`
			}
			alice.MustDo("POST", "/_matrix/client/v3/rooms/"+esc(room)+"/upgrade", map[string]any{"new_version": "11"}, &up)
			bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(up.ReplacementRoom)+"?server_name="+p.a.Config.ServerName, map[string]any{}, nil)
			wantCarried(t, bob, room, up.ReplacementRoom)
		})
	})
}

// Deleting a device with another user's (valid) password is refused with
// 403, and the device stays.
func TestDeleteDeviceWithAnotherUsersPassword(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := newE2EEUser(t, s, "alice")
		other := alice.login(t)
		bob := s.Register(t, "bob")
		r := alice.Do("DELETE", "/_matrix/client/v3/devices/"+esc(other.DeviceID), map[string]any{"auth": map[string]any{
			"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": bob.UserID}, "password": e2eePassword}})
		wantError(t, r, 403, "M_FORBIDDEN")
		alice.MustDo("GET", "/_matrix/client/v3/devices/"+esc(other.DeviceID), nil, nil)
		alice.MustDo("DELETE", "/_matrix/client/v3/devices/"+esc(other.DeviceID), map[string]any{"auth": map[string]any{
			"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": alice.UserID}, "password": e2eePassword}}, nil)
		wantError(t, alice.Do("GET", "/_matrix/client/v3/devices/"+esc(other.DeviceID), nil), 404, "M_NOT_FOUND")
	})
}

// A key backup may name any namespaced algorithm (clients, not the
// server, read backups); a bare word is refused.
func TestKeyBackupAlgorithmNames(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		for _, alg := range []string{"m.megolm_backup.v1", "m.megolm_backup.v1.curve25519-aes-sha2", "org.matrix.msc3270.v1.aes-hmac-sha2"} {
			var created struct {
				Version string `json:"version"`
			}
			alice.MustDo("POST", "/_matrix/client/v3/room_keys/version", map[string]any{"algorithm": alg, "auth_data": map[string]any{"foo": "bar"}}, &created)
			var got struct {
				Algorithm string `json:"algorithm"`
			}
			alice.MustDo("GET", "/_matrix/client/v3/room_keys/version/"+created.Version, nil, &got)
			if got.Algorithm != alg {
				t.Fatalf("backup %s: algorithm %q, want %q", created.Version, got.Algorithm, alg)
			}
		}
		wantError(t, alice.Do("POST", "/_matrix/client/v3/room_keys/version", map[string]any{"algorithm": "rot13", "auth_data": map[string]any{}}), 400, "M_INVALID_PARAM")
	})
}

// Cross-signing keys: the first upload needs no user-interactive auth and
// repeating it neither (nothing new); once a master key exists, any new
// key needs the password, and repeating that upload afterwards does not.
func TestCrossSigningUploadAuthOnlyForNewKeys(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		alice := s.Register(t, "alice")
		cs := e2eetest.NewCrossSigning(alice.UserID)
		const up = "/_matrix/client/v3/keys/device_signing/upload"
		masterOnly := map[string]any{"master_key": cs.MasterKey()}
		alice.MustDo("POST", up, masterOnly, nil)
		alice.MustDo("POST", up, masterOnly, nil)

		withSSK := map[string]any{"self_signing_key": cs.SelfSigningKey()}
		r := alice.Do("POST", up, withSSK)
		var challenge struct {
			Flows   []any  `json:"flows"`
			Session string `json:"session"`
		}
		if r.Status != 401 || r.JSON(&challenge) != nil || len(challenge.Flows) == 0 {
			t.Fatalf("a new self-signing key without auth: %d %s", r.Status, r.Body)
		}
		withSSK["auth"] = map[string]any{"type": "m.login.password", "session": challenge.Session,
			"identifier": map[string]string{"type": "m.id.user", "user": alice.UserID}, "password": e2eePassword}
		alice.MustDo("POST", up, withSSK, nil)
		alice.MustDo("POST", up, withSSK, nil) // the same keys again, the used session with them

		other := e2eetest.NewCrossSigning(alice.UserID)
		if r := alice.Do("POST", up, map[string]any{"master_key": other.MasterKey()}); r.Status != 401 {
			t.Fatalf("replacing the master key without auth: %d %s", r.Status, r.Body)
		}
	})
}

// A client that refreshes its access token keeps its device: a message
// it sent before still carries its transaction id in sync, and resending
// with the same transaction id gives the same event.
func TestTransactionIDSurvivesTokenRefresh(t *testing.T) {
	lifetime := ts.WithConfig(func(c *config.Config) { c.Auth.AccessTokenLifetime = config.Duration{Duration: time.Hour} })
	for _, pg := range []bool{false, true} {
		name, opts := "sqlite", []ts.Option{lifetime}
		if pg {
			name, opts = "postgres", append(opts, ts.WithPostgres(t))
		}
		t.Run(name, func(t *testing.T) { transactionIDSurvivesTokenRefresh(t, ts.New(t, opts...)) })
	}
}

func transactionIDSurvivesTokenRefresh(t *testing.T, s *ts.Server) {
	{
		alice := s.Register(t, "alice")
		c := s.Anonymous(t)
		var login struct {
			UserID       string `json:"user_id"`
			AccessToken  string `json:"access_token"`
			RefreshToken string `json:"refresh_token"`
		}
		c.MustDo("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password", "refresh_token": true,
			"identifier": map[string]string{"type": "m.id.user", "user": alice.UserID}, "password": e2eePassword}, &login)
		if login.RefreshToken == "" {
			t.Fatal("no refresh token although the client asked for one")
		}
		c.Token = login.AccessToken
		room := c.CreateRoom(map[string]any{})
		send := func() string {
			var r struct {
				EventID string `json:"event_id"`
			}
			c.MustDo("PUT", "/_matrix/client/v3/rooms/"+esc(room)+"/send/m.room.message/abcdef", map[string]any{"msgtype": "m.text", "body": "first"}, &r)
			return r.EventID
		}
		first := send()
		var refreshed struct {
			AccessToken string `json:"access_token"`
		}
		c.MustDo("POST", "/_matrix/client/v3/refresh", map[string]any{"refresh_token": login.RefreshToken}, &refreshed)
		c.Token = refreshed.AccessToken
		found := false
		for _, e := range doSync(t, c, "timeout=0").Rooms.Join[room].Timeline.Events {
			if e.EventID == first && e.Unsigned["transaction_id"] == "abcdef" {
				found = true
			}
		}
		if !found {
			t.Fatal("the message has no transaction id after the refresh")
		}
		if again := send(); again != first {
			t.Fatalf("resent after the refresh: %s, want %s", again, first)
		}
	}
}

// changedHas reports whether a sync response lists userID in
// device_lists.changed.
func changedHas(s map[string]any, userID string) bool {
	list, _ := path(s, "device_lists", "changed").([]any)
	return slices.Contains(list, any(userID))
}

// Renaming a device with keys is a device list change: users sharing a
// room, here on another server, hear of it and their key query shows the
// new name.
func TestDeviceRenameReachesRemoteRoommates(t *testing.T) {
	fqEngines(t, func(t *testing.T, p *fqPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		room := fqRoom(t, p, alice, bob)
		fqSyncUntil(t, bob, "", "the room", func(s map[string]any) bool { return path(s, "rooms", "join", room) != nil })
		since := bob.Sync("timeout=0")["next_batch"].(string)
		dev := e2eetest.NewDevice(alice.UserID, alice.DeviceID)
		alice.MustDo("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": dev.DeviceKeys()}, nil)
		since = fqSyncUntil(t, bob, since, "alice's keys", func(s map[string]any) bool { return changedHas(s, alice.UserID) })
		keysOf(bob, alice.UserID) // bob's server keeps alice's list now

		alice.MustDo("PUT", "/_matrix/client/v3/devices/"+esc(alice.DeviceID), map[string]any{"display_name": "My new displayname"}, nil)
		fqSyncUntil(t, bob, since, "alice's rename", func(s map[string]any) bool { return changedHas(s, alice.UserID) })
		var devs map[string]map[string]any
		_ = json.Unmarshal(keysOf(bob, alice.UserID)["device_keys"][alice.UserID], &devs)
		if got := path(devs[alice.DeviceID], "unsigned", "device_display_name"); got != "My new displayname" {
			t.Fatalf("bob sees alice's device named %v", got)
		}
	})
}

// A device without keys is still a device to other servers (their key
// queries list it once it has keys, their admins see it): renaming it is
// announced over federation, and a user of the other server tracking its
// owner hears of it.
func TestKeylessDeviceRenameReachesRemoteServers(t *testing.T) {
	fqEngines(t, func(t *testing.T, p *fqPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		room := fqRoom(t, p, alice, bob)
		fqSyncUntil(t, bob, "", "the room", func(s map[string]any) bool { return path(s, "rooms", "join", room) != nil })
		keysOf(bob, alice.UserID) // bob's server tracks alice's list now
		since := bob.Sync("timeout=0")["next_batch"].(string)

		alice.MustDo("PUT", "/_matrix/client/v3/devices/"+esc(alice.DeviceID), map[string]any{"display_name": "Office laptop"}, nil)
		fqSyncUntil(t, bob, since, "alice's rename", func(s map[string]any) bool { return changedHas(s, alice.UserID) })
	})
}

// A user joining a room with users of another server sees themselves in
// device_lists.changed with those they now share the room with, and
// their server sends their devices (even without keys) to the servers
// that shared no room with them before. That announcement is no second
// news to the other server's users: the join told them already.
func TestJoinAcrossServersAnnouncesDevices(t *testing.T) {
	fqEngines(t, func(t *testing.T, p *fqPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		room := alice.CreateRoom(map[string]any{"preset": "public_chat"})
		aliceSince := alice.Sync("timeout=0")["next_batch"].(string)
		since := bob.Sync("timeout=0")["next_batch"].(string)
		bob.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+p.a.Config.ServerName, map[string]any{}, nil)
		fqSyncUntil(t, bob, since, "alice and himself in one device_lists.changed", func(s map[string]any) bool {
			list, _ := path(s, "device_lists", "changed").([]any)
			got := []string{}
			for _, u := range list {
				got = append(got, u.(string))
			}
			slices.Sort(got)
			want := []string{alice.UserID, bob.UserID}
			slices.Sort(want)
			return slices.Equal(got, want)
		})
		aliceSince = fqSyncUntil(t, alice, aliceSince, "bob in device_lists.changed", func(s map[string]any) bool { return changedHas(s, bob.UserID) })
		// Server b announced bob's device to a, which delivers it.
		eventually(t, 20*time.Second, func() string {
			out, err := p.b.Store.GetDeviceListOutbound(context.Background(), bob.UserID)
			if err != nil {
				return "bob's devices were not announced: " + err.Error()
			}
			pdus, edus, err := p.b.Store.PendingOutbox(context.Background(), p.a.Config.ServerName, 10, 10)
			if err != nil || len(pdus)+len(edus) > 0 {
				return fmt.Sprintf("still to deliver to a: %d %d %v", len(pdus), len(edus), err)
			}
			if out.StreamID == 0 {
				return "no stream id"
			}
			return ""
		})
		// Delivered means answered: a handles a transaction's EDUs
		// before it answers.
		if s := alice.Sync("timeout=0&since=" + aliceSince); changedHas(s, bob.UserID) {
			t.Fatalf("alice hears of bob's devices a second time: %v", path(s, "device_lists"))
		}
		// A real change afterwards is news again.
		keysOf(alice, bob.UserID)
		bob.MustDo("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": e2eetest.NewDevice(bob.UserID, bob.DeviceID).DeviceKeys()}, nil)
		fqSyncUntil(t, alice, aliceSince, "bob's new keys", func(s map[string]any) bool { return changedHas(s, bob.UserID) })
	})
}
