package rooms

import (
	"encoding/json"
	"testing"
)

func TestServerACL(t *testing.T) {
	acl := json.RawMessage(`{"allow":["*.gouv.test","police.test"],"deny":["bad.gouv.test"],"allow_ip_literals":false}`)
	for server, want := range map[string]bool{
		"police.test":          true,
		"police.test:8448":     true,
		"a.gouv.test":          true,
		"bad.gouv.test":        false,
		"evil.test":            false,
		"1.2.3.4":              false,
		"[::1]:8448":           false,
		"gouv.test":            false,
		"policeXtest":          false,
		"x.y.gouv.test:1":      true,
		"bad.gouv.test:8448":   false,
		"police.test.evil.com": false,
	} {
		if got := aclAllows(acl, server); got != want {
			t.Errorf("%s: %v, want %v", server, got, want)
		}
	}
	if !aclAllows(json.RawMessage(`{"allow":["*"]}`), "1.2.3.4") {
		t.Error("IP literals are allowed by default")
	}
	if aclAllows(json.RawMessage(`{}`), "a.test") {
		t.Error("an empty allow list allows nobody")
	}
	if !globMatch("po?ice.*", "police.test") || globMatch("po?ice", "poice") {
		t.Error("glob ?")
	}
}
