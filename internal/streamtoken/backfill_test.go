package streamtoken

import "testing"

func TestBackfillPositions(t *testing.T) {
	pos := int64(-(1 << 40) - 5)
	if got, err := EventsPos(Pagination(pos)); err != nil || got != pos {
		t.Fatal(got, err)
	}
	if _, err := EventsPos(Pagination(-(1 << 40))); err == nil {
		t.Fatal("outlier position accepted")
	}
}
