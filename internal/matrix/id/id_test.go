package id

import (
	"errors"
	"strings"
	"testing"
)

func TestServerName(t *testing.T) {
	long := strings.Repeat("a", 255)
	cases := []struct {
		in         string
		ok         bool
		host, port string
		ip         bool
	}{
		// Examples from the appendix.
		{"matrix.org", true, "matrix.org", "", false},
		{"matrix.org:8888", true, "matrix.org", "8888", false},
		{"1.2.3.4", true, "1.2.3.4", "", true},
		{"1.2.3.4:1234", true, "1.2.3.4", "1234", true},
		{"[1234:5678::abcd]", true, "1234:5678::abcd", "", true},
		{"[1234:5678::abcd]:5678", true, "1234:5678::abcd", "5678", true},

		{"localhost", true, "localhost", "", false},
		{"MATRIX.ORG", true, "MATRIX.ORG", "", false},
		{"a-b.c", true, "a-b.c", "", false},
		{"[::1]", true, "::1", "", true},
		{"[::ffff:1.2.3.4]:8448", true, "::ffff:1.2.3.4", "8448", true},
		{"255.255.255.255", true, "255.255.255.255", "", true},
		{"1.2.3.4.5", true, "1.2.3.4.5", "", false}, // a dns-name by the grammar
		{"x:99999", true, "x", "99999", false},      // 1*5DIGIT
		{long, true, long, "", false},

		{"", false, "", "", false},
		{":80", false, "", "", false},
		{"a:", false, "", "", false},
		{"a:123456", false, "", "", false},
		{"a:8a", false, "", "", false},
		{"a:b:c", false, "", "", false},
		{"256.1.1.1", false, "", "", false},
		{"1.2.3.999:80", false, "", "", false},
		{"exa mple.org", false, "", "", false},
		{"exämple.org", false, "", "", false},
		{"under_score.org", false, "", "", false},
		{long + "a", false, "", "", false},
		{"[::1", false, "", "", false},
		{"[::1]x", false, "", "", false},
		{"[::1]:", false, "", "", false},
		{"[1.2.3.4]", false, "", "", false},
		{"[fe80::1%eth0]", false, "", "", false},
		{"[g::1]", false, "", "", false},
		{"[:]", false, "", "", false},
		{"[]", false, "", "", false},
		{"::1", false, "", "", false},
	}
	for _, c := range cases {
		sn, err := ParseServerName(c.in)
		if (err == nil) != c.ok {
			t.Errorf("ParseServerName(%q) error = %v, want ok=%v", c.in, err, c.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("ParseServerName(%q) error %v does not wrap ErrInvalid", c.in, err)
			}
			continue
		}
		if sn.Hostname() != c.host || sn.Port() != c.port || sn.IsIPLiteral() != c.ip {
			t.Errorf("%q: Hostname %q Port %q IP %v, want %q %q %v", c.in, sn.Hostname(), sn.Port(), sn.IsIPLiteral(), c.host, c.port, c.ip)
		}
	}
}

func TestParseUserID(t *testing.T) {
	cases := []struct {
		in            string
		ok            bool
		local, server string
		compliant     bool
		strict        bool
	}{
		{"@alice:example.org", true, "alice", "example.org", true, true},
		{"@a.b_c=d-e/f+g:example.org:8448", true, "a.b_c=d-e/f+g", "example.org:8448", true, true},
		{"@bob:[::1]:8448", true, "bob", "[::1]:8448", true, true},
		// Historical ids that must still be accepted from remote servers.
		{"@Alice:example.org", true, "Alice", "example.org", true, false},
		{"@:example.org", true, "", "example.org", false, false},
		{"@ali ce:example.org", true, "ali ce", "example.org", false, false},
		{"@日本:example.org", true, "日本", "example.org", false, false},
		{"@\x01:example.org", true, "\x01", "example.org", false, false},

		{"alice:example.org", false, "", "", false, false},
		{"@alice", false, "", "", false, false},
		{"@alice:", false, "", "", false, false},
		{"@alice:bad_host", false, "", "", false, false},
		{"@a\x00b:example.org", false, "", "", false, false},
		{"@\xff:example.org", false, "", "", false, false},
		{"@\xed\xa0\x80:example.org", false, "", "", false, false}, // UTF-8 encoded surrogate
		{"#alice:example.org", false, "", "", false, false},
		{"", false, "", "", false, false},
	}
	for _, c := range cases {
		u, err := ParseUserID(c.in)
		if (err == nil) != c.ok {
			t.Errorf("ParseUserID(%q) error = %v, want ok=%v", c.in, err, c.ok)
			continue
		}
		if err != nil {
			continue
		}
		if u.Localpart() != c.local || string(u.Server()) != c.server || u.String() != c.in {
			t.Errorf("%q: parts %q %q", c.in, u.Localpart(), u.Server())
		}
		if u.IsCompliant() != c.compliant || u.IsStrict() != c.strict {
			t.Errorf("%q: compliant %v strict %v, want %v %v", c.in, u.IsCompliant(), u.IsStrict(), c.compliant, c.strict)
		}
	}
}

