package pdu

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unsafe"

	"luxchat/internal/matrix/roomversion"
)

// baseEvent is a well-formed (unsigned, unhashed) PDU for version v.
func baseEvent(v *roomversion.Version) map[string]any {
	ev := map[string]any{
		"type":             "m.room.message",
		"sender":           "@a:example.org",
		"room_id":          roomIDFor(v),
		"content":          map[string]any{"body": "x"},
		"depth":            3,
		"origin_server_ts": 1,
		"hashes":           map[string]any{"sha256": "abc"},
		"signatures":       map[string]any{"example.org": map[string]any{"ed25519:1": "sig"}},
		"prev_events":      refs(v, 1),
		"auth_events":      refs(v, 1),
	}
	if v.EventFormat == roomversion.FormatV1 {
		ev["event_id"] = "$base:example.org"
	}
	return ev
}

func refs(v *roomversion.Version, n int) []any {
	out := []any{}
	for i := 0; i < n; i++ {
		if v.EventFormat == roomversion.FormatV1 {
			out = append(out, []any{eventIDFor(v, i), map[string]any{"sha256": "h"}})
		} else {
			out = append(out, eventIDFor(v, i%8))
		}
	}
	return out
}

func createWithoutRoomID(m map[string]any, _ *roomversion.Version) {
	m["type"], m["state_key"] = "m.room.create", ""
	delete(m, "room_id")
}

