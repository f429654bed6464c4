package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// wantMemberSummary counts a room's members from room_members and picks
// its first six joined or invited users by id: what the kept summary
// must equal.
func wantMemberSummary(t *testing.T, s *Store, roomID string) MemberSummary {
	t.Helper()
	ms, err := s.RoomMemberships(context.Background(), roomID)
	if err != nil {
		t.Fatal(err)
	}
	var m MemberSummary
	for _, x := range ms {
		switch x.Membership {
		case "join":
			m.Joined++
		case "invite":
			m.Invited++
		}
		if heroSet(x.Membership) {
			m.Candidates = append(m.Candidates, x.UserID)
		}
	}
	slices.Sort(m.Candidates)
	m.Candidates = m.Candidates[:min(heroCandidates, len(m.Candidates))]
	return m
}

// A room's member summary follows random membership changes one at a
// time (SetMembership) and in bulk (SetMemberships), on both engines.
func TestMemberSummaryFollowsMemberships(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		r := rand.New(rand.NewPCG(1, 2))
		states := []string{"join", "invite", "leave", "ban", "knock"}
		pos := int64(0)
		// The directory's summaries count the joined members too.
		for _, room := range []string{"!r0:x", "!r1:x"} {
			if _, err := s.writer().ExecContext(ctx, `INSERT INTO room_summaries (room_id, joined_members) VALUES ($1, 0)`, room); err != nil {
				t.Fatal(err)
			}
		}
		for step := range 300 {
			room := fmt.Sprintf("!r%d:x", step%2)
			err := s.InTx(ctx, func(tx *Tx) error {
				if step%50 == 49 {
					// A bulk write, as a partial-state room's members are.
					var ms []Membership
					for k := range 4 {
						pos++
						ms = append(ms, Membership{RoomID: room, UserID: fmt.Sprintf("@u%02d:x", r.IntN(20)+k*20), Membership: states[r.IntN(len(states))], EventID: fmt.Sprint("$", pos), Pos: pos})
					}
					return tx.SetMemberships(ctx, ms)
				}
				pos++
				return tx.SetMembership(ctx, Membership{RoomID: room, UserID: fmt.Sprintf("@u%02d:x", r.IntN(20)), Membership: states[r.IntN(len(states))], EventID: fmt.Sprint("$", pos), Pos: pos})
			})
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.MemberSummaries(ctx, []string{"!r0:x", "!r1:x"})
			if err != nil {
				t.Fatal(err)
			}
			want := wantMemberSummary(t, s, room)
			if fmt.Sprint(got[room]) != fmt.Sprint(want) {
				t.Fatalf("step %d: summary %+v, want %+v", step, got[room], want)
			}
			var joined int64
			if err := s.writer().QueryRowContext(ctx, `SELECT joined_members FROM room_summaries WHERE room_id = $1`, room).Scan(&joined); err != nil {
				t.Fatal(err)
			}
			if joined != want.Joined {
				t.Fatalf("step %d: room summary counts %d joined, want %d", step, joined, want.Joined)
			}
		}
		former, err := s.FormerMembers(ctx, []string{"!r0:x", "!r1:x", "!none:x"}, "@u00:x")
		if err != nil {
			t.Fatal(err)
		}
		for _, room := range []string{"!r0:x", "!r1:x"} {
			ms, _ := s.RoomMemberships(ctx, room)
			var want []string
			for _, m := range ms {
				if (m.Membership == "leave" || m.Membership == "ban") && m.UserID != "@u00:x" {
					want = append(want, m.UserID)
				}
			}
			slices.Sort(want)
			want = want[:min(5, len(want))]
			if !slices.Equal(former[room], want) {
				t.Fatalf("former members of %s: %v, want %v", room, former[room], want)
			}
		}
	})
}

// The migration that adds member summaries fills them for the rooms
// already there.
func TestMemberSummaryMigration(t *testing.T) {
	forEachEngineAt(t, 26, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for i, m := range []Membership{
			{RoomID: "!a:x", UserID: "@z:x", Membership: "join"}, {RoomID: "!a:x", UserID: "@b:x", Membership: "invite"},
			{RoomID: "!a:x", UserID: "@c:x", Membership: "leave"}, {RoomID: "!a:x", UserID: "@d:x", Membership: "join"},
			{RoomID: "!a:x", UserID: "@e:x", Membership: "join"}, {RoomID: "!a:x", UserID: "@f:x", Membership: "join"},
			{RoomID: "!a:x", UserID: "@g:x", Membership: "join"}, {RoomID: "!a:x", UserID: "@h:x", Membership: "join"},
			{RoomID: "!b:x", UserID: "@a:x", Membership: "ban"},
		} {
			if _, err := s.w.ExecContext(ctx, `INSERT INTO room_members (room_id, user_id, membership, event_id, stream_pos) VALUES ($1, $2, $3, $4, $5)`,
				m.RoomID, m.UserID, m.Membership, fmt.Sprint("$", i), i+1); err != nil {
				t.Fatal(err)
			}
		}
		s.migrateRest(t)
		got, err := s.MemberSummaries(ctx, []string{"!a:x", "!b:x"})
		if err != nil {
			t.Fatal(err)
		}
		for _, room := range []string{"!a:x", "!b:x"} {
			if want := wantMemberSummary(t, s, room); fmt.Sprint(got[room]) != fmt.Sprint(want) {
				t.Fatalf("%s: summary %+v, want %+v", room, got[room], want)
			}
		}
		if h := got["!a:x"].Heroes("@b:x"); !slices.Equal(h, []string{"@d:x", "@e:x", "@f:x", "@g:x", "@h:x"}) {
			t.Fatalf("heroes for @b:x: %v", h)
		}
	})
}
