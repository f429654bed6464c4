package signing

import (
	"errors"
	"testing"
)

func TestParseXMatrix(t *testing.T) {
	want := XMatrix{Origin: "origin.hs.example.com", Destination: "destination.hs.example.com", Key: "ed25519:key1", Sig: "ABCDEF..."}
	for _, h := range []string{
		// The spec's example.
		`X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF..."`,
		`x-matrix   ORIGIN="origin.hs.example.com" , Destination = "destination.hs.example.com",	key="ed25519:key1"	,sig="ABCDEF..."`,
		`X-Matrix sig="ABCDEF...",key=ed25519:key1,destination=destination.hs.example.com,origin=origin.hs.example.com`,
		`X-Matrix origin="origin.hs.\example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF...",future="x, y",other=z`,
		`X-Matrix origin="origin.hs.example.com",,destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF...",`,
	} {
		got, err := ParseXMatrix(h)
		if err != nil || got != want {
			t.Errorf("ParseXMatrix(%s) = %+v, %v", h, got, err)
		}
	}
	// destination may be missing (older servers); IPv6 origins must be quoted.
	got, err := ParseXMatrix(`X-Matrix origin="[::1]:8448",key="ed25519:a_b",sig="c/d+e"`)
	if err != nil || got != (XMatrix{Origin: "[::1]:8448", Key: "ed25519:a_b", Sig: "c/d+e"}) {
		t.Errorf("no destination: %+v, %v", got, err)
	}
	for _, h := range []string{
		``, `X-Matrix`, `X-Matrix `, `Bearer abc`, `X-Matrixorigin=a,key=ed25519:1,sig=x`,
		`X-Matrix origin=a,key=ed25519:1`,                         // no sig
		`X-Matrix key=ed25519:1,sig=x`,                            // no origin
		`X-Matrix origin=a,key=ed25519:1,sig="x`,                  // unterminated
		`X-Matrix origin=a,key=ed25519:1,sig=`,                    // empty value
		`X-Matrix origin=a,key=ed25519:1,sig=x,origin=b`,          // duplicate
		`X-Matrix origin=a key=ed25519:1,sig=x`,                   // missing comma
		`X-Matrix origin="bad host",key=ed25519:1,sig=x`,          // bad server name
		`X-Matrix origin=a,destination="b c",key=ed25519:1,sig=x`, // bad destination
		`X-Matrix origin=a,key=ed25519,sig=x`,                     // bad key id
		`X-Matrix =a,origin=a,key=ed25519:1,sig=x`,
	} {
		if x, err := ParseXMatrix(h); !errors.Is(err, ErrBadHeader) {
			t.Errorf("ParseXMatrix(%q) = %+v, %v", h, x, err)
		}
	}
}

func TestXMatrixString(t *testing.T) {
	x := XMatrix{Origin: "origin.hs.example.com", Destination: "destination.hs.example.com", Key: "ed25519:key1", Sig: "ABCDEF..."}
	const want = `X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF..."`
	if x.String() != want {
		t.Errorf("String() = %s", x.String())
	}
	odd := XMatrix{Origin: "a", Key: "ed25519:1", Sig: `q"b\s`}
	if got, err := ParseXMatrix(odd.String()); err != nil || got != odd {
		t.Errorf("round trip of %+v: %+v, %v (%s)", odd, got, err, odd.String())
	}
}

func TestSignVerifyRequest(t *testing.T) {
	k := specKey(t)
	body := []byte(`{"pdus": [], "origin": "origin.example", "origin_server_ts": 1}`)
	x, err := SignRequest(k, "origin.example", "dest.example", "PUT", "/_matrix/federation/v1/send/1?x=y", body)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := ParseXMatrix(x.String())
	if err != nil || hdr != x {
		t.Fatalf("header round trip: %+v, %v", hdr, err)
	}
	pub := k.Public()
	reformatted := []byte("{\"origin_server_ts\":1,\n \"origin\":\"origin.example\",\"pdus\":[]}")
	if err := VerifyRequest(hdr, pub, "dest.example", "PUT", "/_matrix/federation/v1/send/1?x=y", reformatted); err != nil {
		t.Errorf("verify: %v", err)
	}
	// Older servers leave destination out of the header but signed it.
	old := hdr
	old.Destination = ""
	if err := VerifyRequest(old, pub, "dest.example", "PUT", "/_matrix/federation/v1/send/1?x=y", body); err != nil {
		t.Errorf("verify without destination: %v", err)
	}
	if err := VerifyRequest(hdr, pub, "other.example", "PUT", "/_matrix/federation/v1/send/1?x=y", body); !errors.Is(err, ErrWrongDestination) {
		t.Errorf("wrong destination: %v", err)
	}
	if err := VerifyRequest(old, pub, "other.example", "PUT", "/_matrix/federation/v1/send/1?x=y", body); !errors.Is(err, ErrBadSignature) {
		t.Errorf("no destination, signed for another server: %v", err)
	}
	for _, c := range []struct {
		method, uri string
		body        []byte
	}{
		{"POST", "/_matrix/federation/v1/send/1?x=y", body},
		{"PUT", "/_matrix/federation/v1/send/1?x=z", body},
		{"PUT", "/_matrix/federation/v1/send/1?x=y", []byte(`{"pdus":[1]}`)},
		{"PUT", "/_matrix/federation/v1/send/1?x=y", nil},
	} {
		if err := VerifyRequest(hdr, pub, "dest.example", c.method, c.uri, c.body); !errors.Is(err, ErrBadSignature) {
			t.Errorf("tampered %s %s %s: %v", c.method, c.uri, c.body, err)
		}
	}
	// A GET has no content key at all.
	g, _ := SignRequest(k, "origin.example", "dest.example", "GET", "/_matrix/key/v2/server", nil)
	if err := VerifyRequest(g, pub, "dest.example", "GET", "/_matrix/key/v2/server", nil); err != nil {
		t.Errorf("GET: %v", err)
	}
	if err := VerifyRequest(g, pub, "dest.example", "GET", "/_matrix/key/v2/server", []byte(`{}`)); err == nil {
		t.Error("GET signature accepted with content")
	}
	if _, err := SignRequest(k, "o", "d", "PUT", "/", []byte(`{bad`)); err == nil {
		t.Error("non-JSON body signed")
	}
}

func FuzzParseXMatrix(f *testing.F) {
	for _, s := range []string{
		`X-Matrix origin="origin.hs.example.com",destination="destination.hs.example.com",key="ed25519:key1",sig="ABCDEF..."`,
		`x-matrix origin=a:1, key=ed25519:1 ,sig="\"\\"`, `X-Matrix ,`, `X-Matrix a="`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		x, err := ParseXMatrix(h)
		if err != nil {
			return
		}
		again, err := ParseXMatrix(x.String())
		if err != nil || again != x {
			t.Fatalf("%q parsed to %+v, whose String %q parses to %+v, %v", h, x, x.String(), again, err)
		}
	})
}
