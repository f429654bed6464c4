package pdu

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"luxchat/internal/matrix/roomversion"
)

// algoOf is the redaction algorithm each room version must use.
var algoOf = map[string]roomversion.RedactionAlgo{
	"1": roomversion.RedactV1, "2": roomversion.RedactV1, "3": roomversion.RedactV1, "4": roomversion.RedactV1, "5": roomversion.RedactV1,
	"6": roomversion.RedactV6, "7": roomversion.RedactV6, "8": roomversion.RedactV8,
	"9": roomversion.RedactV9, "10": roomversion.RedactV9, "11": roomversion.RedactV11, "12": roomversion.RedactV11,
}

func TestRedactTopLevel(t *testing.T) {
	in := `{"event_id":"$e:x","type":"m.room.message","room_id":"!r:x","sender":"@a:x","state_key":"",
		"content":{"body":"b"},"hashes":{"sha256":"h"},"signatures":{"x":{"ed25519:1":"s"}},"depth":1,
		"prev_events":[],"prev_state":[],"auth_events":[],"origin":"x","origin_server_ts":1,"membership":"join",
		"unsigned":{"age":1},"redacts":"$t:x","extra":{"a":1},"age_ts":5}`
	v1 := []string{"auth_events", "content", "depth", "event_id", "hashes", "membership", "origin", "origin_server_ts", "prev_events", "prev_state", "room_id", "sender", "signatures", "state_key", "type"}
	v11 := []string{"auth_events", "content", "depth", "event_id", "hashes", "origin_server_ts", "prev_events", "room_id", "sender", "signatures", "state_key", "type"}
	for _, v := range roomversion.All() {
		out, err := Redact([]byte(in), v)
		if err != nil {
			t.Fatalf("v%s: %v", v.ID, err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		want := v1
		if v.Redaction >= roomversion.RedactV11 {
			want = v11
		}
		if strings.Join(keys, ",") != strings.Join(want, ",") {
			t.Errorf("v%s kept %v, want %v", v.ID, keys, want)
		}
		if string(m["content"]) != `{}` {
			t.Errorf("v%s: message content kept: %s", v.ID, m["content"])
		}
	}
}

func TestRedactContent(t *testing.T) {
	const (
		member = `{"membership":"join","displayname":"A","avatar_url":"mxc://x/y","reason":"r",
			"join_authorised_via_users_server":"@u:x",
			"third_party_invite":{"display_name":"d","signed":{"mxid":"@a:x","token":"t","signatures":{"x":{"ed25519:1":"s"}}}}}`
		create    = `{"creator":"@a:x","room_version":"1","m.federate":false,"predecessor":{"room_id":"!r:x","event_id":"$e:x"},"additional_creators":["@b:x"],"type":"m.space"}`
		joinRules = `{"join_rule":"restricted","allow":[{"type":"m.room_membership","room_id":"!r:x"}],"extra":1}`
		power     = `{"ban":50,"events":{"m.room.name":100},"events_default":0,"invite":0,"kick":50,"redact":50,"state_default":50,"users":{"@a:x":100},"users_default":0,"notifications":{"room":50},"historical":1}`
		history   = `{"history_visibility":"shared","other":1}`
		aliases   = `{"aliases":["#a:x"],"other":1}`
		redaction = `{"redacts":"$e:x","reason":"spam"}`
		message   = `{"body":"hi","msgtype":"m.text","membership":"join"}`
		topic     = `{"topic":"t"}`
	)
	const (
		plV1  = `{"ban":50,"events":{"m.room.name":100},"events_default":0,"kick":50,"redact":50,"state_default":50,"users":{"@a:x":100},"users_default":0}`
		plV11 = `{"ban":50,"events":{"m.room.name":100},"events_default":0,"invite":0,"kick":50,"redact":50,"state_default":50,"users":{"@a:x":100},"users_default":0}`
	)
	V1, V6, V8, V9, V11 := roomversion.RedactV1, roomversion.RedactV6, roomversion.RedactV8, roomversion.RedactV9, roomversion.RedactV11
	type want map[roomversion.RedactionAlgo]string
	cases := []struct {
		evType, content string
		want            want
	}{
		{"m.room.member", member, want{
			V1: `{"membership":"join"}`, V6: `{"membership":"join"}`, V8: `{"membership":"join"}`,
			V9:  `{"join_authorised_via_users_server":"@u:x","membership":"join"}`,
			V11: `{"join_authorised_via_users_server":"@u:x","membership":"join","third_party_invite":{"signed":{"mxid":"@a:x","signatures":{"x":{"ed25519:1":"s"}},"token":"t"}}}`,
		}},
		{"m.room.member", `{"membership":"invite","third_party_invite":{"display_name":"d"}}`, want{
			V9: `{"membership":"invite"}`, V11: `{"membership":"invite","third_party_invite":{}}`,
		}},
		{"m.room.member", `{"membership":"invite","third_party_invite":"bogus"}`, want{
			V11: `{"membership":"invite"}`,
		}},
		{"m.room.create", create, want{
			V1: `{"creator":"@a:x"}`, V6: `{"creator":"@a:x"}`, V8: `{"creator":"@a:x"}`, V9: `{"creator":"@a:x"}`,
			V11: create,
		}},
		{"m.room.join_rules", joinRules, want{
			V1: `{"join_rule":"restricted"}`, V6: `{"join_rule":"restricted"}`,
			V8:  `{"allow":[{"room_id":"!r:x","type":"m.room_membership"}],"join_rule":"restricted"}`,
			V9:  `{"allow":[{"room_id":"!r:x","type":"m.room_membership"}],"join_rule":"restricted"}`,
			V11: `{"allow":[{"room_id":"!r:x","type":"m.room_membership"}],"join_rule":"restricted"}`,
		}},
		{"m.room.power_levels", power, want{V1: plV1, V6: plV1, V8: plV1, V9: plV1, V11: plV11}},
		{"m.room.history_visibility", history, want{
			V1: `{"history_visibility":"shared"}`, V6: `{"history_visibility":"shared"}`, V8: `{"history_visibility":"shared"}`,
			V9: `{"history_visibility":"shared"}`, V11: `{"history_visibility":"shared"}`,
		}},
		{"m.room.aliases", aliases, want{V1: `{"aliases":["#a:x"]}`, V6: `{}`, V8: `{}`, V9: `{}`, V11: `{}`}},
		{"m.room.redaction", redaction, want{V1: `{}`, V6: `{}`, V8: `{}`, V9: `{}`, V11: `{"redacts":"$e:x"}`}},
		{"m.room.message", message, want{V1: `{}`, V6: `{}`, V8: `{}`, V9: `{}`, V11: `{}`}},
		{"m.room.topic", topic, want{V1: `{}`, V11: `{}`}},
	}
	for _, c := range cases {
		for _, v := range roomversion.All() {
			if v.Redaction != algoOf[v.ID] {
				t.Fatalf("v%s uses redaction %d, want %d", v.ID, v.Redaction, algoOf[v.ID])
			}
			expected, ok := c.want[v.Redaction]
			if !ok {
				continue
			}
			in := `{"type":"` + c.evType + `","state_key":"","content":` + c.content + `,"sender":"@a:x"}`
			out, err := Redact([]byte(in), v)
			if err != nil {
				t.Fatalf("%s v%s: %v", c.evType, v.ID, err)
			}
			var m map[string]json.RawMessage
			_ = json.Unmarshal(out, &m)
			if got := string(m["content"]); got != canon(t, expected) {
				t.Errorf("%s %.40s… v%s:\n got %s\nwant %s", c.evType, c.content, v.ID, got, canon(t, expected))
			}
			again, err := Redact(out, v)
			if err != nil || string(again) != string(out) {
				t.Errorf("%s v%s: redaction not idempotent: %s", c.evType, v.ID, again)
			}
		}
	}
}

func TestRedactErrors(t *testing.T) {
	v := version(t, "11")
	for _, in := range []string{`[]`, `{"type":1,"content":{}}`, `{"type":"x","content":[]}`, `{"a":1,"a":2}`, `{`} {
		if out, err := Redact([]byte(in), v); err == nil {
			t.Errorf("Redact(%s) = %s", in, out)
		}
	}
	// Strict versions refuse floats; earlier ones keep them as written.
	in := `{"type":"m.room.power_levels","content":{"ban":50.5}}`
	if _, err := Redact([]byte(in), v); err == nil {
		t.Error("v11 redaction accepted a float")
	}
	out, err := Redact([]byte(in), version(t, "5"))
	if err != nil || string(out) != `{"content":{"ban":50.5},"type":"m.room.power_levels"}` {
		t.Errorf("v5: %s, %v", out, err)
	}
}
