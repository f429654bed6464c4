package pdu

import (
	"errors"
	"testing"

	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/matrix/signing"
)

// A parsed event's signatures are checked against the bytes kept by Parse;
// the answers must be those of the general path.
func TestVerifyParsedAgrees(t *testing.T) {
	k := specKey(t)
	other, _ := signing.GenerateKeyPair()
	for _, v := range roomversion.All() {
		for _, built := range buildRoom(t, v, k) {
			ev, err := Parse(built.JSON(), v)
			if err != nil {
				t.Fatal(err)
			}
			if v.EventFormat != roomversion.FormatV1 && ev.signed == nil {
				t.Fatalf("v%s: Parse kept no signed bytes", v.ID)
			}
			stored, err := ParseStored(built.JSON(), v, "")
			if err != nil || stored.signed != nil || stored.ID != ev.ID {
				t.Fatalf("v%s: ParseStored: %v", v.ID, err)
			}
			if withID, err := ParseStored(built.JSON(), v, ev.ID); err != nil || withID.ID != ev.ID || string(withID.JSON()) != string(stored.JSON()) {
				t.Fatalf("v%s: ParseStored with the stored id: %v", v.ID, err)
			}
			if err := VerifySignature(stored, "example.org", k.ID(), k.Public()); err != nil {
				t.Fatalf("v%s: stored event: %v", v.ID, err)
			}
			cases := []struct {
				server, keyID string
				key           signing.KeyPair
				want          error
			}{
				{"example.org", k.ID(), k, nil},
				{"example.org", k.ID(), other, signing.ErrBadSignature},
				{"elsewhere.org", k.ID(), k, signing.ErrNoSignature},
			}
			for _, c := range cases {
				fast := VerifySignature(ev, c.server, c.keyID, c.key.Public())
				slow := VerifySignature(built, c.server, c.keyID, c.key.Public())
				if !errors.Is(fast, c.want) || !errors.Is(slow, c.want) || (c.want == nil) != (fast == nil) {
					t.Errorf("v%s %s %s: parsed %v, built %v, want %v", v.ID, ev.Type, c.server, fast, slow, c.want)
				}
			}
		}
	}
}

// encodeCanonical gives encode's bytes for objects split from canonical
// JSON, whatever their keys.
func TestEncodeCanonicalMatchesEncode(t *testing.T) {
	inputs := []string{
		`{"b":1,"a":{"y":[1,2,{"z":"\u00e9"}],"x":null},"é":"\n","\"q":"\\","\u0001":true,"A":-0.5,"aa":""}`,
		`{}`,
		`{"content":{"body":"<tag> & \u2028"},"type":"m.room.message"}`,
	}
	for _, in := range inputs {
		obj, err := decodeObject([]byte(in), false)
		if err != nil {
			t.Fatal(err)
		}
		slow, err := obj.encode(false)
		if err != nil {
			t.Fatal(err)
		}
		if fast := obj.encodeCanonical(); string(fast) != string(slow) {
			t.Errorf("%s:\nfast %s\nslow %s", in, fast, slow)
		}
	}
	for _, v := range roomversion.All() {
		for _, ev := range buildRoom(t, v, specKey(t)) {
			obj, err := decodeObject(ev.JSON(), v.StrictCanonicalJSON)
			if err != nil {
				t.Fatal(err)
			}
			slow, _ := obj.encode(v.StrictCanonicalJSON)
			if fast := obj.encodeCanonical(); string(fast) != string(slow) {
				t.Errorf("v%s %s: fast and slow encodings differ", v.ID, ev.Type)
			}
		}
	}
}
