package turn

import (
	"testing"
	"time"
)

func TestQuota(t *testing.T) {
	q := newQuota(2, 3)
	now := time.Unix(1000, 0)
	// Two requests in flight at once fill alice's cap before either
	// allocation is made.
	for i, want := range []bool{true, true, false} {
		if got := q.admit("@alice:x", now); got != want {
			t.Fatalf("alice's request %d in flight admitted %v, want %v (cap 2)", i+1, got, want)
		}
	}
	q.created("@alice:x")
	q.created("@alice:x")
	if q.admit("@alice:x", now) {
		t.Fatal("alice's third allocation admitted")
	}
	// The total cap: bob gets the third place, carol none.
	if !q.admit("@bob:x", now) || q.admit("@carol:x", now) {
		t.Fatal("total cap of 3")
	}
	// Bob's allocation failed (never reported): his place is freed after
	// pendingFor, for anyone.
	if q.admit("@carol:x", now.Add(pendingFor-time.Second)) || !q.admit("@carol:x", now.Add(pendingFor+time.Second)) {
		t.Fatal("a failed allocation's place is not freed in time")
	}
	q.created("@carol:x")
	q.deleted("@alice:x")
	if !q.admit("@alice:x", now) {
		t.Fatal("a deleted allocation's place is not freed")
	}
	q.deleted("@nobody:x") // unknown: no underflow
	if q.all != 2 || q.allPend != 1 {
		t.Fatalf("counts %d live, %d pending", q.all, q.allPend)
	}
}
