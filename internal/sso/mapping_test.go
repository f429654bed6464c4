package sso

import (
	"errors"
	"testing"

	"luxchat/internal/config"
)

func TestTemplates(t *testing.T) {
	claims := Claims{"preferred_username": "Anne.Weber", "email": "Anne.Weber@Police.Etat.LU", "given_name": "Anne", "n": 42.0}
	for src, want := range map[string]string{
		"{{ preferred_username }}":        "Anne.Weber",
		"{{preferred_username|lower}}":    "anne.weber",
		"{{ email | localpart }}":         "Anne.Weber",
		"{{ given_name }} ({{ n }})":      "Anne (42)",
		"plain":                           "plain",
		"{{ missing }}":                   "",
		"x{{ given_name }}{{ missing }}y": "",
	} {
		tm, err := parseTemplate(src)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if got := tm.render(claims); got != want {
			t.Errorf("%q rendered %q, want %q", src, got, want)
		}
	}
	for _, bad := range []string{"{{ name | upper }}", "{{ name", "{{ }}"} {
		if _, err := parseTemplate(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestLocalpart(t *testing.T) {
	m, err := newMapping(config.OIDCProvider{})
	if err != nil {
		t.Fatal(err)
	}
	if lp := m.localpartFor("luxid", "s1", Claims{"preferred_username": "Jean.Dupont"}); lp != "jean.dupont" {
		t.Fatalf("got %q", lp)
	}
	// Missing or invalid claims get a hash of provider and subject: stable,
	// valid, different per subject and per provider.
	a := m.localpartFor("luxid", "s1", Claims{})
	b := m.localpartFor("luxid", "s1", Claims{"preferred_username": "jean dupont"})
	c := m.localpartFor("luxid", "s2", Claims{})
	d := m.localpartFor("other", "s1", Claims{})
	if a != b || a == c || a == d || !validLocalpart.MatchString(a) {
		t.Fatalf("hashed localparts %q %q %q %q", a, b, c, d)
	}
}

func TestEmailAndDisplayName(t *testing.T) {
	m, _ := newMapping(config.OIDCProvider{})
	for _, c := range []struct {
		claims Claims
		want   string
	}{
		{Claims{"email": "A@B.lu"}, "a@b.lu"},
		{Claims{"email": "a@b.lu", "email_verified": false}, ""},
		{Claims{"email": "a@b.lu", "email_verified": true}, "a@b.lu"},
		{Claims{"email": "not an email"}, ""},
		{Claims{"email": "@b.lu"}, ""},
		{Claims{}, ""},
	} {
		if got := m.emailFor(c.claims); got != c.want {
			t.Errorf("%v: %q, want %q", c.claims, got, c.want)
		}
	}
	if d := m.displayNameFor(Claims{"name": "  Anne Weber "}); d != "Anne Weber" {
		t.Fatalf("display name %q", d)
	}
}

func TestConditions(t *testing.T) {
	m, _ := newMapping(config.OIDCProvider{Conditions: []config.ClaimCondition{
		{Claim: "email", Suffix: "@police.etat.lu"},
		{Claim: "organisation", OneOf: []string{"police", "douane"}},
		{Claim: "acr", Equals: "substantial"},
	}})
	ok := Claims{"email": "a@POLICE.etat.lu", "organisation": []any{"x", "douane"}, "acr": "substantial"}
	if allowed, _ := m.allowed(ok); !allowed {
		t.Fatal("allowed user refused")
	}
	for claim, v := range map[string]any{
		"email":        "a@police.etat.lu.evil.com",
		"organisation": "armee",
		"acr":          "low",
	} {
		c := Claims{}
		for k, x := range ok {
			c[k] = x
		}
		c[claim] = v
		if allowed, which := m.allowed(c); allowed || which != claim {
			t.Errorf("%s=%v: allowed %v (%s)", claim, v, allowed, which)
		}
		delete(c, claim)
		if allowed, _ := m.allowed(c); allowed {
			t.Errorf("missing %s allowed", claim)
		}
	}
}

func TestCheckRedirectURL(t *testing.T) {
	for _, good := range []string{"https://app.example.org/cb?x=1", "http://localhost:8080/", "io.element.app:/callback", "im.fluffychat://login"} {
		if err := CheckRedirectURL(good); err != nil {
			t.Errorf("%q refused: %v", good, err)
		}
	}
	for _, bad := range []string{"", "/relative", "JavaScript:alert(1)", "data:text/html,x", "https://", "file:///etc/passwd", "%zz"} {
		var r *Refusal
		if err := CheckRedirectURL(bad); !errors.As(err, &r) || r.Status != 400 {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

func TestWithLoginToken(t *testing.T) {
	if got := withLoginToken("https://a.example/cb?x=1#frag", "lxl_t"); got != "https://a.example/cb?loginToken=lxl_t&x=1#frag" {
		t.Fatal(got)
	}
}
