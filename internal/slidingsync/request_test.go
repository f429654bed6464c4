package slidingsync

import (
	"testing"

	"luxchat/internal/matrix/errcode"
)

// FuzzDecodeRequest: whatever the body, the decoder answers a request or
// a client error (M_BAD_JSON, M_INVALID_PARAM), never a panic or a
// server error, and a request it accepts stays within the bounds.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{}`, `[`, `null`, `{"lists":{"a":{"ranges":[[0,19]],"timeline_limit":1,"required_state":[["*","*"],["m.room.member","$LAZY"]]}}}`,
		`{"lists":{"a":{"range":[0,9],"required_state":{"include":[{}],"exclude":[{"type":"m.room.create"}],"lazy_members":true},"filters":{"is_dm":true,"room_types":[null,"m.space"],"is_invited":false}}}}`,
		`{"room_subscriptions":{"!a:b":{"timeline_limit":20}},"unsubscribe_rooms":["!c:d"]}`,
		`{"extensions":{"to_device":{"enabled":true,"since":"12","limit":5},"e2ee":{"enabled":true},"receipts":{"enabled":true,"lists":["a"],"rooms":["*"]}}}`,
		`{"conn_id":"x","txn_id":"y","pos":"p_1","timeout":30000,"set_presence":"offline"}`,
		`{"lists":{"a":{"ranges":[[0,1e30]]}}}`, `{"lists":{"a":{"timeline_limit":1.5}}}`,
	} {
		f.Add(seed, "", "")
	}
	f.Add(`{}`, "abc_1", "-5")
	f.Fuzz(func(t *testing.T, body, pos, timeout string) {
		req, err := DecodeRequest([]byte(body), pos, timeout)
		if err != nil {
			e, ok := errcode.As(err)
			if !ok || e.Status < 400 || e.Status >= 500 {
				t.Fatalf("%q: error %v is not a client error", body, err)
			}
			return
		}
		if req.Timeout < 0 || req.Timeout > maxTimeout || len(req.Lists) > maxLists || len(req.Subscribe) > maxSubscriptions {
			t.Fatalf("%q: out of bounds: %+v", body, req)
		}
		for _, l := range req.Lists {
			if l.Room.TimelineLimit < 0 || l.Room.TimelineLimit > maxTimelineLimit {
				t.Fatalf("timeline_limit %d", l.Room.TimelineLimit)
			}
			for _, r := range l.Ranges {
				if r[0] < 0 || r[1] < r[0] || r[1] > maxRangeIndex {
					t.Fatalf("range %v", r)
				}
			}
		}
	})
}

// TestRequiredStateMatches holds the matching rules: a named type rules
// its own entries, "*" the types no entry names, $ME is the user, and
// exclusions win.
func TestRequiredStateMatches(t *testing.T) {
	const me = "@me:x"
	rs := RequiredState{Include: []StatePair{{"*", "*"}, {"m.room.member", "$ME"}}}
	for _, c := range []struct {
		typ, key string
		want     bool
	}{
		{"m.room.name", "", true}, {"m.room.member", me, true}, {"m.room.member", "@other:x", false},
	} {
		if got := rs.matches(c.typ, c.key, me); got != c.want {
			t.Errorf("%s/%s: %v, want %v", c.typ, c.key, got, c.want)
		}
	}
	ex := RequiredState{Include: []StatePair{{"*", "*"}}, Exclude: []StatePair{{"m.room.create", "*"}}}
	if ex.matches("m.room.create", "", me) || !ex.matches("m.room.topic", "", me) {
		t.Error("exclude")
	}
}