func marshal(t testing.TB, m map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseTable(t *testing.T) {
	all := func(*roomversion.Version) bool { return true }
	fmtV1 := func(v *roomversion.Version) bool { return v.EventFormat == roomversion.FormatV1 }
	fmtV2 := func(v *roomversion.Version) bool { return v.EventFormat == roomversion.FormatV2 }
	lenient := func(v *roomversion.Version) bool { return !v.StrictCanonicalJSON }
	strict := func(v *roomversion.Version) bool { return v.StrictCanonicalJSON }
	v12 := func(v *roomversion.Version) bool { return v.RoomIDFromCreate }
	beforeV12 := func(v *roomversion.Version) bool { return !v.RoomIDFromCreate }
	byteLimits := func(v *roomversion.Version) bool { return v.ByteKeyLimits }
	set := func(k string, val any) func(map[string]any, *roomversion.Version) {
		return func(m map[string]any, _ *roomversion.Version) { m[k] = val }
	}
	del := func(k string) func(map[string]any, *roomversion.Version) {
		return func(m map[string]any, _ *roomversion.Version) { delete(m, k) }
	}
	userOfLen := func(n int) string { return "@" + strings.Repeat("u", n-len("@:example.org")) + ":example.org" }
	cases := []struct {
		name   string
		when   func(*roomversion.Version) bool
		mutate func(map[string]any, *roomversion.Version)
		ok     bool
	}{
		{"base", all, func(map[string]any, *roomversion.Version) {}, true},
		{"state event", all, set("state_key", ""), true},
		{"no prev or auth events", all, func(m map[string]any, _ *roomversion.Version) { m["prev_events"], m["auth_events"] = []any{}, []any{} }, true},
		{"historical sender", all, set("sender", "@Ünïcode user:example.org"), true},
		{"empty localpart sender", all, set("sender", "@:example.org"), true},
		{"extra keys", all, set("origin", 5), true},

		{"missing type", all, del("type"), false},
		{"missing sender", all, del("sender"), false},
		{"missing content", all, del("content"), false},
		{"missing depth", all, del("depth"), false},
		{"missing origin_server_ts", all, del("origin_server_ts"), false},
		{"missing hashes", all, del("hashes"), false},
		{"missing signatures", all, del("signatures"), false},
		{"missing prev_events", all, del("prev_events"), false},
		{"missing auth_events", all, del("auth_events"), false},
		{"missing room_id", all, del("room_id"), false},
		{"missing event_id", fmtV1, del("event_id"), false},

		{"type not string", all, set("type", 1), false},
		{"type null", all, set("type", nil), false},
		{"sender not a user id", all, set("sender", "alice"), false},
		{"sender bad server", all, set("sender", "@a:bad host"), false},
		{"content array", all, set("content", []any{}), false},
		{"content string", all, set("content", "x"), false},
		{"depth string", all, set("depth", "3"), false},
		{"depth negative", all, set("depth", -1), false},
		{"depth float", all, set("depth", 1.5), false},
		{"depth zero", all, set("depth", 0), true},
		{"ts string", all, set("origin_server_ts", "1"), false},
		{"ts float", lenient, set("origin_server_ts", 1.5), false},
		{"hashes array", all, set("hashes", []any{}), false},
		{"hashes without sha256", all, set("hashes", map[string]any{}), false},
		{"hashes sha256 number", all, set("hashes", map[string]any{"sha256": 1}), false},
		{"signatures array", all, set("signatures", []any{}), false},
		{"signatures server not object", all, set("signatures", map[string]any{"a": 1}), false},
		{"signature not string", all, set("signatures", map[string]any{"a": map[string]any{"k": 1}}), false},
		{"empty signatures", all, set("signatures", map[string]any{}), true},
		{"state_key number", all, set("state_key", 1), false},
		{"state_key null", all, set("state_key", nil), false},
		{"room_id number", all, set("room_id", 1), false},
		{"room_id not a room id", all, set("room_id", "#a:example.org"), false},
		{"prev_events object", all, set("prev_events", map[string]any{}), false},
		{"auth_events null", all, set("auth_events", nil), false},

		{"type 255 bytes", all, set("type", strings.Repeat("t", 255)), true},
		{"type 256 bytes", all, set("type", strings.Repeat("t", 256)), false},
		{"state_key 255 bytes", all, set("state_key", strings.Repeat("é", 127)+"s"), true},
		{"state_key 256 bytes", byteLimits, set("state_key", strings.Repeat("é", 128)), false},
		{"sender 255 bytes", all, set("sender", userOfLen(255)), true},
		{"sender 256 bytes", all, set("sender", userOfLen(256)), false},
		{"room_id 255 bytes", beforeV12, set("room_id", "!"+strings.Repeat("r", 255-len("!:example.org"))+":example.org"), true},
		{"room_id 256 bytes", beforeV12, set("room_id", "!"+strings.Repeat("r", 256-len("!:example.org"))+":example.org"), false},
		{"20 prev_events", all, func(m map[string]any, v *roomversion.Version) { m["prev_events"] = refs(v, 20) }, true},
		{"21 prev_events", all, func(m map[string]any, v *roomversion.Version) { m["prev_events"] = refs(v, 21) }, false},
		{"10 auth_events", all, func(m map[string]any, v *roomversion.Version) { m["auth_events"] = refs(v, 10) }, true},
		{"11 auth_events", all, func(m map[string]any, v *roomversion.Version) { m["auth_events"] = refs(v, 11) }, false},

		{"v1 refs as plain ids", fmtV1, set("prev_events", []any{"$a:example.org"}), false},
		{"v1 ref pair of three", fmtV1, set("prev_events", []any{[]any{"$a:example.org", map[string]any{}, 1}}), false},
		{"v1 ref hash not object", fmtV1, set("auth_events", []any{[]any{"$a:example.org", "h"}}), false},
		{"v1 ref id not string", fmtV1, set("auth_events", []any{[]any{1, map[string]any{}}}), false},
		{"v1 ref without server", fmtV1, set("prev_events", []any{[]any{"$abc", map[string]any{}}}), false},
		{"v1 event_id without server", fmtV1, set("event_id", "$abc"), false},
		{"v1 event_id number", fmtV1, set("event_id", 1), false},
		{"v3+ refs as pairs", fmtV2, set("prev_events", []any{[]any{"$a", map[string]any{}}}), false},
		{"v3+ ref with server", fmtV2, set("prev_events", []any{"$a:example.org"}), false},
		{"v3+ ref too short", fmtV2, set("auth_events", []any{"$abc"}), false},
		{"v3+ ref not string", fmtV2, set("auth_events", []any{1}), false},
		{"v3 ref in URL alphabet", func(v *roomversion.Version) bool { return v.ID == "3" }, set("prev_events", []any{"$" + strings.Repeat("-", 43)}), false},
		{"v4+ ref in standard alphabet", func(v *roomversion.Version) bool { return v.EventIDs == roomversion.EventIDURLBase64 }, set("prev_events", []any{"$" + strings.Repeat("+", 43)}), false},

		{"v12 room_id with server", v12, set("room_id", "!room:example.org"), false},
		{"v12 room_id too short", v12, set("room_id", "!abc"), false},
		{"v1-11 room_id without server", beforeV12, set("room_id", "!"+strings.Repeat("A", 43)), false},
		{"create without room_id", beforeV12, createWithoutRoomID, false},
		{"create without room_id", v12, createWithoutRoomID, true},
		{"non-state create without room_id", v12, func(m map[string]any, _ *roomversion.Version) {
			m["type"] = "m.room.create"
			delete(m, "room_id")
		}, false},

		{"depth 2^53-1", all, set("depth", int64(1<<53-1)), true},
		{"depth 2^53", lenient, set("depth", int64(1<<53)), true},
		{"depth 2^53", strict, set("depth", int64(1<<53)), false},
		{"depth 2^63-1", lenient, set("depth", json.Number("9223372036854775807")), true},
		{"depth 2^63", lenient, set("depth", json.Number("9223372036854775808")), false},
		{"float in content", lenient, set("content", map[string]any{"pl": 50.57}), true},
		{"float in content", strict, set("content", map[string]any{"pl": 50.57}), false},
		{"big int in content", lenient, set("content", map[string]any{"n": json.Number("9007199254740993")}), true},
		{"big int in content", strict, set("content", map[string]any{"n": json.Number("9007199254740993")}), false},

		{"redaction with top-level redacts", func(v *roomversion.Version) bool { return !v.RedactsInContent }, func(m map[string]any, v *roomversion.Version) {
			m["type"], m["redacts"] = "m.room.redaction", 5
		}, false},
		{"redaction with content redacts", func(v *roomversion.Version) bool { return v.RedactsInContent }, func(m map[string]any, v *roomversion.Version) {
			m["type"], m["content"] = "m.room.redaction", map[string]any{"redacts": []any{}}
		}, false},
		{"redaction without redacts", all, set("type", "m.room.redaction"), true},
		{"too large", all, set("content", map[string]any{"body": strings.Repeat("x", MaxSize)}), false},
		{"large unsigned is not counted", all, set("unsigned", map[string]any{"body": strings.Repeat("x", MaxSize)}), true},
	}
	for _, c := range cases {
		for _, v := range roomversion.All() {
			if !c.when(v) {
				continue
			}
			m := baseEvent(v)
			c.mutate(m, v)
			ev, err := Parse(marshal(t, m), v)
			if (err == nil) != c.ok {
				t.Errorf("%s v%s: err = %v, want ok=%v", c.name, v.ID, err, c.ok)
				continue
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Errorf("%s v%s: error %v does not wrap ErrInvalid", c.name, v.ID, err)
			}
			if ev != nil && len(ev.JSON()) > MaxSize {
				t.Errorf("%s v%s: accepted %d bytes", c.name, v.ID, len(ev.JSON()))
			}
		}
	}
}

func TestParseFields(t *testing.T) {
	for _, v := range roomversion.All() {
		m := baseEvent(v)
		m["state_key"] = "@a:example.org"
		m["unsigned"] = map[string]any{"age": 5}
		ev, err := Parse(marshal(t, m), v)
		if err != nil {
			t.Fatalf("v%s: %v", v.ID, err)
		}
		if ev.Type != "m.room.message" || ev.Sender != "@a:example.org" || ev.RoomID != roomIDFor(v) ||
			!ev.StateKeyIs("@a:example.org") || string(ev.Content) != `{"body":"x"}` || ev.Depth != 3 ||
			ev.OriginServerTS != 1 || len(ev.PrevEvents) != 1 || ev.PrevEvents[0] != eventIDFor(v, 0) ||
			len(ev.AuthEvents) != 1 || ev.Version != v {
			t.Errorf("v%s: fields %+v", v.ID, ev)
		}
		if strings.Contains(string(ev.JSON()), "unsigned") {
			t.Errorf("v%s: unsigned kept", v.ID)
		}
		if v.EventFormat == roomversion.FormatV1 {
			if ev.ID != "$base:example.org" {
				t.Errorf("v%s: id %s", v.ID, ev.ID)
			}
		} else if checkEventID(ev.ID, v) != nil {
			t.Errorf("v%s: computed id %s has the wrong format", v.ID, ev.ID)
		}
		// unsigned and, from v3 on, event_id do not change the event.
		delete(m, "unsigned")
		if v.EventFormat != roomversion.FormatV1 {
			m["event_id"] = "$whatever:example.org"
		}
		again, err := Parse(marshal(t, m), v)
		if err != nil || again.ID != ev.ID || string(again.JSON()) != string(ev.JSON()) {
			t.Errorf("v%s: unsigned/event_id changed the event: %v", v.ID, err)
		}
	}
}

func TestParseRedacts(t *testing.T) {
	for _, v := range roomversion.All() {
		target := eventIDFor(v, 3)
		m := baseEvent(v)
		m["type"] = "m.room.redaction"
		m["redacts"] = "$top:example.org"
		m["content"] = map[string]any{"redacts": target}
		ev, err := Parse(marshal(t, m), v)
		if err != nil {
			t.Fatalf("v%s: %v", v.ID, err)
		}
		want := "$top:example.org"
		if v.RedactsInContent {
			want = target
		}
		if ev.Redacts != want {
			t.Errorf("v%s: Redacts = %q, want %q", v.ID, ev.Redacts, want)
		}
		// Other event types never redact anything.
		m["type"] = "m.room.message"
		if ev, _ := Parse(marshal(t, m), v); ev.Redacts != "" {
			t.Errorf("v%s: message has Redacts %q", v.ID, ev.Redacts)
		}
	}
}

func TestParseRawInput(t *testing.T) {
	v := version(t, "10")
	good := string(marshal(t, baseEvent(v)))
	for _, in := range []string{
		``, `null`, `[]`, `"x"`, good[:len(good)-1],
		strings.Replace(good, `"depth":3`, `"depth":3,"depth":4`, 1),
		strings.Replace(good, `"body":"x"`, "\"body\":\"\xff\"", 1),
	} {
		if _, err := Parse([]byte(in), v); err == nil {
			t.Errorf("Parse(%.60q) accepted", in)
		}
	}
	if _, err := Parse([]byte(good), nil); err == nil {
		t.Error("Parse without a room version accepted")
	}
	// Whitespace and key order do not matter.
	spaced := strings.ReplaceAll(good, ",", " ,\n ")
	a, err1 := Parse([]byte(good), v)
	b, err2 := Parse([]byte(spaced), v)
	if err1 != nil || err2 != nil || a.ID != b.ID {
		t.Errorf("whitespace changed the event: %v %v", err1, err2)
	}
}

func TestRoomIDForCreate(t *testing.T) {
	for _, v := range roomversion.All() {
		m := baseEvent(v)
		m["type"], m["state_key"], m["prev_events"], m["auth_events"] = "m.room.create", "", []any{}, []any{}
		if v.RoomIDFromCreate {
			delete(m, "room_id")
		}
		ev, err := Parse(marshal(t, m), v)
		if err != nil {
			t.Fatalf("v%s: %v", v.ID, err)
		}
		got := RoomIDForCreate(ev)
		if v.RoomIDFromCreate {
			if ev.RoomID != "" || got != "!"+ev.ID[1:] {
				t.Errorf("v%s: RoomID %q, RoomIDForCreate %q, id %q", v.ID, ev.RoomID, got, ev.ID)
			}
		} else if got != ev.RoomID {
			t.Errorf("v%s: RoomIDForCreate %q, RoomID %q", v.ID, got, ev.RoomID)
		}
	}
}

// The 255 limit on state_key and type counts code points before room
// version 11 (events of up to 255 code points exist in such rooms) and
// bytes from version 11.
func TestParseKeyLimits(t *testing.T) {
	wide := strings.Repeat("💥", 70) // 280 bytes, 70 code points
	long := strings.Repeat("a", 256)
	for _, v := range roomversion.All() {
		for _, key := range []string{"state_key", "type"} {
			m := baseEvent(v)
			m["state_key"] = ""
			m[key] = wide
			_, err := Parse(marshal(t, m), v)
			if v.ByteKeyLimits != (err != nil) {
				t.Errorf("v%s: %s of 280 bytes in 70 code points: %v", v.ID, key, err)
			}
			m[key] = long
			if _, err := Parse(marshal(t, m), v); err == nil {
				t.Errorf("v%s: %s of 256 code points accepted", v.ID, key)
			}
		}
	}
}

// Events parsed apart share their recurring strings and keep their content
// within their JSON: a room's cached state holds each once.
func TestParseSharesMemory(t *testing.T) {
	for _, v := range roomversion.All() {
		var evs []*Event
		for _, body := range []string{"x", "y"} {
			m := baseEvent(v)
			m["state_key"] = "@a:example.org"
			m["content"] = map[string]any{"body": body}
			ev, err := Parse(marshal(t, m), v)
			if err != nil {
				t.Fatalf("v%s: %v", v.ID, err)
			}
			evs = append(evs, ev)
		}
		a, b := evs[0], evs[1]
		same := func(x, y string) bool { return unsafe.StringData(x) == unsafe.StringData(y) }
		if !same(a.RoomID, b.RoomID) || !same(a.Sender, b.Sender) || !same(a.Type, b.Type) || !same(a.AuthEvents[0], b.AuthEvents[0]) {
			t.Errorf("v%s: strings not shared", v.ID)
		}
		if !same(*a.StateKey, a.Sender) {
			t.Errorf("v%s: state key equal to the sender is a second string", v.ID)
		}
		raw := a.JSON()
		at := bytes.Index(raw, a.Content)
		if string(a.Content) != `{"body":"x"}` || at < 0 || &raw[at] != &a.Content[0] {
			t.Errorf("v%s: content %s is a copy, not within the event's JSON", v.ID, a.Content)
		}
	}
}
