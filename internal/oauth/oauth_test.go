package oauth

import (
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseRegistration: any body is registered or refused with an
// RFC 7591 error, never a panic; what is registered holds the spec's
// rules and stores without NUL.
func FuzzParseRegistration(f *testing.F) {
	for _, s := range []string{
		`{"client_uri":"https://a.example/","redirect_uris":["https://a.example/cb"]}`,
		`{"client_uri":"https://a.example/","application_type":"native","redirect_uris":["example.a:/cb","http://127.0.0.1/cb"]}`,
		`{"client_uri":"https://a.example/","grant_types":["urn:ietf:params:oauth:grant-type:device_code"],"client_name#fr":"x"}`,
		`{"client_uri":"https://a.example/","redirect_uris":["https://a.example/cb#x"]}`,
		`{"client_uri":"https://a.example/","client_name":"\u0000"}`,
		`null`, `[]`, `{`, `{"client_uri":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := ParseRegistration(body)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (e.Code != "invalid_client_metadata" && e.Code != "invalid_redirect_uri") || e.Status != 400 {
				t.Fatalf("error %v", err)
			}
			return
		}
		if !strings.HasPrefix(m.ClientURI, "https://") || len(m.GrantTypes) == 0 {
			t.Fatalf("registered %+v", m)
		}
		stored := m.stored()
		if strings.ContainsRune(stored, 0) || !json.Valid([]byte(stored)) {
			t.Fatalf("stored %q", stored)
		}
		for _, r := range m.RedirectURIs {
			if strings.Contains(r, "#") {
				t.Fatalf("fragment in %q", r)
			}
		}
		back, err := loadClient(stored)
		if err != nil || back.stored() != stored {
			t.Fatalf("round trip: %v %q", err, stored)
		}
	})
}

// FuzzParseScope: a scope is granted with full access and a device id of
// unreserved characters, or refused with invalid_scope.
func FuzzParseScope(f *testing.F) {
	for _, s := range []string{"urn:matrix:client:api:* urn:matrix:client:device:ABC", "openid urn:matrix:org.matrix.msc2967.client:api:*",
		"urn:matrix:client:device:A urn:matrix:client:device:B", "", "urn:matrix:client:api:* urn:matrix:client:device:a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		sc, err := ParseScope(raw)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != "invalid_scope" {
				t.Fatalf("error %v", err)
			}
			return
		}
		if sc.DeviceID != "" && !validScopeDeviceID(sc.DeviceID) || !utf8.ValidString(sc.String()) {
			t.Fatalf("granted %+v", sc)
		}
	})
}

func TestRedirectMatching(t *testing.T) {
	native := &ClientMetadata{ApplicationType: "native", RedirectURIs: []string{"http://127.0.0.1/cb", "http://[::1]/cb", "org.example.app:/cb"}}
	web := &ClientMetadata{ApplicationType: "web", RedirectURIs: []string{"https://app.example.org/cb"}}
	for _, c := range []struct {
		m    *ClientMetadata
		uri  string
		want bool
	}{
		{native, "http://127.0.0.1:5555/cb", true},
		{native, "http://[::1]:80/cb", true},
		{native, "http://127.0.0.1/cb", true},
		{native, "http://127.0.0.1:5555/other", false},
		{native, "http://localhost:5555/cb", false},
		{native, "org.example.app:/cb", true},
		{web, "https://app.example.org/cb", true},
		{web, "https://app.example.org:444/cb", false},
		{web, "https://app.example.org/cb?x=1", false},
	} {
		if got := c.m.matchRedirectURI(c.uri); got != c.want {
			t.Errorf("%s: %v", c.uri, got)
		}
	}
}

func TestVerifier(t *testing.T) {
	if !verifierMatches("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM") {
		t.Fatal("RFC 7636 appendix B")
	}
	if verifierMatches("short", "x") || verifierMatches(strings.Repeat("a", 129), "x") {
		t.Fatal("bad verifiers accepted")
	}
}

func TestWantsRegistration(t *testing.T) {
	for _, c := range []struct {
		prompt string
		want   bool
	}{{"", false}, {"create", true}, {"login create", true}, {"  create  ", true}, {"creates", false}, {"login", false}, {"CREATE", false}} {
		if got := WantsRegistration(url.Values{"prompt": {c.prompt}}); got != c.want {
			t.Errorf("prompt %q: %v", c.prompt, got)
		}
	}
}
