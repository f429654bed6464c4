package roomread

import (
	"testing"

	"luxchat/internal/store"
	"luxchat/internal/streamtoken"
)

// Every position next to an event gives a token /messages accepts: those
// outside the timeline name its start.
func TestPageToken(t *testing.T) {
	for pos, want := range map[int64]int64{
		7: 7, 0: 0, -1: 0, -5: 0, store.BackfillBand: 0,
		store.BackfillBand - 1: store.BackfillBand - 1,
	} {
		got, err := streamtoken.EventsPos(pageToken(pos))
		if err != nil || got != want {
			t.Errorf("position %d: token %q reads %d, %v; want %d", pos, pageToken(pos), got, err, want)
		}
	}
}
