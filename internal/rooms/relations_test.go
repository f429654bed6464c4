package rooms

import (
	"encoding/json"
	"testing"
)

func TestParseRelation(t *testing.T) {
	for _, tc := range []struct {
		content string
		want    *relatesTo
	}{
		{`{"body":"hi"}`, nil},
		{`{"m.relates_to":{"m.in_reply_to":{"event_id":"$a"}}}`, nil}, // rich reply: no rel_type
		{`{"m.relates_to":{"rel_type":"m.replace"}}`, nil},
		{`{"m.relates_to":{"rel_type":7,"event_id":"$a"}}`, nil},
		{`{"m.relates_to":"nonsense"}`, nil},
		{`{"m.relates_to":{"rel_type":"m.thread","event_id":"$a"}}`, &relatesTo{RelType: "m.thread", EventID: "$a"}},
		{`{"m.relates_to":{"rel_type":"m.annotation","event_id":"$a","key":"👍"}}`, &relatesTo{RelType: "m.annotation", EventID: "$a", Key: json.RawMessage(`"👍"`)}},
	} {
		got := parseRelation([]byte(tc.content))
		if (got == nil) != (tc.want == nil) || (got != nil && (got.RelType != tc.want.RelType || got.EventID != tc.want.EventID || string(got.Key) != string(tc.want.Key))) {
			t.Errorf("%s: got %+v, want %+v", tc.content, got, tc.want)
		}
	}
}

func TestHasObject(t *testing.T) {
	for content, want := range map[string]bool{
		`{"m.new_content":{"body":"x"}}`: true,
		`{"m.new_content": {}}`:          true,
		`{"m.new_content":"x"}`:          false,
		`{"m.new_content":null}`:         false,
		`{"body":"x"}`:                   false,
		`not json`:                       false,
	} {
		if got := hasObject([]byte(content), "m.new_content"); got != want {
			t.Errorf("%s: %v, want %v", content, got, want)
		}
	}
}
