package rooms

import "testing"

func TestTimelineGapsNewestInWindow(t *testing.T) {
	var g timelineGaps
	for _, p := range []int64{10, 30, 20, 30} {
		g.add("!r", p)
	}
	for _, c := range []struct{ lo, hi, want int64 }{
		{0, 100, 30}, {0, 29, 20}, {20, 29, 0}, {19, 25, 20}, {30, 100, 0}, {0, 9, 0},
	} {
		if got := g.newest("!r", c.lo, c.hi); got != c.want {
			t.Errorf("newest in (%d, %d] = %d, want %d", c.lo, c.hi, got, c.want)
		}
	}
	if g.newest("!other", 0, 100) != 0 {
		t.Error("gap of another room")
	}
	for p := int64(100); p < 100+maxGapsPerRoom+5; p++ {
		g.add("!r", p)
	}
	if n := len(g.byRoom["!r"]); n != maxGapsPerRoom {
		t.Errorf("%d gaps kept, want %d", n, maxGapsPerRoom)
	}
}
