package push

import (
	"strings"
	"testing"
)

func TestDefaults(t *testing.T) {
	rs := Defaults("@alice:example.org")
	if len(rs.Override) != 10 || rs.Override[0].RuleID != ".m.rule.master" || rs.Override[0].Enabled {
		t.Fatalf("override rules: %+v", rs.Override)
	}
	if rs.Underride[len(rs.Underride)-1].RuleID != ".m.rule.encrypted" {
		t.Fatalf("underride order: %+v", rs.Underride)
	}
	var found bool
	for _, r := range rs.Override {
		if r.RuleID == ".m.rule.is_user_mention" {
			found = strings.Contains(string(r.Conditions[0]), `"@alice:example.org"`)
		}
		for _, c := range r.Conditions {
			if strings.Contains(string(c), "the user's Matrix ID") {
				t.Fatalf("placeholder left in %s", r.RuleID)
			}
		}
	}
	if !found {
		t.Fatal("user id not substituted into .m.rule.is_user_mention")
	}
}
