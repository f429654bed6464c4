package canonicaljson

import (
	"encoding/json"
	"reflect"
	"testing"
)

// Vectors from the spec appendix "Canonical JSON".
func TestSpecExamples(t *testing.T) {
	cases := []struct{ in, want string }{
		{`{}`, `{}`},
		{`{"one": 1, "two": "Two"}`, `{"one":1,"two":"Two"}`},
		{`{"b": "2", "a": "1"}`, `{"a":"1","b":"2"}`},
		{`{"b":"2","a":"1"}`, `{"a":"1","b":"2"}`},
		{`{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {"display_name": "John Doe", "three_pids": [{"medium": "email", "address": "john.doe@example.org"}, {"medium": "msisdn", "address": "123456789"}]}}}`,
			`{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe","three_pids":[{"address":"john.doe@example.org","medium":"email"},{"address":"123456789","medium":"msisdn"}]},"success":true}}`},
		{`{"a": "日本語"}`, `{"a":"日本語"}`},
		{`{"本": 2, "日": 1}`, `{"日":1,"本":2}`},
		{`{"a": "\u65E5"}`, `{"a":"日"}`},
		{`{"a": null}`, `{"a":null}`},
		{`{"a": -0}`, `{"a":0}`},
		{`{"a": "\u0000\u001f\b\n\"\\\/"}`, `{"a":"\u0000\u001f\b\n\"\\/"}`},
		{`{"a": 1.0, "b": 1e2}`, `{"a":1,"b":100}`},
		{`{"a": "\ud83d\ude00"}`, `{"a":"😀"}`},
		{` [ 1 , [ ] , { } ] `, `[1,[],{}]`},
	}
	for _, c := range cases {
		got, err := Canonicalize([]byte(c.in))
		if err != nil {
			t.Errorf("Canonicalize(%s): %v", c.in, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("Canonicalize(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

func TestRejects(t *testing.T) {
	for _, in := range []string{
		``, `{`, `{"a":1,}`, `{"a":1}x`, `{"a":1,"a":2}`, `{"a":1.5}`,
		`{"a":9007199254740992}`, `{"a":-9007199254740992}`, `{"a":01}`,
		"{\"a\":\"\xff\"}", `{"a":"\ud800"}`, `{"a":"\x"}`, "{\"a\":\"\n\"}",
		`[tru]`, `{"a" 1}`, `nul`,
	} {
		if out, err := Canonicalize([]byte(in)); err == nil {
			t.Errorf("Canonicalize(%q) = %s, want error", in, out)
		}
	}
}

func TestLenientKeepsLargeNumbers(t *testing.T) {
	got, err := CanonicalizeLenient([]byte(`{"b":1.5,"a":9007199254740993}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != `{"a":9007199254740993,"b":1.5}` {
		t.Fatalf("got %s", got)
	}
}

func TestDepthLimit(t *testing.T) {
	deep := make([]byte, 0, 2*(MaxDepth+2))
	for range MaxDepth + 2 {
		deep = append(deep, '[')
	}
	for range MaxDepth + 2 {
		deep = append(deep, ']')
	}
	if _, err := Canonicalize(deep); err == nil {
		t.Fatal("expected depth error")
	}
}

func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,2,{"b":"\u00e9"}]}`, `{"b":"2","a":"1"}`, `"\ud83d\ude00"`, `-12`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Canonicalize(in)
		if err != nil {
			return
		}
		// The output is valid JSON, equal in meaning to the input, and a
		// fixed point of the transformation.
		if !json.Valid(out) {
			t.Fatalf("invalid output %q", out)
		}
		again, err := Canonicalize(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("not idempotent: %q -> %q (%v)", out, again, err)
		}
		var a, b any
		if json.Unmarshal(in, &a) != nil {
			t.Fatalf("accepted input that encoding/json rejects: %q", in)
		}
		_ = json.Unmarshal(out, &b)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("meaning changed: %q vs %q", in, out)
		}
	})
}
