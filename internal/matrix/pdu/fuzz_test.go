package pdu

import (
	"bytes"
	"testing"

	"luxchat/internal/matrix/roomversion"
)

func FuzzParse(f *testing.F) {
	k := specKey(f)
	for _, v := range roomversion.All() {
		for _, ev := range buildRoom(f, v, k) {
			f.Add(ev.JSON(), versionIndex(v))
		}
	}
	f.Add([]byte(`{"type":"x"}`), uint8(0))
	all := roomversion.All()
	f.Fuzz(func(t *testing.T, raw []byte, vi uint8) {
		v := all[int(vi)%len(all)]
		ev, err := Parse(raw, v)
		if err != nil {
			return
		}
		again, err := Parse(ev.JSON(), v)
		if err != nil {
			t.Fatalf("v%s: re-parse of %s: %v", v.ID, ev.JSON(), err)
		}
		if again.ID != ev.ID || !bytes.Equal(again.JSON(), ev.JSON()) {
			t.Fatalf("v%s: re-parse changed %s (%s) into %s (%s)", v.ID, ev.JSON(), ev.ID, again.JSON(), again.ID)
		}
		if len(ev.JSON()) > MaxSize {
			t.Fatalf("v%s: accepted %d bytes", v.ID, len(ev.JSON()))
		}
		red, err := RedactEvent(ev)
		if err != nil || red.ID != ev.ID {
			t.Fatalf("v%s: RedactEvent(%s): %v", v.ID, ev.JSON(), err)
		}
		_ = VerifyHashes(ev)
		_ = ev.Signatures()
		_ = RoomIDForCreate(ev)
	})
}

func versionIndex(v *roomversion.Version) uint8 {
	for i, w := range roomversion.All() {
		if w == v {
			return uint8(i)
		}
	}
	return 0
}
