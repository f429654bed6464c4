package signing

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// specKey is the key of the appendix "Cryptographic Test Vectors".
func specKey(t testing.TB) KeyPair {
	t.Helper()
	seed, err := DecodeBase64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewKeyPair("1", seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestBase64(t *testing.T) {
	// Appendix "Unpadded Base64" examples.
	for in, want := range map[string]string{"": "", "f": "Zg", "fo": "Zm8", "foo": "Zm9v", "foob": "Zm9vYg", "fooba": "Zm9vYmE", "foobar": "Zm9vYmFy"} {
		if got := EncodeBase64([]byte(in)); got != want {
			t.Errorf("EncodeBase64(%q) = %q, want %q", in, got, want)
		}
		for _, enc := range []string{want, want + strings.Repeat("=", (4-len(want)%4)%4)} {
			if got, err := DecodeBase64(enc); err != nil || string(got) != in {
				t.Errorf("DecodeBase64(%q) = %q, %v", enc, got, err)
			}
		}
	}
	b := []byte{0xfb, 0xff, 0xfe}
	if EncodeBase64(b) != "+//+" || EncodeURLBase64(b) != "-__-" {
		t.Errorf("alphabets: %q %q", EncodeBase64(b), EncodeURLBase64(b))
	}
	if got, err := DecodeURLBase64("-__-"); err != nil || !bytes.Equal(got, b) {
		t.Errorf("DecodeURLBase64 = %x, %v", got, err)
	}
	if got, err := DecodeURLBase64("Zm8="); err != nil || string(got) != "fo" {
		t.Errorf("padded URL-safe = %q, %v", got, err)
	}
	for _, bad := range []string{"Z", "Zm8==", "Zg=", "Zm\n9v", "+//+x*", "-__-"} {
		if _, err := DecodeBase64(bad); err == nil {
			t.Errorf("DecodeBase64(%q) accepted", bad)
		}
	}
	if _, err := DecodeURLBase64("+//+"); err == nil {
		t.Error("URL-safe decoder accepted the standard alphabet")
	}
}

func TestSpecSigningVectors(t *testing.T) {
	k := specKey(t)
	cases := []struct{ in, want string }{
		{`{}`, `{"signatures":{"domain":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}`},
		{`{"one": 1, "two": "Two"}`, `{"one":1,"signatures":{"domain":{"ed25519:1":"KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZhG6kYdD13EIMJpvhJI+6Bw"}},"two":"Two"}`},
	}
	for _, c := range cases {
		got, err := SignJSON([]byte(c.in), "domain", k)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("SignJSON(%s)\n got %s\nwant %s", c.in, got, c.want)
		}
		if err := VerifyJSON(got, "domain", "ed25519:1", k.Public()); err != nil {
			t.Errorf("VerifyJSON: %v", err)
		}
	}
}

func TestSignJSONKeepsSignaturesAndUnsigned(t *testing.T) {
	k := specKey(t)
	other, _ := NewKeyPair("other", bytes.Repeat([]byte{7}, 32))
	first, err := SignJSON([]byte(`{"a":1,"unsigned":{"age":5}}`), "other.org", other)
	if err != nil {
		t.Fatal(err)
	}
	both, err := SignJSON(first, "domain", k)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(both), `"unsigned":{"age":5}`) {
		t.Errorf("unsigned lost: %s", both)
	}
	if err := VerifyJSON(both, "other.org", "ed25519:other", other.Public()); err != nil {
		t.Errorf("first signature lost: %v", err)
	}
	if err := VerifyJSON(both, "domain", "ed25519:1", k.Public()); err != nil {
		t.Errorf("second signature: %v", err)
	}
	sigs, err := Signatures(both)
	if err != nil || len(sigs) != 2 || sigs["domain"]["ed25519:1"] == "" {
		t.Errorf("Signatures = %v, %v", sigs, err)
	}
	// unsigned may change in transit; whitespace and key order do not matter.
	moved := strings.Replace(string(both), `"unsigned":{"age":5}`, `"unsigned":{"age":99999}`, 1)
	moved = strings.Replace(moved, `{"a":1,`, "{ \"a\" : 1 ,\n", 1)
	if err := VerifyJSON([]byte(moved), "domain", "ed25519:1", k.Public()); err != nil {
		t.Errorf("after unsigned change: %v", err)
	}
}

