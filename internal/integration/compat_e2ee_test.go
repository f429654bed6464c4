package integration

import (
	"slices"
	"testing"

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
