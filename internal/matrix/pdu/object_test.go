package pdu

import (
	"bytes"
	"encoding/json"
	"testing"

	"luxchat/internal/matrix/canonicaljson"
	"luxchat/internal/matrix/roomversion"
)

// The scan of canonical JSON splits objects as encoding/json does, the
// nested ones included.
func FuzzScanCanonical(f *testing.F) {
	k := specKey(f)
	for _, v := range roomversion.All() {
		for _, ev := range buildRoom(f, v, k) {
			f.Add(ev.JSON())
		}
	}
	for _, s := range []string{`{}`, `{"a":{}}`, `{"a":[],"b":""}`, `{"k\"ey":1}`, `{"a":"\"}\\","b":[{"c":"]"}],"d":-1.5e3,"e":null,"f":true}`, `{"é":"ü","x":{"y":{"z":[1,[2,{"w":false}]]}}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := canonicaljson.CanonicalizeLenient(raw)
		if err != nil || len(c) == 0 || c[0] != '{' {
			return
		}
		compareSplit(t, c)
	})
}

func compareSplit(t *testing.T, c []byte) {
	t.Helper()
	var want map[string]json.RawMessage
	if err := json.Unmarshal(c, &want); err != nil {
		t.Fatalf("%s: %v", c, err)
	}
	got, err := splitCanonical(c)
	if err != nil || len(got) != len(want) {
		t.Fatalf("%s: split into %v (%v), want %v", c, got, err, want)
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("%s: %q is %s, want %s", c, k, got[k], v)
		}
		if len(v) > 0 && v[0] == '{' {
			compareSplit(t, v)
		}
	}
}

// BenchmarkParseStored is the parse of each event a big room's state
// loads.
func BenchmarkParseStored(b *testing.B) {
	v, _ := roomversion.Get("10")
	evs := buildRoom(b, v, specKey(b))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev := evs[i%len(evs)]
		if _, err := ParseStored(ev.JSON(), v, ev.ID); err != nil {
			b.Fatal(err)
		}
	}
}