func TestVerifyJSONFailures(t *testing.T) {
	k := specKey(t)
	signed, _ := SignJSON([]byte(`{"a":"b"}`), "domain", k)
	other, _ := GenerateKeyPair()
	cases := []struct {
		name    string
		raw     string
		server  string
		keyID   string
		pub     ed25519.PublicKey
		wantErr error
	}{
		{"tampered", strings.Replace(string(signed), `"b"`, `"c"`, 1), "domain", "ed25519:1", k.Public(), ErrBadSignature},
		{"wrong key", string(signed), "domain", "ed25519:1", other.Public(), ErrBadSignature},
		{"no such server", string(signed), "elsewhere", "ed25519:1", k.Public(), ErrNoSignature},
		{"no such key", string(signed), "domain", "ed25519:2", k.Public(), ErrNoSignature},
		{"unknown algorithm", string(signed), "domain", "curve25519:1", k.Public(), ErrBadKey},
		{"short public key", string(signed), "domain", "ed25519:1", k.Public()[:5], ErrBadKey},
		{"no signatures", `{"a":"b"}`, "domain", "ed25519:1", k.Public(), ErrNoSignature},
		{"not an object", `[1]`, "domain", "ed25519:1", k.Public(), ErrBadJSON},
		{"signatures not object", `{"signatures":[]}`, "domain", "ed25519:1", k.Public(), ErrBadJSON},
		{"server not object", `{"signatures":{"domain":null}}`, "domain", "ed25519:1", k.Public(), ErrBadJSON},
		{"sig not string", `{"signatures":{"domain":{"ed25519:1":5}}}`, "domain", "ed25519:1", k.Public(), ErrBadJSON},
		{"sig not base64", `{"signatures":{"domain":{"ed25519:1":"!!"}}}`, "domain", "ed25519:1", k.Public(), ErrBadSignature},
		{"duplicate keys", `{"a":"b","a":"c"}`, "domain", "ed25519:1", k.Public(), ErrBadJSON},
	}
	for _, c := range cases {
		err := VerifyJSON([]byte(c.raw), c.server, c.keyID, c.pub)
		if !errors.Is(err, c.wantErr) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.wantErr)
		}
	}
}

// Events of room versions 1–5 may hold floats and big integers.
func TestSignJSONLenientNumbers(t *testing.T) {
	k := specKey(t)
	signed, err := SignJSON([]byte(`{"pl":50.57,"big":9007199254740993}`), "domain", k)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyJSON(signed, "domain", "ed25519:1", k.Public()); err != nil {
		t.Fatal(err)
	}
}

func TestKeyFile(t *testing.T) {
	k := specKey(t)
	file := EncodeKeyFile(k)
	if string(file) != "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0\n" {
		t.Errorf("EncodeKeyFile = %q", file)
	}
	keys, err := DecodeKeyFile(file)
	if err != nil || len(keys) != 1 || keys[0].ID() != "ed25519:1" || !keys[0].Public().Equal(k.Public()) {
		t.Fatalf("DecodeKeyFile = %v, %v", keys, err)
	}
	g, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(g.ID(), "ed25519:a_") || len(g.Version()) != 6 || ValidKeyID(g.ID()) != nil {
		t.Errorf("generated key id %q", g.ID())
	}
	two, err := DecodeKeyFile([]byte("\n" + string(EncodeKeyFile(g)) + "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1=\n\n"))
	if err != nil || len(two) != 2 || two[0].ID() != g.ID() || !bytes.Equal(two[0].Seed(), g.Seed()) {
		t.Errorf("two keys: %v, %v", two, err)
	}
	for _, bad := range []string{"", "\n", "ed25519 1", "rsa 1 AAAA", "ed25519 a-b " + EncodeBase64(k.Seed()), "ed25519 1 Zm9v", "ed25519 1 !!!", "ed25519 1 " + EncodeBase64(k.Seed()) + " extra"} {
		if _, err := DecodeKeyFile([]byte(bad)); !errors.Is(err, ErrBadKey) {
			t.Errorf("DecodeKeyFile(%q) = %v", bad, err)
		}
	}
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%+v", k), fmt.Sprintf("%#v", k), fmt.Sprintf("%v", []KeyPair{k})} {
		if strings.Contains(s, EncodeBase64(k.Seed())[:10]) {
			t.Errorf("formatting leaks the seed: %s", s)
		}
	}
}

func TestValidKeyID(t *testing.T) {
	for _, s := range []string{"ed25519:1", "ed25519:a_AbCd", "ed25519:auto2", "x:Y_9"} {
		if err := ValidKeyID(s); err != nil {
			t.Errorf("ValidKeyID(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "ed25519", "ed25519:", ":1", "ed25519:a-b", "ed25519:a:b", "ed25519:é"} {
		if err := ValidKeyID(s); err == nil {
			t.Errorf("ValidKeyID(%q) accepted", s)
		}
	}
	if _, err := NewKeyPair("1", make([]byte, 31)); !errors.Is(err, ErrBadKey) {
		t.Error("short seed accepted")
	}
}

func FuzzSignJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"one":1,"two":"Two"}`, `{"signatures":{"a":{"b":"c"}},"unsigned":1}`, `{"a":1.5}`, `[]`, `{"signatures":5}`} {
		f.Add([]byte(s))
	}
	k := specKey(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		signed, err := SignJSON(raw, "domain", k)
		if err != nil {
			return
		}
		if err := VerifyJSON(signed, "domain", "ed25519:1", k.Public()); err != nil {
			t.Fatalf("own signature fails on %s: %v", signed, err)
		}
		again, err := SignJSON(signed, "domain", k)
		if err != nil || !bytes.Equal(again, signed) {
			t.Fatalf("re-signing changed %s into %s (%v)", signed, again, err)
		}
	})
}
