package id

import (
	"strings"
	"testing"
	"unicode/utf8"
)

var fuzzSeeds = []string{
	"@alice:example.org", "@:x", "!abc:example.org:8448", "!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ",
	"#room:[::1]:80", "$0:domain", "$acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk", "1.2.3.4:5", "[1234:5678::abcd]",
	"@a\x00:b", "@\xff:b", "",
}

// checkCommon asserts the invariants every accepted identifier shares.
func checkCommon(t *testing.T, s string, sigil byte) {
	t.Helper()
	if len(s) > MaxLength || s[0] != sigil || !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		t.Fatalf("accepted %q", s)
	}
}

func FuzzParseServerName(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sn, err := ParseServerName(s)
		if err != nil {
			return
		}
		host := sn.Hostname()
		if sn.IsIPLiteral() && strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		rebuilt := host
		if sn.Port() != "" {
			rebuilt += ":" + sn.Port()
		}
		if rebuilt != s {
			t.Fatalf("%q: rebuilt as %q", s, rebuilt)
		}
	})
}

func FuzzParseUserID(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseUserID(s)
		if err != nil {
			return
		}
		checkCommon(t, s, SigilUser)
		if "@"+u.Localpart()+":"+string(u.Server()) != s || ValidServerName(string(u.Server())) != nil {
			t.Fatalf("%q: parts %q %q", s, u.Localpart(), u.Server())
		}
		if u.IsStrict() {
			if nu, err := NewUserID(u.Localpart(), u.Server()); err != nil || nu != u {
				t.Fatalf("%q strict but NewUserID = %q, %v", s, nu, err)
			}
		}
	})
}

func FuzzParseRoomID(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRoomID(s)
		if err != nil {
			return
		}
		checkCommon(t, s, SigilRoom)
		rebuilt := "!" + r.Opaque()
		if r.HasServer() {
			rebuilt += ":" + string(r.Server())
			if ValidServerName(string(r.Server())) != nil {
				t.Fatalf("%q: bad server accepted", s)
			}
		}
		if rebuilt != s || r.Opaque() == "" {
			t.Fatalf("%q: rebuilt as %q", s, rebuilt)
		}
	})
}

func FuzzParseRoomAlias(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseRoomAlias(s)
		if err != nil {
			return
		}
		checkCommon(t, s, SigilRoomAlias)
		if "#"+a.Localpart()+":"+string(a.Server()) != s || a.Localpart() == "" {
			t.Fatalf("%q: parts %q %q", s, a.Localpart(), a.Server())
		}
	})
}

func FuzzParseEventID(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEventID(s)
		if err != nil {
			return
		}
		checkCommon(t, s, SigilEvent)
		if e.HasServer() && ValidServerName(string(e.Server())) != nil {
			t.Fatalf("%q: bad server accepted", s)
		}
		if !e.HasServer() && e.Server() != "" {
			t.Fatalf("%q: server without ':'", s)
		}
	})
}
