package eventauth

import (
	"testing"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
)

// Cached levels are those of the events they were parsed from: another
// power levels event gets its own.
func TestCachedPowerLevels(t *testing.T) {
	v, _ := roomversion.Get("10")
	mk := func(content string) *pdu.Event {
		sk := ""
		return &pdu.Event{ID: "$" + content, Type: "m.room.power_levels", StateKey: &sk, Sender: "@a:x.test", Content: []byte(content), Version: v}
	}
	create := &pdu.Event{ID: "$c", Type: "m.room.create", Sender: "@a:x.test", Content: []byte(`{"creator":"@a:x.test"}`), Version: v}
	p1, p2 := mk(`{"users":{"@b:x.test":50}}`), mk(`{"users":{"@b:x.test":75}}`)
	for range 2 {
		if l := cachedPowerLevels(v, create, p1).UserLevel("@b:x.test"); l != 50 {
			t.Fatalf("level %v from the first event", l)
		}
		if l := cachedPowerLevels(v, create, p2).UserLevel("@b:x.test"); l != 75 {
			t.Fatalf("level %v from the second event", l)
		}
	}
	first := cachedPowerLevels(v, create, p1)
	if again := cachedPowerLevels(v, create, p1); again != first {
		t.Fatal("levels parsed again")
	}
}
