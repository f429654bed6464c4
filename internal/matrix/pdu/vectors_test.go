package pdu

import (
	"testing"

	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/matrix/signing"
)

// Appendix "Event Signing" vectors. They predate room version 11, which no
// longer keeps "origin" through redaction and so signs different bytes.
func TestSpecEventSigningVectors(t *testing.T) {
	k := specKey(t)
	cases := []struct{ name, in, want, hash string }{
		{
			"minimal event",
			`{"room_id":"!x:domain","sender":"@a:domain","origin":"domain","origin_server_ts":1000000,"signatures":{},"hashes":{},"type":"X","content":{},"prev_events":[],"auth_events":[],"depth":3,"unsigned":{"age_ts":1000000}}`,
			`{"auth_events":[],"content":{},"depth":3,"hashes":{"sha256":"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},"origin":"domain","origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain","sender":"@a:domain","signatures":{"domain":{"ed25519:1":"KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},"type":"X","unsigned":{"age_ts":1000000}}`,
			"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos",
		},
		{
			"redactable content",
			`{"content":{"body":"Here is the message content"},"event_id":"$0:domain","origin":"domain","origin_server_ts":1000000,"type":"m.room.message","room_id":"!r:domain","sender":"@u:domain","signatures":{},"unsigned":{"age_ts":1000000}}`,
			`{"content":{"body":"Here is the message content"},"event_id":"$0:domain","hashes":{"sha256":"onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},"origin":"domain","origin_server_ts":1000000,"type":"m.room.message","room_id":"!r:domain","sender":"@u:domain","signatures":{"domain":{"ed25519:1":"Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA"}},"unsigned":{"age_ts":1000000}}`,
			"onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g",
		},
	}
	for _, c := range cases {
		h, err := ContentHash([]byte(c.in))
		if err != nil || signing.EncodeBase64(h[:]) != c.hash {
			t.Errorf("%s: ContentHash = %s, %v", c.name, signing.EncodeBase64(h[:]), err)
		}
		for _, v := range roomversion.All() {
			if v.Redaction >= roomversion.RedactV11 {
				continue
			}
			got, err := HashAndSign([]byte(c.in), v, "domain", k)
			if err != nil {
				t.Fatalf("%s v%s: %v", c.name, v.ID, err)
			}
			if string(got) != canon(t, c.want) {
				t.Errorf("%s v%s:\n got %s\nwant %s", c.name, v.ID, got, canon(t, c.want))
			}
			if err := CheckContentHash(got); err != nil {
				t.Errorf("%s v%s: CheckContentHash: %v", c.name, v.ID, err)
			}
		}
	}
}

// Reference hashes (event ids) of the appendix's signed minimal event,
// computed independently with the appendix's Python canonical_json.
func TestReferenceHashGolden(t *testing.T) {
	const signed = `{"auth_events":[],"content":{},"depth":%d,"hashes":{"sha256":"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},"origin":"domain","origin_server_ts":1000000,"prev_events":[],"room_id":"!x:domain","sender":"@a:domain","signatures":{"domain":{"ed25519:1":"KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}},"type":"X","unsigned":{"age_ts":1000000}}`
	cases := []struct {
		version string
		depth   int
		want    string
	}{
		{"3", 3, "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc"},
		{"4", 3, "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc"},
		{"10", 3, "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc"},
		{"11", 3, "$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I"}, // origin no longer kept
		{"3", 5, "$Dst8nddHyB+rq/NxCgoksQtbOXBhAX8zIOGo/f9ak8o"},
		{"4", 5, "$Dst8nddHyB-rq_NxCgoksQtbOXBhAX8zIOGo_f9ak8o"},
	}
	for _, c := range cases {
		v := version(t, c.version)
		ev, err := Parse([]byte(sprintf(signed, c.depth)), v)
		if err != nil {
			t.Fatalf("v%s: %v", c.version, err)
		}
		if ev.ID != c.want {
			t.Errorf("v%s depth %d: id %s, want %s", c.version, c.depth, ev.ID, c.want)
		}
		if c.depth == 3 {
			if err := VerifyHashes(ev); err != nil {
				t.Errorf("v%s: VerifyHashes: %v", c.version, err)
			}
			err := VerifySignature(ev, "domain", "ed25519:1", specKey(t).Public())
			if (err == nil) != (v.Redaction < roomversion.RedactV11) {
				t.Errorf("v%s: VerifySignature = %v", c.version, err)
			}
		}
	}
	// Version 1 needs an event_id; version 12 a hash room id.
	for _, vid := range []string{"1", "12"} {
		if _, err := Parse([]byte(sprintf(signed, 3)), version(t, vid)); err == nil {
			t.Errorf("v%s accepted a v3-format event", vid)
		}
	}
}
