package push

import (
	"encoding/json"
	"testing"
)

func mustEvent(t testing.TB, s string) *Event {
	t.Helper()
	ev, err := NewEvent([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func TestConditions(t *testing.T) {
	ev := mustEvent(t, `{
		"type": "m.room.message", "sender": "@bob:x", "room_id": "!r:x",
		"content": {
			"body": "An exciting triple-whammy for Alice_Smith, lunch?",
			"msgtype": "m.text",
			"m.mentions": {"user_ids": ["@alice:x", 5, null, {"a": 1}], "room": true},
			"m\\foo": "backslash",
			"a.b": {"c": "dotted"},
			"n": 42, "t": true, "nul": null, "f": 1.5,
			"list": ["x", true, 42, null]
		}
	}`)
	cases := []struct {
		name string
		cond string
		want bool
	}{
		{"type literal", `{"kind":"event_match","key":"type","pattern":"m.room.message"}`, true},
		{"case-insensitive", `{"kind":"event_match","key":"type","pattern":"M.ROOM.MESSAGE"}`, true},
		{"star", `{"kind":"event_match","key":"type","pattern":"m.room.*"}`, true},
		{"question mark", `{"kind":"event_match","key":"content.msgtype","pattern":"m.te?t"}`, true},
		{"question mark needs a char", `{"kind":"event_match","key":"content.msgtype","pattern":"m.text?"}`, false},
		{"whole value", `{"kind":"event_match","key":"type","pattern":"m.room"}`, false},
		{"regexp chars are literal", `{"kind":"event_match","key":"type","pattern":"m.room.(message)"}`, false},
		{"dot is literal", `{"kind":"event_match","key":"type","pattern":"m_room_message"}`, false},
		{"star on absent key", `{"kind":"event_match","key":"content.nope","pattern":"*"}`, false},
		{"star on non-string", `{"kind":"event_match","key":"content.n","pattern":"*"}`, false},
		{"body word", `{"kind":"event_match","key":"content.body","pattern":"lunch"}`, true},
		{"body glob spans words", `{"kind":"event_match","key":"content.body","pattern":"ex*ple"}`, true},
		{"body not inside a word", `{"kind":"event_match","key":"content.body","pattern":"citing"}`, false},
		{"underscore is a word char", `{"kind":"event_match","key":"content.body","pattern":"alice"}`, false},
		{"body whole word with underscore", `{"kind":"event_match","key":"content.body","pattern":"alice_smith"}`, true},
		{"escaped dot", `{"kind":"event_match","key":"content.a\\.b.c","pattern":"dotted"}`, true},
		{"unescaped dot is a path", `{"kind":"event_match","key":"content.a.b.c","pattern":"dotted"}`, false},
		{"escaped backslash", `{"kind":"event_match","key":"content.m\\\\foo","pattern":"backslash"}`, true},
		{"other escapes are literal", `{"kind":"event_match","key":"content.m\\foo","pattern":"backslash"}`, true},
		{"property is string", `{"kind":"event_property_is","key":"content.msgtype","value":"m.text"}`, true},
		{"property is int", `{"kind":"event_property_is","key":"content.n","value":42}`, true},
		{"no casting", `{"kind":"event_property_is","key":"content.n","value":"42"}`, false},
		{"bool", `{"kind":"event_property_is","key":"content.m\\.mentions.room","value":true}`, true},
		{"bool is not 1", `{"kind":"event_property_is","key":"content.t","value":1}`, false},
		{"null", `{"kind":"event_property_is","key":"content.nul","value":null}`, true},
		{"absent is not null", `{"kind":"event_property_is","key":"content.nope","value":null}`, false},
		{"float never matches", `{"kind":"event_property_is","key":"content.f","value":1}`, false},
		{"object never matches", `{"kind":"event_property_is","key":"content.a\\.b","value":null}`, false},
		{"contains", `{"kind":"event_property_contains","key":"content.m\\.mentions.user_ids","value":"@alice:x"}`, true},
		{"contains partial", `{"kind":"event_property_contains","key":"content.m\\.mentions.user_ids","value":"@alice"}`, false},
		{"contains int", `{"kind":"event_property_contains","key":"content.list","value":42}`, true},
		{"contains null", `{"kind":"event_property_contains","key":"content.list","value":null}`, true},
		{"contains on non-array", `{"kind":"event_property_contains","key":"content.body","value":"An"}`, false},
		{"display name", `{"kind":"contains_display_name"}`, true},
		{"member count", `{"kind":"room_member_count","is":"2"}`, false},
		{"member count ==", `{"kind":"room_member_count","is":"==5"}`, true},
		{"member count <", `{"kind":"room_member_count","is":"<5"}`, false},
		{"member count <=", `{"kind":"room_member_count","is":"<=5"}`, true},
		{"member count >", `{"kind":"room_member_count","is":">4"}`, true},
		{"member count >=", `{"kind":"room_member_count","is":">=6"}`, false},
		{"sender permission", `{"kind":"sender_notification_permission","key":"room"}`, true},
		{"sender permission other key", `{"kind":"sender_notification_permission","key":"other"}`, false},
		{"unknown kind", `{"kind":"org.example.future","key":"type"}`, false},
		{"invalid known kind never matches", `{"kind":"event_match","key":"type"}`, false},
	}
	room := &Room{MemberCount: 5, SenderLevel: 50, NotificationLevel: func(k string) int64 {
		if k == "room" {
			return 50
		}
		return 100
	}}
	for _, c := range cases {
		rs := &Ruleset{Override: []Rule{{RuleID: "x", Enabled: true, Conditions: []json.RawMessage{json.RawMessage(c.cond)}, Actions: []json.RawMessage{json.RawMessage(`"notify"`)}}}}
		got, _ := Compile(rs).Evaluate(ev, room, Recipient{DisplayName: "Alice_Smith"})
		if (got != nil) != c.want {
			t.Errorf("%s: matched %v, want %v", c.name, got != nil, c.want)
		}
	}
}

func TestDefaultRules(t *testing.T) {
	c := Compile(Merge("@alice:x", nil))
	room := &Room{MemberCount: 5}
	two := &Room{MemberCount: 2}
	cases := []struct {
		name, ev string
		room     *Room
		rule     string
		notify   bool
		high     bool
	}{
		{"message", `{"type":"m.room.message","content":{"body":"hi","msgtype":"m.text"}}`, room, ".m.rule.message", true, false},
		{"one to one", `{"type":"m.room.message","content":{"body":"hi"}}`, two, ".m.rule.room_one_to_one", true, false},
		{"mention", `{"type":"m.room.message","content":{"body":"hi","m.mentions":{"user_ids":["@alice:x"]}}}`, room, ".m.rule.is_user_mention", true, true},
		{"notice", `{"type":"m.room.message","content":{"body":"hi","msgtype":"m.notice"}}`, room, ".m.rule.suppress_notices", false, false},
		{"room mention without power", `{"type":"m.room.message","content":{"body":"hi","m.mentions":{"room":true}}}`, room, ".m.rule.message", true, false},
		{"room mention", `{"type":"m.room.message","content":{"body":"hi","m.mentions":{"room":true}}}`, &Room{MemberCount: 5, SenderLevel: 100}, ".m.rule.is_room_mention", true, true},
		{"edit", `{"type":"m.room.message","content":{"body":"hi","m.relates_to":{"rel_type":"m.replace","event_id":"$x"}}}`, room, ".m.rule.suppress_edits", false, false},
		{"encrypted", `{"type":"m.room.encrypted","content":{}}`, room, ".m.rule.encrypted", true, false},
		{"encrypted one to one", `{"type":"m.room.encrypted","content":{}}`, two, ".m.rule.encrypted_room_one_to_one", true, false},
		{"invite", `{"type":"m.room.member","state_key":"@alice:x","content":{"membership":"invite"}}`, room, ".m.rule.invite_for_me", true, false},
		{"other member", `{"type":"m.room.member","state_key":"@carol:x","content":{"membership":"join"}}`, room, ".m.rule.member_event", false, false},
		{"tombstone", `{"type":"m.room.tombstone","state_key":"","content":{}}`, room, ".m.rule.tombstone", true, true},
		{"reaction", `{"type":"m.reaction","content":{}}`, room, ".m.rule.reaction", false, false},
		{"poll", `{"type":"org.matrix.msc3381.poll.start","content":{}}`, room, ".org.matrix.msc3930.rule.poll_start", true, false},
		{"poll one to one", `{"type":"m.poll.start","content":{}}`, two, ".m.rule.poll_start_one_to_one", true, false},
		{"poll response", `{"type":"m.poll.response","content":{}}`, room, ".m.rule.poll_response", false, false},
		{"call", `{"type":"m.call.invite","content":{}}`, room, ".m.rule.call", true, false},
		{"other", `{"type":"m.room.topic","state_key":"","content":{}}`, room, "", false, false},
	}
	for _, tc := range cases {
		a, id := c.Evaluate(mustEvent(t, tc.ev), tc.room, Recipient{DisplayName: ""})
		if id != tc.rule {
			t.Errorf("%s: rule %q, want %q", tc.name, id, tc.rule)
			continue
		}
		if a != nil && (a.Notify != tc.notify || a.Highlight != tc.high) {
			t.Errorf("%s: notify %v highlight %v", tc.name, a.Notify, a.Highlight)
		}
	}
	// Master disables everything once enabled.
	rs := Merge("@alice:x", nil)
	if err := rs.SetEnabled("override", ".m.rule.master", true); err != nil {
		t.Fatal(err)
	}
	if a, id := Compile(rs).Evaluate(mustEvent(t, `{"type":"m.room.message","content":{"m.mentions":{"user_ids":["@alice:x"]}}}`), room, Recipient{DisplayName: ""}); id != ".m.rule.master" || a.Notify {
		t.Fatalf("master: %q %+v", id, a)
	}
}

// TestSharedRules checks that a rule set shared by users with the same
// choices, evaluated per recipient or prepared once per event, decides
// as each user's own rule set does.
func TestSharedRules(t *testing.T) {
	edited := Merge("@alice:x", nil)
	if err := edited.Put("room", "!quiet:x", NewRule{Actions: []json.RawMessage{}}, "", ""); err != nil {
		t.Fatal(err)
	}
	if err := edited.Put("content", "cake", NewRule{Actions: []json.RawMessage{json.RawMessage(`"notify"`)}, Pattern: ptr("cake")}, "", ""); err != nil {
		t.Fatal(err)
	}
	events := []string{
		`{"type":"m.room.message","room_id":"!r:x","sender":"@bob:x","content":{"body":"hi","msgtype":"m.text"}}`,
		`{"type":"m.room.message","room_id":"!r:x","sender":"@bob:x","content":{"body":"hi","m.mentions":{"user_ids":["@alice:x"]}}}`,
		`{"type":"m.room.message","room_id":"!r:x","sender":"@bob:x","content":{"body":"hi","m.mentions":{"user_ids":["@carol:x","@ALICE:x"]}}}`,
		`{"type":"m.room.message","room_id":"!quiet:x","sender":"@bob:x","content":{"body":"cake","m.mentions":{"user_ids":["@alice:x"]}}}`,
		`{"type":"m.room.message","room_id":"!r:x","sender":"@bob:x","content":{"body":"a cake"}}`,
		`{"type":"m.room.member","room_id":"!r:x","sender":"@bob:x","state_key":"@alice:x","content":{"membership":"invite"}}`,
		`{"type":"m.room.member","room_id":"!r:x","sender":"@bob:x","state_key":"@carol:x","content":{"membership":"invite"}}`,
		`{"type":"m.room.encrypted","room_id":"!r:x","sender":"@bob:x","content":{}}`,
		`{"type":"m.room.member","room_id":"!r:x","sender":"@bob:x","state_key":"@bob:x","content":{"membership":"join"}}`,
	}
	users := []string{"@alice:x", "@carol:x", "@dave:x"}
	uniform := 0
	for _, stored := range []*Ruleset{nil, edited} {
		rs, key := Shared(stored)
		if (key == "") != (stored == nil) {
			t.Fatalf("key %q for stored %v", key, stored != nil)
		}
		shared := Compile(rs)
		for _, room := range []*Room{{MemberCount: 2}, {MemberCount: 5}} {
			for _, raw := range events {
				ev := mustEvent(t, raw)
				prepared := shared.Prepare(ev, room)
				same, isUniform := prepared.Uniform()
				if isUniform {
					uniform++
				}
				for _, u := range users {
					wantActions, want := Compile(Merge(u, stored)).Evaluate(ev, room, Recipient{})
					if isUniform && (same == nil) != (wantActions == nil) || isUniform && same != nil && string(same.JSON) != string(wantActions.JSON) {
						t.Errorf("stored %v, %s for %s: uniform verdict %v, own %q", stored != nil, raw, u, same, want)
					}
					if _, got := shared.Evaluate(ev, room, Recipient{UserID: u}); got != want {
						t.Errorf("stored %v, %s for %s: shared rule %q, own %q", stored != nil, raw, u, got, want)
					}
					if _, got := prepared.Evaluate(Recipient{UserID: u}); got != want {
						t.Errorf("stored %v, %s for %s: prepared rule %q, own %q", stored != nil, raw, u, got, want)
					}
				}
			}
		}
	}
	if uniform == 0 {
		t.Error("no verdict is the same for everyone (a join should be)")
	}
	// Users who made the same choices share a key.
	other := Merge("@carol:x", nil)
	_ = other.Put("room", "!quiet:x", NewRule{Actions: []json.RawMessage{}}, "", "")
	_ = other.Put("content", "cake", NewRule{Actions: []json.RawMessage{json.RawMessage(`"notify"`)}, Pattern: ptr("cake")}, "", "")
	if _, a := Shared(edited); func() string { _, b := Shared(other); return b }() != a {
		t.Fatal("same choices, different keys")
	}
}

func TestUserRulesBeatDefaults(t *testing.T) {
	rs := Merge("@alice:x", nil)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(rs.Put("room", "!quiet:x", NewRule{Actions: []json.RawMessage{}}, "", ""))
	must(rs.Put("sender", "@boss:x", NewRule{Actions: []json.RawMessage{json.RawMessage(`"notify"`), json.RawMessage(`{"set_tweak":"highlight"}`)}}, "", ""))
	must(rs.Put("content", "cake", NewRule{Actions: []json.RawMessage{json.RawMessage(`"notify"`), json.RawMessage(`{"set_tweak":"sound","value":"cakealarm.wav"}`)}, Pattern: ptr("cake*lie")}, "", ""))
	c := Compile(rs)
	room := &Room{MemberCount: 5}
	if _, id := c.Evaluate(mustEvent(t, `{"type":"m.room.message","room_id":"!quiet:x","sender":"@boss:x","content":{"body":"hi"}}`), room, Recipient{DisplayName: ""}); id != "!quiet:x" {
		t.Fatalf("room rule: %q", id)
	}
	if a, id := c.Evaluate(mustEvent(t, `{"type":"m.room.message","room_id":"!r:x","sender":"@boss:x","content":{"body":"hi"}}`), room, Recipient{DisplayName: ""}); id != "@boss:x" || !a.Highlight {
		t.Fatalf("sender rule: %q", id)
	}
	a, id := c.Evaluate(mustEvent(t, `{"type":"m.room.message","room_id":"!r:x","sender":"@bob:x","content":{"body":"the Cake is a lie!"}}`), room, Recipient{DisplayName: ""})
	if id != "cake" || string(a.Tweaks["sound"]) != `"cakealarm.wav"` {
		t.Fatalf("content rule: %q", id)
	}
}

func TestNewEventRejectsNonObjects(t *testing.T) {
	for _, s := range []string{`[]`, `null`, `"x"`, `{`} {
		if _, err := NewEvent([]byte(s)); err == nil {
			t.Errorf("%s accepted", s)
		}
	}
}

// BenchmarkEvaluate evaluates the full default rule set for one recipient
// of a plain group message (which falls through to .m.rule.message, near
// the end of the list).
func BenchmarkEvaluate(b *testing.B) {
	c := Compile(Merge("@alice:example.org", nil))
	ev := mustEvent(b, `{"type":"m.room.message","room_id":"!r:example.org","sender":"@bob:example.org","content":{"body":"hello there, how are you?","msgtype":"m.text","m.mentions":{"user_ids":["@carol:example.org"]}}}`)
	room := &Room{MemberCount: 12, SenderLevel: 0}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, id := c.Evaluate(ev, room, Recipient{DisplayName: "Alice"}); id != ".m.rule.message" {
			b.Fatal(id)
		}
	}
}

func TestNewEventFieldsMatchesNewEvent(t *testing.T) {
	sk := ""
	a, err := NewEventFields(Fields{EventID: "$e", RoomID: "!r:x", Sender: "@s:x", Type: "m.room.topic", StateKey: &sk, OriginServerTS: 42}, json.RawMessage(`{"topic":"Lunch","a.b":{"c":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	b := mustEvent(t, `{"event_id":"$e","room_id":"!r:x","sender":"@s:x","type":"m.room.topic","state_key":"","origin_server_ts":42,"content":{"topic":"Lunch","a.b":{"c":1}}}`)
	for _, k := range []string{"event_id", "room_id", "sender", "type", "state_key", "origin_server_ts", "content.topic", `content.a\.b.c`} {
		va, _ := a.Get(k)
		vb, _ := b.Get(k)
		if va != vb {
			t.Errorf("%s: %v vs %v", k, va, vb)
		}
	}
	if _, err := NewEventFields(Fields{}, json.RawMessage(`[]`)); err == nil {
		t.Error("array content accepted")
	}
}

// TestThreadSubscriptionCondition: MSC4306's condition matches only
// events in a thread, by the recipient's subscription, in a direct
// evaluation and in a prepared one (where it is personal, yet decided for
// everyone outside threads).
func TestThreadSubscriptionCondition(t *testing.T) {
	inThread := mustEvent(t, `{"type":"m.room.message","room_id":"!r:x","sender":"@bob:x",
		"content":{"body":"hi","m.relates_to":{"rel_type":"m.thread","event_id":"$root"}}}`)
	reply := mustEvent(t, `{"type":"m.room.message","room_id":"!r:x","sender":"@bob:x",
		"content":{"body":"hi","m.relates_to":{"m.in_reply_to":{"event_id":"$root"}}}}`)
	if inThread.ThreadRoot() != "$root" || reply.ThreadRoot() != "" {
		t.Fatalf("thread roots: %q %q", inThread.ThreadRoot(), reply.ThreadRoot())
	}
	rule := func(id string, subscribed bool, actions string) Rule {
		cond := `{"kind":"io.element.msc4306.thread_subscription","subscribed":` + map[bool]string{true: "true", false: "false"}[subscribed] + `}`
		return Rule{RuleID: id, Enabled: true, Conditions: []json.RawMessage{json.RawMessage(cond)}, Actions: []json.RawMessage{json.RawMessage(actions)}}
	}
	rs := &Ruleset{Override: []Rule{rule("unsubscribed", false, `"dont_notify"`), rule("subscribed", true, `"notify"`)},
		Underride: []Rule{{RuleID: "rest", Enabled: true, Actions: []json.RawMessage{json.RawMessage(`"notify"`)}}}}
	c := Compile(rs)
	if !c.UsesThreadSubscriptions() {
		t.Fatal("UsesThreadSubscriptions is false")
	}
	room := &Room{MemberCount: 3}
	for _, tc := range []struct {
		ev         *Event
		subscribed bool
		want       string
	}{{inThread, true, "subscribed"}, {inThread, false, "unsubscribed"}, {reply, true, "rest"}, {reply, false, "rest"}} {
		if _, id := c.Evaluate(tc.ev, room, Recipient{UserID: "@a:x", ThreadSubscribed: tc.subscribed}); id != tc.want {
			t.Errorf("evaluate (subscribed %v): rule %q, want %q", tc.subscribed, id, tc.want)
		}
		if _, id := c.Prepare(tc.ev, room).Evaluate(Recipient{UserID: "@a:x", ThreadSubscribed: tc.subscribed}); id != tc.want {
			t.Errorf("prepared (subscribed %v): rule %q, want %q", tc.subscribed, id, tc.want)
		}
	}
	if _, uniform := c.Prepare(reply, room).Uniform(); !uniform {
		t.Error("outside threads the verdict is not the same for everyone")
	}
	if _, uniform := c.Prepare(inThread, room).Uniform(); uniform {
		t.Error("in a thread the verdict is taken as the same for everyone")
	}
	bad := &Ruleset{Override: []Rule{{RuleID: "bad", Enabled: true, Conditions: []json.RawMessage{json.RawMessage(`{"kind":"io.element.msc4306.thread_subscription","subscribed":"yes"}`)}, Actions: []json.RawMessage{json.RawMessage(`"notify"`)}}}}
	if a, _ := Compile(bad).Evaluate(inThread, room, Recipient{ThreadSubscribed: true}); a != nil {
		t.Error("a condition without a boolean subscribed matched")
	}
}
