package rtc

import (
	"crypto/sha256"
	"encoding/base64"
	"testing"
)

// The LiveKit room and identity pseudonyms are the hashes of the JSON
// texts lk-jwt-service hashes, escaping included: a client or another
// token service of the same SFU must land in the same room.
func TestHashOfMatchesLkJWTServiceText(t *testing.T) {
	for _, c := range []struct {
		parts []string
		text  string
	}{
		{[]string{"!room:police.test", "m.call#ROOM"}, `["!room:police.test","m.call#ROOM"]`},
		{[]string{"@a<b>:x.test", "DEV&1", "m\u2028"}, `["@a\u003cb\u003e:x.test","DEV\u00261","m\u2028"]`},
		{[]string{`q"uote\`, ""}, `["q\"uote\\",""]`},
	} {
		sum := sha256.Sum256([]byte(c.text))
		if got, want := hashOf(c.parts...), base64.RawStdEncoding.EncodeToString(sum[:]); got != want {
			t.Errorf("hashOf(%q) = %s, want the hash of %s (%s)", c.parts, got, c.text, want)
		}
	}
	if RoomName("!r:x", "m.call#ROOM") == RoomName("!r:x", "m.call#other") {
		t.Error("two slots share a LiveKit room")
	}
}
