package pdu

import (
	"fmt"
	"strings"
	"testing"

	"luxchat/internal/matrix/canonicaljson"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/matrix/signing"
)

// specKey is the key of the appendix "Cryptographic Test Vectors".
func specKey(t testing.TB) signing.KeyPair {
	t.Helper()
	seed, err := signing.DecodeBase64("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
	if err != nil {
		t.Fatal(err)
	}
	k, err := signing.NewKeyPair("1", seed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func version(t testing.TB, id string) *roomversion.Version {
	t.Helper()
	v, ok := roomversion.Get(id)
	if !ok {
		t.Fatalf("no room version %s", id)
	}
	return v
}

func canon(t testing.TB, s string) string {
	t.Helper()
	c, err := canonicaljson.CanonicalizeLenient([]byte(s))
	if err != nil {
		t.Fatalf("canonicalize %s: %v", s, err)
	}
	return string(c)
}

func ptr(s string) *string { return &s }

// fakeHashID is a syntactically valid hash id for version v.
func fakeHashID(v *roomversion.Version, sigil string, fill byte) string {
	b := make([]byte, 32)
	for i := range b {
		b[i] = fill
	}
	if v.EventIDs == roomversion.EventIDBase64 {
		return sigil + signing.EncodeBase64(b)
	}
	return sigil + signing.EncodeURLBase64(b)
}

func roomIDFor(v *roomversion.Version) string {
	if v.RoomIDFromCreate {
		return fakeHashID(v, "!", 0xfb)
	}
	return "!room:example.org"
}

func eventIDFor(v *roomversion.Version, n int) string {
	if v.EventFormat == roomversion.FormatV1 {
		return "$ev" + strings.Repeat("x", n) + ":example.org"
	}
	return fakeHashID(v, "$", byte(0xf8+n))
}

func sprintf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
