package rooms

import (
	"encoding/json"
	"testing"
)

// The client format copied from a stored PDU is byte for byte the one
// decoding and encoding gives, and what it does not handle it declines.
func TestFastClientJSONMatchesDecoded(t *testing.T) {
	unsigned := map[string]json.RawMessage{"age": json.RawMessage("5")}
	for _, pdu := range []string{
		`{"auth_events":["$a","$b"],"content":{"body":"hi <b>&</b> \u2028 é \"q\" \\ {[","msgtype":"m.text","nested":{"a":[1,{"b":"}"}]}},"depth":3,"hashes":{"sha256":"x"},"origin_server_ts":1700000000000,"prev_events":["$p"],"room_id":"!r:x","sender":"@a:x","signatures":{"x":{"ed25519:1":"s"}},"type":"m.room.message"}`,
		`{"content":{"displayname":"Zoë","membership":"join"},"origin_server_ts":1,"sender":"@a:x","state_key":"@a:x","type":"m.room.member"}`,
		`{"content":{},"origin_server_ts":0,"sender":"@a:x","state_key":"","type":"m.room.create"}`,
		`{"origin_server_ts":5,"sender":"@a:x","type":"m.room.message"}`,
		`{"content":{"a":true,"b":null,"c":-1.5e3},"origin_server_ts":-5,"sender":"@a\u0000:x","type":"t"}`,
	} {
		for _, roomID := range []string{"", "!r<>:x"} {
			for _, u := range []map[string]json.RawMessage{nil, unsigned} {
				fast, ok := fastClientJSON([]byte(pdu), "$ev&1", roomID, u)
				if !ok {
					t.Fatalf("declined %s", pdu)
				}
				if slow := decodedClientJSON([]byte(pdu), "$ev&1", roomID, u); string(fast) != string(slow) {
					t.Fatalf("%s:\n got %s\nwant %s", pdu, fast, slow)
				}
			}
		}
	}
	for _, pdu := range []string{
		`{"content":{"reason":"x"},"origin_server_ts":1,"redacts":"$x","sender":"@a:x","type":"m.room.redaction"}`,
		`{"content":{"redacts":"$x"},"origin_server_ts":1,"sender":"@a:x","type":"m.room.redaction"}`,
		`{"content":"x","origin_server_ts":1,"sender":"@a:x","type":"t"}`,
		`{"content":{},"origin_server_ts":1.5,"sender":"@a:x","type":"t"}`,
		`{"content":{},"origin_server_ts":1,"sender":"@a:x","type":"t"`,
		`{"content":{} ,"origin_server_ts":1,"sender":"@a:x","type":"t"}`,
		`not json`,
	} {
		if out, ok := fastClientJSON([]byte(pdu), "$e", "", nil); ok {
			t.Fatalf("took %s: %s", pdu, out)
		}
	}
}

// membershipOfBase reads a member event's membership from its client base
// as decoding the event would.
func TestMembershipOfBase(t *testing.T) {
	for _, tc := range []struct{ base, want string }{
		{`{"content":{"displayname":"A","membership":"join"},"event_id":"$a","origin_server_ts":1,"sender":"@a:x","state_key":"@a:x","type":"m.room.member"`, "join"},
		{`{"content":{"membership":"leave","reason":"bye"},"event_id":"$a","origin_server_ts":1,"sender":"@a:x","state_key":"@b:x","type":"m.room.member"`, "leave"},
		{`{"content":{"membership":"jo\u0069n"},"event_id":"$a","origin_server_ts":1,"sender":"@a:x","state_key":"@a:x","type":"m.room.member"`, "join"},
		{`{"content":{"displayname":"no membership"},"event_id":"$a","origin_server_ts":1,"sender":"@a:x","state_key":"@a:x","type":"m.room.member"`, ""},
		{`{"content":{"membership":5},"event_id":"$a","origin_server_ts":1,"sender":"@a:x","state_key":"@a:x","type":"m.room.member"`, ""},
	} {
		if got := membershipOfBase([]byte(tc.base)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.base, got, tc.want)
		}
	}
}
