package federation

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"luxchat/internal/matrix/signing"
	"luxchat/internal/store"
)

func mustKey(t *testing.T) signing.KeyPair {
	t.Helper()
	k, err := signing.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestVerifyResponse(t *testing.T) {
	k, other := mustKey(t), mustKey(t)
	ring := &Keys{ServerName: "a.test", Key: k, Now: nowFunc()}
	own, err := ring.OwnResponse()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyResponse(own, "a.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyResponse(own, "b.test"); err == nil {
		t.Error("response for another server accepted")
	}
	tampered := strings.Replace(string(own), `"server_name":"a.test"`, `"server_name":"a.test","x":1`, 1)
	if _, err := VerifyResponse([]byte(tampered), "a.test"); !errors.Is(err, signing.ErrBadSignature) {
		t.Errorf("tampered: %v", err)
	}
	// Signed by a key that is not in verify_keys only.
	var obj map[string]any
	_ = json.Unmarshal(own, &obj)
	delete(obj, "signatures")
	raw, _ := json.Marshal(obj)
	bySomeone, _ := signing.SignJSON(raw, "a.test", other)
	if _, err := VerifyResponse(bySomeone, "a.test"); !errors.Is(err, signing.ErrNoSignature) {
		t.Errorf("foreign signature: %v", err)
	}
	if _, err := VerifyResponse([]byte(`{"server_name":"a.test","verify_keys":{"ed25519:x":{"key":"short"}}}`), "a.test"); err == nil {
		t.Error("malformed key accepted")
	}
}

func TestLoadOldKeys(t *testing.T) {
	dir := t.TempDir()
	if keys, err := LoadOldKeys(filepath.Join(dir, "none")); err != nil || keys != nil {
		t.Fatalf("missing file: %v %v", keys, err)
	}
	k := mustKey(t)
	path := filepath.Join(dir, "old")
	os.WriteFile(path, []byte("# comment\n\n"+k.ID()+" "+k.PublicBase64()+" 123 # retired\n"), 0o600)
	keys, err := LoadOldKeys(path)
	if err != nil || len(keys) != 1 || keys[0].KeyID != k.ID() || keys[0].ExpiredTS != 123 {
		t.Fatalf("%+v %v", keys, err)
	}
	for _, bad := range []string{"x", k.ID() + " AAAA 1", "nokey " + k.PublicBase64() + " 1", k.ID() + " " + k.PublicBase64() + " soon"} {
		os.WriteFile(path, []byte(bad), 0o600)
		if _, err := LoadOldKeys(path); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func nowFunc() func() time.Time { return time.Now }

func TestKeysCacheAndOldKeys(t *testing.T) {
	st, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	self, remote, retired := mustKey(t), mustKey(t), mustKey(t)
	p, _ := NewPolicy("self.test", []string{"nowhere.example"}, nil) // no fetch can happen
	ring := NewKeys("self.test", self, nil, st, NewClient("self.test", self, p, &fakeDNS{}, nil))
	now := time.Now()
	// b.test's response: current key "remote", old key "retired" that
	// expires in an hour.
	remoteRing := &Keys{ServerName: "b.test", Key: remote, Now: time.Now,
		OldKeys: []OldKey{{KeyID: retired.ID(), PublicKey: retired.PublicBase64(), ExpiredTS: now.Add(time.Hour).UnixMilli()}}}
	raw, err := remoteRing.OwnResponse()
	if err != nil {
		t.Fatal(err)
	}
	if err := ring.save(ctx, "b.test", raw); err != nil {
		t.Fatal(err)
	}
	if pub, err := ring.RequestKey(ctx, "b.test", remote.ID()); err != nil || !pub.Equal(remote.Public()) {
		t.Fatalf("current key: %v", err)
	}
	if pub, err := ring.VerifyKey(ctx, "b.test", retired.ID(), now.UnixMilli()); err != nil || !pub.Equal(retired.Public()) {
		t.Fatalf("old key for an event before its expiry: %v", err)
	}
	if _, err := ring.VerifyKey(ctx, "b.test", retired.ID(), now.Add(2*time.Hour).UnixMilli()); !errors.Is(err, ErrNoKey) {
		t.Errorf("old key after its expiry: %v", err)
	}
	if _, err := ring.RequestKey(ctx, "b.test", retired.ID()); !errors.Is(err, ErrNoKey) {
		t.Errorf("old key used for a request: %v", err)
	}
	// Past the response's valid_until_ts the current key is stale.
	if _, err := ring.VerifyKey(ctx, "b.test", remote.ID(), now.Add(8*24*time.Hour).UnixMilli()); !errors.Is(err, ErrNoKey) {
		t.Errorf("stale key: %v", err)
	}
	// The notary answer is b.test's own response plus our signature.
	q, err := ring.Query(ctx, "b.test", now.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyResponse(q, "b.test"); err != nil {
		t.Fatal(err)
	}
	if err := signing.VerifyJSON(q, "self.test", self.ID(), self.Public()); err != nil {
		t.Fatal(err)
	}
	if q, err := ring.Query(ctx, "unknown.test", 0); err != nil || q != nil {
		t.Errorf("unknown server: %s %v", q, err)
	}
	// A response claiming another server is refused.
	if err := ring.save(ctx, "c.test", raw); err == nil {
		t.Error("b.test's response saved as c.test's")
	}
}
