package stateres

import (
	"fmt"
	"testing"
)

// BenchmarkResolve resolves a fork of a room with 1,000 members: on one
// side the admin changes the power levels and 25 members change their
// display names, on the other the moderator kicks 25 members and sets the
// topic (about 50 conflicted tuples).
func BenchmarkResolve(b *testing.B) {
	for _, vid := range []string{"11", "12"} {
		b.Run("v"+vid, func(b *testing.B) {
			r, root := newRoom(b, vid, false)
			users := make([]string, 1000)
			for i := range users {
				users[i] = fmt.Sprintf("@u%d:s%d.test", i, i%20)
				root.send(fmt.Sprintf("join%d", i), users[i], "m.room.member", users[i], `{"membership":"join"}`)
			}
			x, y := root.fork(), root.fork()
			x.send("pl1", alice, "m.room.power_levels", "", r.levels(map[string]int{bob: 50, users[0]: 50}))
			for i := 0; i < 25; i++ {
				u := users[i]
				x.send(fmt.Sprintf("nick%d", i), u, "m.room.member", u, fmt.Sprintf(`{"membership":"join","displayname":"user %d"}`, i))
			}
			for i := 25; i < 50; i++ {
				y.send(fmt.Sprintf("kick%d", i), bob, "m.room.member", users[i], `{"membership":"leave"}`)
			}
			y.send("topic", bob, "m.room.topic", "", `{"topic":"kicked"}`)
			sets := []StateSet{x.state, y.state}
			b.ReportAllocs()
			r.fetches = 0
			b.ResetTimer()
			for b.Loop() {
				if _, err := Resolve(r.v, sets, r.fetch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(r.fetches)/float64(b.N), "fetches/op")
		})
	}
}
