package push

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"luxchat/internal/matrix/errcode"
)

func ids(rules []Rule) string {
	var out []string
	for _, r := range rules {
		out = append(out, r.RuleID)
	}
	return strings.Join(out, " ")
}

func TestDefaultsInSpecOrder(t *testing.T) {
	rs := Defaults("@alice:example.org")
	wantOverride := ".m.rule.master .m.rule.suppress_notices .m.rule.invite_for_me .m.rule.member_event .m.rule.is_user_mention .m.rule.is_room_mention .m.rule.tombstone .m.rule.reaction .m.rule.room.server_acl .m.rule.poll_response .org.matrix.msc3930.rule.poll_response .m.rule.suppress_edits"
	if got := ids(rs.Override); got != wantOverride {
		t.Fatalf("override:\n got %s\nwant %s", got, wantOverride)
	}
	wantUnderride := ".m.rule.call .m.rule.encrypted_room_one_to_one .m.rule.room_one_to_one .m.rule.message .m.rule.encrypted .m.rule.poll_start_one_to_one .m.rule.poll_start .m.rule.poll_end_one_to_one .m.rule.poll_end .org.matrix.msc3930.rule.poll_start_one_to_one .org.matrix.msc3930.rule.poll_start .org.matrix.msc3930.rule.poll_end_one_to_one .org.matrix.msc3930.rule.poll_end"
	if got := ids(rs.Underride); got != wantUnderride {
		t.Fatalf("underride:\n got %s\nwant %s", got, wantUnderride)
	}
	if rs.Override[0].Enabled {
		t.Fatal(".m.rule.master must be disabled by default")
	}
	var found bool
	for _, r := range rs.Override {
		if !r.Default {
			t.Fatalf("%s is not marked default", r.RuleID)
		}
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

func raw(s string) json.RawMessage { return json.RawMessage(s) }

func code(err error) string {
	var e *errcode.Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func TestPutOrderingAndErrors(t *testing.T) {
	rs := Merge("@a:x", nil)
	put := func(kind, id, before, after string) error {
		return rs.Put(kind, id, NewRule{Actions: []json.RawMessage{raw(`"notify"`)}, Pattern: ptr("cake")}, before, after)
	}
	for _, id := range []string{"a", "b", "c"} {
		if err := put("content", id, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	// New rules without before/after become the most important.
	if got := ids(rs.Content); got != "c b a" {
		t.Fatalf("content order %q", got)
	}
	if err := put("content", "d", "a", ""); err != nil {
		t.Fatal(err)
	}
	if err := put("content", "e", "", "c"); err != nil {
		t.Fatal(err)
	}
	if got := ids(rs.Content); got != "c e b d a" {
		t.Fatalf("content order %q", got)
	}
	// Moving an existing rule.
	if err := put("content", "c", "", "a"); err != nil {
		t.Fatal(err)
	}
	if got := ids(rs.Content); got != "e b d a c" {
		t.Fatalf("content order %q", got)
	}
	// Overrides go after .m.rule.master, before the other defaults.
	if err := rs.Put("override", "mine", NewRule{Actions: []json.RawMessage{}}, "", ""); err != nil {
		t.Fatal(err)
	}
	if rs.Override[0].RuleID != ".m.rule.master" || rs.Override[1].RuleID != "mine" {
		t.Fatalf("override order %s", ids(rs.Override))
	}
	cases := []struct {
		name, kind, id, before, after string
		nr                            NewRule
		want                          string
	}{
		{"unknown before", "content", "x", "nope", "", NewRule{Actions: []json.RawMessage{}, Pattern: ptr("p")}, "M_UNKNOWN"},
		{"unknown after", "content", "x", "", "nope", NewRule{Actions: []json.RawMessage{}, Pattern: ptr("p")}, "M_UNKNOWN"},
		{"relative to a default", "override", "x", ".m.rule.message", "", NewRule{Actions: []json.RawMessage{}}, "M_UNKNOWN"},
		{"dot id", "override", ".x", "", "", NewRule{Actions: []json.RawMessage{}}, "M_INVALID_PARAM"},
		{"slash id", "override", "a/b", "", "", NewRule{Actions: []json.RawMessage{}}, "M_INVALID_PARAM"},
		{"backslash id", "override", `a\b`, "", "", NewRule{Actions: []json.RawMessage{}}, "M_INVALID_PARAM"},
		{"no pattern", "content", "x", "", "", NewRule{Actions: []json.RawMessage{}}, "M_INVALID_PARAM"},
		{"bad condition", "override", "x", "", "", NewRule{Actions: []json.RawMessage{}, Conditions: []json.RawMessage{raw(`{"kind":"event_match","key":"type"}`)}}, "M_INVALID_PARAM"},
		{"bad member count", "override", "x", "", "", NewRule{Actions: []json.RawMessage{}, Conditions: []json.RawMessage{raw(`{"kind":"room_member_count","is":"=<2"}`)}}, "M_INVALID_PARAM"},
		{"compound value", "override", "x", "", "", NewRule{Actions: []json.RawMessage{}, Conditions: []json.RawMessage{raw(`{"kind":"event_property_is","key":"a","value":{}}`)}}, "M_INVALID_PARAM"},
		{"condition not an object", "override", "x", "", "", NewRule{Actions: []json.RawMessage{}, Conditions: []json.RawMessage{raw(`"x"`)}}, "M_INVALID_PARAM"},
		{"unknown action", "override", "x", "", "", NewRule{Actions: []json.RawMessage{raw(`"explode"`)}}, "M_INVALID_PARAM"},
		{"missing actions", "override", "x", "", "", NewRule{}, "M_MISSING_PARAM"},
		{"room id", "room", "notaroom", "", "", NewRule{Actions: []json.RawMessage{}}, "M_INVALID_PARAM"},
		{"sender id", "sender", "bob", "", "", NewRule{Actions: []json.RawMessage{}}, "M_INVALID_PARAM"},
		{"unknown kind", "global", "x", "", "", NewRule{Actions: []json.RawMessage{}}, "M_INVALID_PARAM"},
		{"unknown condition kinds are fine", "override", "x", "", "", NewRule{Actions: []json.RawMessage{}, Conditions: []json.RawMessage{raw(`{"kind":"org.example.future"}`)}}, ""},
	}
	for _, c := range cases {
		if got := code(rs.Put(c.kind, c.id, c.nr, c.before, c.after)); got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
	if got := code(rs.Delete("override", ".m.rule.message")); got != "M_NOT_FOUND" {
		t.Errorf("delete of a default in the wrong kind: %q", got)
	}
	if got := code(rs.Delete("underride", ".m.rule.message")); got == "" {
		t.Error("a server-default rule was deleted")
	}
	if err := rs.SetEnabled("underride", ".m.rule.message", false); err != nil {
		t.Fatal(err)
	}
	if err := rs.SetActions("underride", ".m.rule.message", []json.RawMessage{raw(`"dont_notify"`)}); err != nil {
		t.Fatal(err)
	}
	// The user's choices for defaults survive a merge; dont_notify is kept
	// as given (and ignored by evaluation).
	data, _ := json.Marshal(rs)
	var back Ruleset
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	m := Merge("@a:x", &back)
	i, _ := m.Find("underride", ".m.rule.message")
	if r := m.Underride[i]; r.Enabled || len(r.Actions) != 1 || string(r.Actions[0]) != `"dont_notify"` || !r.Default {
		t.Fatalf("merged default %+v", r)
	}
	if ids(m.Content) != ids(rs.Content) || ids(m.Override) != ids(rs.Override) {
		t.Fatalf("merge lost user rules: %s / %s", ids(m.Content), ids(m.Override))
	}
}

func ptr(s string) *string { return &s }

func TestRuleLimits(t *testing.T) {
	rs := Merge("@a:x", nil)
	for i := range MaxUserRules {
		if err := rs.Put("override", fmt.Sprint("r", i), NewRule{Actions: []json.RawMessage{}}, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	if got := code(rs.Put("override", "one-more", NewRule{Actions: []json.RawMessage{}}, "", "")); got != "M_INVALID_PARAM" {
		t.Fatalf("rule %d: %q", MaxUserRules+1, got)
	}
	// Replacing an existing rule is still fine.
	if err := rs.Put("override", "r1", NewRule{Actions: []json.RawMessage{raw(`"notify"`)}}, "", ""); err != nil {
		t.Fatal(err)
	}
	many := make([]json.RawMessage, 33)
	for i := range many {
		many[i] = raw(`"notify"`)
	}
	if got := code(rs.SetActions("override", "r1", many)); got != "M_INVALID_PARAM" {
		t.Fatalf("33 actions: %q", got)
	}
}
