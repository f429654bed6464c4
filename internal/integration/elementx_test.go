package integration

import (
	"net/http"
	"slices"
	"testing"

	"luxchat/internal/e2ee/e2eetest"
	ts "luxchat/internal/testserver"
)

// TestElementXStartup walks what Element X (matrix-rust-sdk) asks of a
// server when it logs in and starts, each answer checked for what the
// SDK reads of it: discovery, login, the OAuth probe it falls back from,
// its account's settings, its keys, and its three sliding sync
// connections at once (room list, encryption, notifications), each
// getting its own news. docs/element-x.md lists the calls and where each
// is tested further.
func TestElementXStartup(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		bob := s.Register(t, "bob")
		reg := s.Register(t, "alice")
		anon := s.Anonymous(t)
		var wk struct {
			Homeserver struct {
				BaseURL string `json:"base_url"`
			} `json:"m.homeserver"`
		}
		anon.MustDo("GET", "/.well-known/matrix/client", nil, &wk)
		var versions struct {
			Versions []string        `json:"versions"`
			Unstable map[string]bool `json:"unstable_features"`
		}
		anon.MustDo("GET", "/_matrix/client/versions", nil, &versions)
		if wk.Homeserver.BaseURL == "" || !slices.Contains(versions.Versions, "v1.15") || !versions.Unstable["org.matrix.simplified_msc3575"] {
			t.Fatalf("discovery: %+v %+v", wk, versions)
		}
		// The SDK probes OAuth 2.0 (MSC2965/MSC3861) first and falls back
		// to the password flow on M_UNRECOGNIZED.
		for _, p := range []string{"/_matrix/client/v1/auth_metadata", "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata"} {
			if r := anon.Do("GET", p, nil); r.Status != http.StatusNotFound || r.ErrCode() != "M_UNRECOGNIZED" {
				t.Fatalf("%s: %d %s", p, r.Status, r.Body)
			}
		}
		var flows struct {
			Flows []struct {
				Type string `json:"type"`
			} `json:"flows"`
		}
		anon.MustDo("GET", "/_matrix/client/v3/login", nil, &flows)
		if !slices.ContainsFunc(flows.Flows, func(f struct {
			Type string `json:"type"`
		}) bool {
			return f.Type == "m.login.password"
		}) {
			t.Fatalf("login flows: %+v", flows)
		}
		var login struct {
			AccessToken string `json:"access_token"`
			DeviceID    string `json:"device_id"`
		}
		anon.MustDo("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password", "identifier": map[string]any{"type": "m.id.user", "user": reg.UserID},
			"password": "correct horse battery", "initial_device_display_name": "Element X"}, &login)
		alice := s.Anonymous(t)
		alice.UserID, alice.Token, alice.DeviceID = reg.UserID, login.AccessToken, login.DeviceID
		var who struct {
			UserID   string `json:"user_id"`
			DeviceID string `json:"device_id"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/account/whoami", nil, &who)
		if who.UserID != alice.UserID || who.DeviceID != login.DeviceID {
			t.Fatalf("whoami: %+v", who)
		}
		// The account's settings.
		var caps struct {
			Capabilities map[string]any `json:"capabilities"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/capabilities", nil, &caps)
		if caps.Capabilities["m.room_versions"] == nil {
			t.Fatalf("capabilities: %+v", caps)
		}
		var profile map[string]any
		alice.MustDo("GET", "/_matrix/client/v3/profile/"+esc(alice.UserID), nil, &profile)
		var rules struct {
			Global struct {
				Override []map[string]any `json:"override"`
			} `json:"global"`
		}
		alice.MustDo("GET", "/_matrix/client/v3/pushrules/", nil, &rules)
		if !slices.ContainsFunc(rules.Global.Override, func(r map[string]any) bool { return r["rule_id"] == ".m.rule.master" }) {
			t.Fatalf("push rules: %+v", rules)
		}
		var mediaConfig map[string]float64
		alice.MustDo("GET", "/_matrix/client/v1/media/config", nil, &mediaConfig)
		if mediaConfig["m.upload.size"] <= 0 {
			t.Fatalf("media config: %v", mediaConfig)
		}
		// No backup and no secret storage yet: M_NOT_FOUND, which the SDK
		// reads as "none" (another error would stop its recovery setup).
		for _, p := range []string{"/_matrix/client/v3/room_keys/version", "/_matrix/client/v3/user/" + esc(alice.UserID) + "/account_data/m.secret_storage.default_key"} {
			if r := alice.Do("GET", p, nil); r.Status != http.StatusNotFound || r.ErrCode() != "M_NOT_FOUND" {
				t.Fatalf("%s: %d %s", p, r.Status, r.Body)
			}
		}
		// Its device keys.
		dev := &device{Client: alice, keys: e2eetest.NewDevice(alice.UserID, alice.DeviceID)}
		if counts := dev.upload(t, 5, true); counts["signed_curve25519"] != 5 {
			t.Fatalf("keys/upload counts: %v", counts)
		}
		if q := query(t, alice, alice.UserID); q.DeviceKeys[alice.UserID][alice.DeviceID] == nil {
			t.Fatalf("keys/query of itself: %+v", q)
		}
		// Its three connections.
		room := bob.CreateRoom(map[string]any{"name": "hello", "invite": []string{alice.UserID}})
		alice.Join(room)
		roomList := map[string]any{"conn_id": "room-list", "lists": map[string]any{"all_rooms": map[string]any{
			"ranges": [][2]int{{0, 19}}, "timeline_limit": 1,
			"required_state": [][]string{{"m.room.encryption", ""}, {"m.room.member", "$LAZY"}, {"m.room.member", "$ME"}, {"m.room.name", ""},
				{"m.room.canonical_alias", ""}, {"m.room.power_levels", ""}, {"m.room.create", ""}, {"m.room.join_rules", ""}},
			"filters": map[string]any{"not_room_types": []string{"m.space"}}}},
			"extensions": map[string]any{"account_data": map[string]any{"enabled": true}, "receipts": map[string]any{"enabled": true, "rooms": []string{"*"}},
				"typing": map[string]any{"enabled": true}}}
		encryption := map[string]any{"conn_id": "encryption", "extensions": map[string]any{"to_device": map[string]any{"enabled": true}, "e2ee": map[string]any{"enabled": true}}}
		rl := slide(t, alice, "", 0, roomList)
		enc := slide(t, alice, "", 0, encryption)
		if rm := rl.Rooms[room]; rm.Name == nil || *rm.Name != "hello" || rl.Lists["all_rooms"].Count != 1 {
			t.Fatalf("room list: %+v", rl)
		}
		if enc.Extensions.E2EE == nil || enc.Extensions.E2EE.OTKCounts["signed_curve25519"] != 5 || len(enc.Rooms) != 0 {
			t.Fatalf("encryption connection: %+v", enc)
		}
		// News for each: a message for the room list, a to-device message
		// for the encryption connection; neither gets the other's.
		bob.SendText(room, "hi")
		bob.MustDo("PUT", "/_matrix/client/v3/sendToDevice/m.room_key_request/ex1", map[string]any{"messages": map[string]any{alice.UserID: map[string]any{alice.DeviceID: map[string]any{"x": 1}}}}, nil)
		rl = slide(t, alice, rl.Pos, 1000, roomList)
		if !slices.Equal(ssBodies(rl.Rooms[room]), []string{"hi"}) || rl.Extensions.ToDevice != nil {
			t.Fatalf("room list news: %+v", rl)
		}
		enc = slide(t, alice, enc.Pos, 1000, encryption)
		if enc.Extensions.ToDevice == nil || len(enc.Extensions.ToDevice.Events) != 1 || len(enc.Rooms) != 0 {
			t.Fatalf("encryption news: %+v", enc)
		}
		// The notification client: a connection of its own subscribing to
		// the room of a push, with a longer timeline.
		notif := slide(t, alice, "", 0, map[string]any{"conn_id": "notifications", "room_subscriptions": map[string]any{room: map[string]any{
			"timeline_limit": 16, "required_state": [][]string{{"m.room.member", "$LAZY"}, {"m.room.power_levels", ""}, {"m.room.name", ""}}}}})
		if rm := notif.Rooms[room]; !rm.Initial || !slices.Contains(ssBodies(rm), "hi") {
			t.Fatalf("notification client: %+v", notif.Rooms)
		}
		// The room's summary (room previews, MSC3266).
		var sum map[string]any
		alice.MustDo("GET", "/_matrix/client/v1/room_summary/"+esc(room), nil, &sum)
		if sum["room_id"] != room || sum["membership"] != "join" {
			t.Fatalf("room summary: %v", sum)
		}
	})
}
