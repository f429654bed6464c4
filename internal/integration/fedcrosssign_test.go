package integration

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"luxchat/internal/e2ee/e2eetest"
	ts "luxchat/internal/testserver"
)

// keysOf runs /keys/query for users as c.
func keysOf(c *ts.Client, users ...string) map[string]map[string]json.RawMessage {
	want := map[string][]string{}
	for _, u := range users {
		want[u] = []string{}
	}
	var out map[string]map[string]json.RawMessage
	c.MustDo("POST", "/_matrix/client/v3/keys/query", map[string]any{"device_keys": want}, &out)
	return out
}

// signedBy reports whether the signed object raw carries a signature of
// signer with keyID.
func signedBy(raw json.RawMessage, signer, keyID string) bool {
	var o struct {
		Signatures map[string]map[string]string `json:"signatures"`
	}
	return json.Unmarshal(raw, &o) == nil && o.Signatures[signer][keyID] != ""
}

// TestFedCrossSigningAcrossServers: Alice (server a) sees Bob's (server b)
// cross-signing keys and his signature on his device, may sign his master
// key with her user-signing key and sees that signature, and sees his new
// keys when he replaces them.
func TestFedCrossSigningAcrossServers(t *testing.T) {
	fqEngines(t, func(t *testing.T, p *fqPair) {
		alice := p.a.Register(t, "alice")
		bob := p.b.Register(t, "bob")
		fqRoom(t, p, alice, bob)

		aliceCS := e2eetest.NewCrossSigning(alice.UserID)
		alice.MustDo("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": e2eetest.NewDevice(alice.UserID, alice.DeviceID).DeviceKeys()}, nil)
		alice.MustDo("POST", "/_matrix/client/v3/keys/device_signing/upload", aliceCS.Upload(), nil)
		bobDev := e2eetest.NewDevice(bob.UserID, bob.DeviceID)
		bobCS := e2eetest.NewCrossSigning(bob.UserID)
		bob.MustDo("POST", "/_matrix/client/v3/keys/upload", map[string]any{"device_keys": bobDev.DeviceKeys()}, nil)
		bob.MustDo("POST", "/_matrix/client/v3/keys/device_signing/upload", bobCS.Upload(), nil)

		// Bob signs his device with his self-signing key; Alice sees it.
		var failures map[string]any
		bob.MustDo("POST", "/_matrix/client/v3/keys/signatures/upload", map[string]any{
			bob.UserID: map[string]any{bob.DeviceID: bobCS.SignDevice(bobDev)}}, &failures)
		if f, _ := failures["failures"].(map[string]any); len(f) != 0 {
			t.Fatalf("bob's signature refused: %v", failures)
		}
		sskID := "ed25519:" + bobCS.SelfSigning.B64()
		var got map[string]map[string]json.RawMessage
		eventually(t, 20*time.Second, func() string {
			got = keysOf(alice, bob.UserID)
			var devs map[string]json.RawMessage
			_ = json.Unmarshal(got["device_keys"][bob.UserID], &devs)
			if got["master_keys"][bob.UserID] == nil || got["self_signing_keys"][bob.UserID] == nil {
				return fmt.Sprintf("bob's cross-signing keys missing: %s", got["master_keys"])
			}
			if !signedBy(devs[bob.DeviceID], bob.UserID, sskID) {
				return fmt.Sprintf("bob's device not signed by his self-signing key: %s", devs[bob.DeviceID])
			}
			return ""
		})
		if got["user_signing_keys"][bob.UserID] != nil {
			t.Fatalf("alice sees bob's user-signing key: %s", got["user_signing_keys"][bob.UserID])
		}

		// Alice signs Bob's master key (as her client does after a
		// verification) and sees her signature on it.
		var master map[string]any
		if err := json.Unmarshal(got["master_keys"][bob.UserID], &master); err != nil {
			t.Fatal(err)
		}
		bob64 := bobCS.Master.B64()
		failures = nil
		alice.MustDo("POST", "/_matrix/client/v3/keys/signatures/upload", map[string]any{
			bob.UserID: map[string]any{bob64: aliceCS.SignMaster(master)}}, &failures)
		if f, _ := failures["failures"].(map[string]any); len(f) != 0 {
			t.Fatalf("alice's signature refused: %v", failures)
		}
		uskID := "ed25519:" + aliceCS.UserSigning.B64()
		if mk := keysOf(alice, bob.UserID)["master_keys"][bob.UserID]; !signedBy(mk, alice.UserID, uskID) {
			t.Fatalf("alice's signature missing from bob's master key: %s", mk)
		}
		// A forged signature is refused.
		forged := e2eetest.NewCrossSigning(alice.UserID).SignMaster(master)
		failures = nil
		alice.MustDo("POST", "/_matrix/client/v3/keys/signatures/upload", map[string]any{
			bob.UserID: map[string]any{bob64: forged}}, &failures)
		if f, _ := failures["failures"].(map[string]any); len(f) != 1 {
			t.Fatalf("forged signature: %v", failures)
		}

		// Bob replaces his keys; the m.signing_key_update reaches a, whose
		// answer follows.
		bobCS2 := e2eetest.NewCrossSigning(bob.UserID)
		bob.MustDo("POST", "/_matrix/client/v3/keys/device_signing/upload", map[string]any{
			"master_key": bobCS2.MasterKey(), "self_signing_key": bobCS2.SelfSigningKey(), "user_signing_key": bobCS2.UserSigningKey(),
			"auth": map[string]any{"type": "m.login.password", "identifier": map[string]string{"type": "m.id.user", "user": bob.UserID}, "password": "correct horse battery"},
		}, nil)
		eventually(t, 20*time.Second, func() string {
			mk := keysOf(alice, bob.UserID)["master_keys"][bob.UserID]
			var k struct {
				Keys map[string]string `json:"keys"`
			}
			_ = json.Unmarshal(mk, &k)
			if k.Keys["ed25519:"+bobCS2.Master.B64()] == "" {
				return fmt.Sprintf("alice still sees %s", mk)
			}
			if signedBy(mk, alice.UserID, uskID) {
				return "alice's signature on the old key shows on the new one"
			}
			return ""
		})
	})
}
