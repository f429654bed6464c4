package rooms

import (
	"strings"
	"testing"
)

func TestGlobMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, s string
		want       bool
	}{
		{"hs*", "hs1", true},
		{"hs*", "h", false},
		{"@user-?*", "@user-1:hs1", true},
		{"@user-?*", "@user-", false},
		{"*.example.org", "matrix.example.org", true},
		{"*.example.org", "example.org", false},
		{"a?c", "abc", true},
		{"a?c", "aéc", true},
		{"", "", true},
		{"*", "", true},
		{"a*b*c", "axxbyyc", true},
		{"a*b*c", "axxbyy", false},
		{strings.Repeat("*a", 40) + "b", strings.Repeat("a", 300), false}, // no exponential backtracking
	} {
		if got := globMatch(tc.pattern, tc.s); got != tc.want {
			t.Errorf("globMatch(%q, %q) = %v", tc.pattern, tc.s, got)
		}
	}
}

func TestInvitePolicyDecide(t *testing.T) {
	p := parseInvitePolicy(nil, []byte(`{"allowed_users":["@friend:bad.test"],"ignored_users":["@noisy:*"],"blocked_users":["@evil:good.test","@noisy:x.test"],
		"allowed_servers":["good.test"],"ignored_servers":["quiet.test"],"blocked_servers":["bad.*"]}`))
	for inviter, want := range map[string]InviteAction{
		"@friend:bad.test":    InviteAllow,  // allowed user beats blocked server
		"@other:bad.test":     InviteBlock,  // blocked server
		"@evil:good.test":     InviteBlock,  // blocked user beats allowed server
		"@anyone:good.test":   InviteAllow,  // allowed server
		"@noisy:x.test":       InviteIgnore, // ignore comes before block
		"@someone:quiet.test": InviteIgnore,
		"@stranger:else.test": InviteAllow, // no rule
	} {
		if got := p.decide(inviter); got != want {
			t.Errorf("%s: %v, want %v", inviter, got, want)
		}
	}
	if p := parseInvitePolicy([]byte(`{"default_action":"block"}`), []byte(`{"allowed_users":["@friend:x.test"]}`)); p.decide("@friend:x.test") != InviteBlock {
		t.Error("default_action block lets an invite through")
	}
	for _, stable := range []string{`{}`, `{"default_action":"allow"}`, `{"default_action":5}`, `nonsense`} {
		if p := parseInvitePolicy([]byte(stable), []byte(`{"blocked_users":null,"ignored_servers":"x"}`)); p != nil {
			t.Errorf("%s: a policy from nothing: %+v", stable, p)
		}
	}
}