func TestUserIDLength(t *testing.T) {
	server := "example.org"
	fits := "@" + strings.Repeat("a", MaxLength-2-len(server)) + ":" + server
	if len(fits) != MaxLength {
		t.Fatalf("test bug: %d", len(fits))
	}
	if _, err := ParseUserID(fits); err != nil {
		t.Errorf("255-byte id rejected: %v", err)
	}
	if _, err := ParseUserID("@a" + fits[1:]); err == nil {
		t.Error("256-byte id accepted")
	}
	// Length counts bytes, not characters.
	multi := "@" + strings.Repeat("é", 122) + ":" + server // 1+244+1+11 = 257 bytes
	if _, err := ParseUserID(multi); err == nil {
		t.Error("257-byte multi-byte id accepted")
	}
}

func TestValidLocalpart(t *testing.T) {
	for _, s := range []string{"alice", "a", "0", "a.b_c=d-e/f+g", strings.Repeat("z", 200)} {
		if err := ValidLocalpart(s); err != nil {
			t.Errorf("ValidLocalpart(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "Alice", "a b", "a:b", "a@b", "a#b", "a*b", "é", "a\x00", "a!b", "a~b", strings.Repeat("z", 256)} {
		if err := ValidLocalpart(s); err == nil {
			t.Errorf("ValidLocalpart(%q) accepted", s)
		}
	}
}

func TestNewUserID(t *testing.T) {
	u, err := NewUserID("alice", "example.org")
	if err != nil || u != "@alice:example.org" {
		t.Fatalf("NewUserID = %q, %v", u, err)
	}
	if _, err := NewUserID("Alice", "example.org"); err == nil {
		t.Error("upper case accepted for a new registration")
	}
	if _, err := NewUserID("alice", "bad host"); err == nil {
		t.Error("bad server accepted")
	}
	if _, err := NewUserID(strings.Repeat("a", 250), "example.org"); err == nil {
		t.Error("over-long id accepted")
	}
}

func TestParseRoomID(t *testing.T) {
	cases := []struct {
		in           string
		ok           bool
		opaque       string
		server       string
		domainLessOK bool
	}{
		{"!abc:example.org", true, "abc", "example.org", false},
		{"!jEsUZKDJdhlrceRyVU:example.org:8448", true, "jEsUZKDJdhlrceRyVU", "example.org:8448", false},
		{"!Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ", true, "Nhcu5BS-UMnFX7hBVfVSoXiD7OgH6iRT-xyIuqDnpYQ", "", true},
		{"!with space:example.org", true, "with space", "example.org", false},
		{"!", false, "", "", false},
		{"!:example.org", false, "", "", false},
		{"!abc:", false, "", "", false},
		{"!abc:bad host", false, "", "", false},
		{"!a\x00:example.org", false, "", "", false},
		{"!a\x00", false, "", "", false},
		{"$abc:example.org", false, "", "", false},
		{"!" + strings.Repeat("a", 255), false, "", "", false},
	}
	for _, c := range cases {
		r, err := ParseRoomID(c.in)
		if (err == nil) != c.ok {
			t.Errorf("ParseRoomID(%q) error = %v, want ok=%v", c.in, err, c.ok)
			continue
		}
		if err != nil {
			continue
		}
		if r.Opaque() != c.opaque || string(r.Server()) != c.server || r.HasServer() == c.domainLessOK {
			t.Errorf("%q: opaque %q server %q has %v", c.in, r.Opaque(), r.Server(), r.HasServer())
		}
	}
	if got := RoomIDFromCreateEvent("$abc_-"); got != "!abc_-" {
		t.Errorf("RoomIDFromCreateEvent = %q", got)
	}
}

func TestParseRoomAlias(t *testing.T) {
	for _, s := range []string{"#room:example.org", "#日本 語:example.org", "#a:1.2.3.4:80"} {
		a, err := ParseRoomAlias(s)
		if err != nil {
			t.Errorf("ParseRoomAlias(%q) = %v", s, err)
			continue
		}
		if "#"+a.Localpart()+":"+string(a.Server()) != s {
			t.Errorf("%q: parts %q %q", s, a.Localpart(), a.Server())
		}
	}
	for _, s := range []string{"", "#", "#room", "#:example.org", "#room:", "#ro\x00om:example.org", "!room:example.org", "#room:bad host", "#" + strings.Repeat("a", 243) + ":example.org"} {
		if _, err := ParseRoomAlias(s); err == nil {
			t.Errorf("ParseRoomAlias(%q) accepted", s)
		}
	}
}

func TestParseEventID(t *testing.T) {
	cases := []struct {
		in     string
		ok     bool
		server string
	}{
		{"$0:domain", true, "domain"},
		{"$a4ecee13e2accdadf56c1025:example.com", true, "example.com"},
		{"$acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk", true, ""},
		{"$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", true, ""},
		{"$", false, ""},
		{"$:domain", false, ""},
		{"$abc:", false, ""},
		{"$abc:bad host", false, ""},
		{"$a\x00b", false, ""},
		{"abc", false, ""},
		{"$" + strings.Repeat("a", 255), false, ""},
	}
	for _, c := range cases {
		e, err := ParseEventID(c.in)
		if (err == nil) != c.ok {
			t.Errorf("ParseEventID(%q) error = %v, want ok=%v", c.in, err, c.ok)
			continue
		}
		if err == nil && (string(e.Server()) != c.server || e.HasServer() != (c.server != "")) {
			t.Errorf("%q: server %q", c.in, e.Server())
		}
	}
}
