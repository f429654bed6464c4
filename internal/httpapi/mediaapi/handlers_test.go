package mediaapi

import "testing"

func TestParseRange(t *testing.T) {
	for _, c := range []struct {
		h           string
		off, n      int64
		ok, unsatis bool
	}{
		{"bytes=0-99", 0, 100, true, false},
		{"bytes=990-2000", 990, 10, true, false},
		{"bytes=500-", 500, 500, true, false},
		{"bytes=-10", 990, 10, true, false},
		{"bytes=-5000", 0, 1000, true, false},
		{"bytes=1000-", 0, 0, false, true},
		{"bytes=-0", 0, 0, false, true},
		{"bytes=5-1", 0, 0, false, false},
		{"bytes=0-1,3-4", 0, 0, false, false},
		{"bytes=a-b", 0, 0, false, false},
		{"bytes=-", 0, 0, false, false},
		{"bytes=99999999999999999999-", 0, 0, false, false},
		{"lines=0-1", 0, 0, false, false},
	} {
		off, n, ok, unsatis := parseRange(c.h, 1000)
		if off != c.off || n != c.n || ok != c.ok || unsatis != c.unsatis {
			t.Errorf("%q: %d %d %v %v", c.h, off, n, ok, unsatis)
		}
	}
}

func TestContentDisposition(t *testing.T) {
	for _, c := range []struct{ ct, name, want string }{
		{"image/png", "a.png", `inline; filename="a.png"`},
		{"IMAGE/PNG; charset=x", "", "inline"},
		{"image/svg+xml", "a.svg", `attachment; filename="a.svg"`},
		{"text/html", `x"y\z.html`, `attachment; filename="x\"y\\z.html"`},
		{"application/pdf", "é.pdf", `attachment; filename="_.pdf"; filename*=utf-8''%C3%A9.pdf`},
		{"text/plain", "a\r\nSet-Cookie: x", `inline; filename="aSet-Cookie: x"`},
	} {
		if got := contentDisposition(c.ct, c.name); got != c.want {
			t.Errorf("%q %q: %s, want %s", c.ct, c.name, got, c.want)
		}
	}
}
