package federation

import (
	"crypto/ed25519"
	"testing"

	"luxchat/internal/store"
)

// Key rows kept in memory answer only what the stored row would.
func TestKeyRowsInMemory(t *testing.T) {
	k := &Keys{}
	pub := make(ed25519.PublicKey, ed25519.PublicKeySize)
	k.rememberKey(store.ServerKey{ServerName: "a.test", KeyID: "ed25519:1", ValidUntilTS: 100}, pub)
	k.rememberKey(store.ServerKey{ServerName: "a.test", KeyID: "ed25519:0", ExpiredTS: 50}, pub)
	k.rememberKey(store.ServerKey{ServerName: "b.test", KeyID: "ed25519:1", ValidUntilTS: 100}, pub)
	cases := []struct {
		server, keyID string
		ts            int64
		allowOld, ok  bool
	}{
		{"a.test", "ed25519:1", 100, false, true},
		{"a.test", "ed25519:1", 101, false, false}, // past valid_until_ts: ask the store
		{"a.test", "ed25519:0", 49, true, true},
		{"a.test", "ed25519:0", 49, false, false}, // old keys only where allowed
		{"a.test", "ed25519:0", 50, true, false},
		{"a.test", "ed25519:2", 10, false, false},
	}
	for _, c := range cases {
		if _, ok := k.memKey(c.server, c.keyID, c.ts, c.allowOld); ok != c.ok {
			t.Errorf("%s %s at %d (old %v): %v, want %v", c.server, c.keyID, c.ts, c.allowOld, ok, c.ok)
		}
	}
	k.forgetKeys("a.test")
	if _, ok := k.memKey("a.test", "ed25519:1", 10, false); ok {
		t.Error("a.test's rows survive a new fetch")
	}
	if _, ok := k.memKey("b.test", "ed25519:1", 10, false); !ok {
		t.Error("b.test's row was dropped with a.test's")
	}
}
