package rooms

import (
	"fmt"
	"slices"
	"testing"
)

// Heroes are the five lowest other joined or invited members, else the
// five lowest who left or were banned, whatever order the map yields.
func TestHeroes(t *testing.T) {
	r := &Room{}
	m := map[string]string{"@me:x": "join"}
	for i := range 50 {
		m[fmt.Sprintf("@u%02d:x", 49-i)] = []string{"leave", "ban"}[i%2]
	}
	r.setMembers(m)
	if got, want := r.Heroes("@me:x", 5), []string{"@u00:x", "@u01:x", "@u02:x", "@u03:x", "@u04:x"}; !slices.Equal(got, want) {
		t.Fatalf("former members as heroes: %v, want %v", got, want)
	}
	r.updateMembers(map[string]string{"@u30:x": "join", "@u07:x": "invite", "@u12:x": "join"})
	if got, want := r.Heroes("@me:x", 5), []string{"@u07:x", "@u12:x", "@u30:x"}; !slices.Equal(got, want) {
		t.Fatalf("heroes: %v, want %v", got, want)
	}
	if j, i := r.MemberCounts(); j != 3 || i != 1 {
		t.Fatalf("counts: %d joined, %d invited", j, i)
	}
	r.updateMembers(map[string]string{"@u07:x": "join"})
	if j, i := r.MemberCounts(); j != 4 || i != 0 {
		t.Fatalf("counts after the invite was accepted: %d joined, %d invited", j, i)
	}
}
