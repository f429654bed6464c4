package config

import (
	"strings"
	"testing"
)

func TestServerNoticesLocalpart(t *testing.T) {
	c, err := Parse([]byte("server_notices: {localpart: ops, display_name: Ops}\n"))
	if err != nil || c.ServerNotices.Localpart != "ops" || c.ServerNotices.DisplayName != "Ops" {
		t.Fatalf("%+v %v", c, err)
	}
	for _, bad := range []string{`""`, "Alerts", "a:b", "'a b'", strings.Repeat("a", 65)} {
		if _, err := Parse([]byte("server_notices: {localpart: " + bad + "}\n")); err == nil || !strings.Contains(err.Error(), "server_notices.localpart") {
			t.Errorf("localpart %s: %v", bad, err)
		}
	}
}
