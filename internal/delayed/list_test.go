package delayed

import (
	"net/url"
	"strings"
	"testing"

	"luxchat/internal/matrix/errcode"
)

// FuzzParseListQuery: any query is parsed or refused with
// M_INVALID_PARAM, never a panic, and what is accepted is within range.
func FuzzParseListQuery(f *testing.F) {
	for _, s := range []string{"", "dir=b", "org.matrix.msc4486.dir=f&dir=b", "from_ts=0&to_ts=99", "to_ts=-1", "status=finalised",
		"status=finalised&type=x", "room_id=%21a:b&type=m.room.topic&status=sent", "from=12_3", "org.matrix.msc4486.status=error",
		"from_ts=9223372036854775808", "room_id=!", "type=", "dir=&dir=b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		lq, err := ParseListQuery(q)
		if err != nil {
			if e, ok := errcode.As(err); !ok || e.Code != "M_INVALID_PARAM" || e.Status != 400 {
				t.Fatalf("%q: %v", raw, err)
			}
			return
		}
		if lq.FromTS != nil && *lq.FromTS < 0 || lq.ToTS != nil && *lq.ToTS < 0 {
			t.Fatalf("%q: negative bound", raw)
		}
		if lq.RoomID != "" && !strings.HasPrefix(lq.RoomID, "!") || len(lq.Type) > 255 {
			t.Fatalf("%q: accepted %+v", raw, lq)
		}
		if lq.From != "" && !lq.Finalised {
			if _, err := parseToken(lq.From); err != nil {
				if e, ok := errcode.As(err); !ok || e.Code != "M_INVALID_PARAM" {
					t.Fatalf("%q: token error %v", raw, err)
				}
			}
		}
	})
}
