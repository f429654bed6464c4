package store

import (
	"context"
	"errors"
	"testing"
)

func TestServerKeys(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		if _, err := s.ServerKey(ctx, "a.test", "ed25519:1"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if _, err := s.ServerKeyResponse(ctx, "a.test"); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		save := func(validUntil int64, resp string, keys ...ServerKey) {
			t.Helper()
			if err := s.SaveServerKeys(ctx, ServerKeyResponse{ServerName: "a.test", ValidUntilTS: validUntil, FetchedTS: 5, Response: []byte(resp)}, keys); err != nil {
				t.Fatal(err)
			}
		}
		save(100, `{"n":1}`, ServerKey{ServerName: "a.test", KeyID: "ed25519:1", PublicKey: "K1", ValidUntilTS: 100, FetchedTS: 5})
		// A newer response retires key 1 and adds key 2.
		save(200, `{"n":2}`,
			ServerKey{ServerName: "a.test", KeyID: "ed25519:2", PublicKey: "K2", ValidUntilTS: 200, FetchedTS: 6},
			ServerKey{ServerName: "a.test", KeyID: "ed25519:1", PublicKey: "K1", ExpiredTS: 150, FetchedTS: 6})
		// An older response (e.g. from a notary's cache) does not replace
		// the stored one, nor shorten validity, nor un-expire a key, nor
		// change a key's public key.
		save(120, `{"n":0}`,
			ServerKey{ServerName: "a.test", KeyID: "ed25519:1", PublicKey: "K1", ValidUntilTS: 120, FetchedTS: 7},
			ServerKey{ServerName: "a.test", KeyID: "ed25519:2", PublicKey: "EVIL", ValidUntilTS: 999, FetchedTS: 7})
		r, err := s.ServerKeyResponse(ctx, "a.test")
		if err != nil || string(r.Response) != `{"n":2}` || r.ValidUntilTS != 200 {
			t.Fatalf("response %+v %v", r, err)
		}
		k1, err := s.ServerKey(ctx, "a.test", "ed25519:1")
		if err != nil || k1.ExpiredTS != 150 || k1.PublicKey != "K1" || k1.ValidUntilTS != 120 {
			t.Fatalf("key 1 %+v %v", k1, err)
		}
		k2, err := s.ServerKey(ctx, "a.test", "ed25519:2")
		if err != nil || k2.PublicKey != "K2" || k2.ValidUntilTS != 200 || k2.ExpiredTS != 0 {
			t.Fatalf("key 2 %+v %v", k2, err)
		}
	})
}
