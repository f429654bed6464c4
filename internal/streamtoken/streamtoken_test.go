package streamtoken

import "testing"

func TestRoundTrip(t *testing.T) {
	tok := Token{Events: 12, AccountData: 3, Receipts: 4, Presence: 5, Typing: 6, ToDevice: 7, DeviceLists: 8}
	got, err := Parse(tok.String())
	if err != nil || got != tok {
		t.Fatalf("%v %v", got, err)
	}
	if p, err := EventsPos("t42"); err != nil || p != 42 {
		t.Fatal(p, err)
	}
	if p, err := EventsPos(tok.String()); err != nil || p != 12 {
		t.Fatal(p, err)
	}
	if old, err := Parse("s5_6"); err != nil || old != (Token{Events: 5, AccountData: 6}) {
		t.Fatalf("a token with fewer fields: %v %v", old, err)
	}
	for _, bad := range []string{"", "s", "x1", "s1_2_3_4_5_6_7_8", "s-1", "s01", "sa_b", "t-3", "tx", "s1_", "s1__2", "s_1"} {
		if _, err := EventsPos(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestNoAllocations: every woken long poll parses its since token and
// renders the next one.
func TestNoAllocations(t *testing.T) {
	tok := Token{Events: 123456, AccountData: 3, Receipts: 4, Presence: 5, Typing: 6, ToDevice: 7, DeviceLists: 8}
	s := tok.String()
	if n := testing.AllocsPerRun(100, func() { _, _ = Parse(s) }); n != 0 {
		t.Errorf("Parse: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = tok.String() }); n > 1 {
		t.Errorf("String: %v allocations", n)
	}
}

func FuzzParse(f *testing.F) {
	f.Add("s1_2_3_4_5_6_7")
	f.Add("t9")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err != nil {
			return
		}
		again, err := Parse(tok.String())
		if err != nil || again != tok {
			t.Fatalf("%q -> %q does not round-trip", s, tok.String())
		}
	})
}
