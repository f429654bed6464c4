package rooms

import (
	"fmt"
	"testing"

	"luxchat/internal/store"
)

func testView(upTo int64, rows int) *RoomView {
	v := &RoomView{UpTo: upTo}
	for i := range rows {
		v.Rows = append(v.Rows, &store.EventRow{Pos: upTo - int64(i), EventID: fmt.Sprintf("$%d", i), PDU: make([]byte, 300)})
	}
	return v
}

// The views stay within their bound in bytes, the least recently used
// leaving first; a view read across a drop is not kept.
func TestRoomViewsBound(t *testing.T) {
	one := testView(1, 11)
	c := newRoomViews(0)
	c.put("x", one, 0)
	size := one.size
	c = newRoomViews(64 * size)
	for i := range 64 {
		c.put(fmt.Sprint(i), testView(1, 11), 0)
	}
	c.get("0") // used: stays
	c.put("10", testView(1, 11), 0)
	c.put("64", testView(1, 11), 0)
	if c.bytes > c.max {
		t.Fatalf("%d bytes held, bound %d", c.bytes, c.max)
	}
	if c.get("0") == nil || c.get("1") != nil || c.get("10") == nil || c.get("64") == nil {
		t.Fatal("not the least recently used view left")
	}
	gen := c.generation()
	c.drop("5")
	c.put("new", testView(1, 11), gen)
	if c.get("5") != nil || c.get("new") != nil {
		t.Fatal("a dropped view, or one read across a drop, was kept")
	}
	big := testView(1, 3*11)
	c.put("big", big, c.generation())
	if c.get("big") != nil {
		t.Fatal("a view larger than its share was kept")
	}
}
