package store

import (
	"context"
	"database/sql"
	"slices"
	"strconv"
	"strings"
)

// heroCandidates is how many joined or invited members a room's member
// summary keeps: five heroes for any reader, who may be one of them.
const heroCandidates = 6

// MemberSummary is what a room summary of /sync needs of its members:
// counts and the hero candidates (the first joined or invited members by
// user id, at most six, sorted).
type MemberSummary struct {
	Joined, Invited int64
	Candidates      []string
}

// Heroes are the summary's heroes for userID: the first five candidates
// that are not userID.
func (m MemberSummary) Heroes(userID string) []string {
	out := make([]string, 0, 5)
	for _, u := range m.Candidates {
		if u != userID && len(out) < 5 {
			out = append(out, u)
		}
	}
	return out
}

// heroSet reports whether a membership makes its user a hero candidate.
func heroSet(membership string) bool { return membership == "join" || membership == "invite" }

// updateMemberSummary keeps a room's member summary in step with one
// user's membership changing from old to new (SetMembership, after its
// write): counts move by one, and the candidates are read again only when
// the user enters a list that is short or ends after them, or leaves it.
// sum and heroes are the room's summary row as read (sum nil: none yet).
func (tx *Tx) updateMemberSummary(ctx context.Context, roomID, userID, old, new string, sum *MemberSummary, heroes string) error {
	dj, di := isJoin(new)-isJoin(old), isInvite(new)-isInvite(old)
	if dj == 0 && di == 0 {
		return nil
	}
	if sum == nil {
		return tx.recountMemberSummary(ctx, roomID)
	}
	var err error
	list := splitHeroes(heroes)
	switch in := heroSet(new); {
	case in == heroSet(old):
	case in && len(list) < heroCandidates:
		list = insertSorted(list, userID)
	case in && userID < list[len(list)-1]:
		list = insertSorted(list, userID)[:heroCandidates]
	case !in && slices.Contains(list, userID):
		// One fewer: the next candidate is unknown without a look.
		if list, err = tx.readHeroCandidates(ctx, roomID); err != nil {
			return err
		}
	}
	return tx.execLater(ctx, nil, `UPDATE room_member_summaries SET joined_members = joined_members + $1, invited_members = invited_members + $2, heroes = $3 WHERE room_id = $4`,
		dj, di, strings.Join(list, "\n"), roomID)
}

func isInvite(membership string) int64 {
	if membership == "invite" {
		return 1
	}
	return 0
}

func insertSorted(list []string, u string) []string {
	i, found := slices.BinarySearch(list, u)
	if found {
		return list
	}
	return slices.Insert(list, i, u)
}

func splitHeroes(s string) []string {
	if s == "" {
		return nil
	}
	list := strings.Split(s, "\n")
	slices.Sort(list) // rows the migration filled are in no set order
	return list
}

// readHeroCandidates reads a room's first hero candidates from its
// members, in user id order (the primary key's).
func (tx *Tx) readHeroCandidates(ctx context.Context, roomID string) ([]string, error) {
	rows, err := tx.q.QueryContext(ctx, `SELECT user_id FROM room_members WHERE room_id = $1 AND membership IN ('join', 'invite') ORDER BY user_id LIMIT `+strconv.Itoa(heroCandidates), roomID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, rows.Err()
}

// recountMemberSummary sets a room's member summary afresh from its
// members (a room without one yet, and writes that bypass SetMembership).
func (tx *Tx) recountMemberSummary(ctx context.Context, roomID string) error {
	var joined, invited int64
	err := tx.q.QueryRowContext(ctx, `SELECT COALESCE(SUM(CASE WHEN membership = 'join' THEN 1 ELSE 0 END), 0), COALESCE(SUM(CASE WHEN membership = 'invite' THEN 1 ELSE 0 END), 0)
		FROM room_members WHERE room_id = $1`, roomID).Scan(&joined, &invited)
	if err != nil {
		return err
	}
	list, err := tx.readHeroCandidates(ctx, roomID)
	if err != nil {
		return err
	}
	_, err = tx.q.ExecContext(ctx, `INSERT INTO room_member_summaries (room_id, joined_members, invited_members, heroes) VALUES ($1, $2, $3, $4)
		ON CONFLICT (room_id) DO UPDATE SET joined_members = excluded.joined_members, invited_members = excluded.invited_members, heroes = excluded.heroes`,
		roomID, joined, invited, strings.Join(list, "\n"))
	return err
}

// MemberSummaries returns the member summaries of rooms, in one statement
// (per 500 rooms on SQLite). Rooms without members have none.
func (s *Store) MemberSummaries(ctx context.Context, roomIDs []string) (map[string]MemberSummary, error) {
	out := make(map[string]MemberSummary, len(roomIDs))
	scan := func(rows *sql.Rows, err error) error {
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var roomID, heroes string
			var m MemberSummary
			if err := rows.Scan(&roomID, &m.Joined, &m.Invited, &heroes); err != nil {
				return err
			}
			m.Candidates = splitHeroes(heroes)
			out[roomID] = m
		}
		return rows.Err()
	}
	const cols = `SELECT room_id, joined_members, invited_members, heroes FROM room_member_summaries WHERE room_id `
	if s.Engine == Postgres {
		return out, scan(s.reader().QueryContext(ctx, cols+`= ANY($1)`, roomIDs))
	}
	for start := 0; start < len(roomIDs); start += 500 {
		q, args := inList(cols+`IN (`, roomIDs[start:min(len(roomIDs), start+500)], `)`)
		if err := scan(s.reader().QueryContext(ctx, q, args...)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// FormerMembers returns, for each of the rooms, the first five users by
// user id who left or were banned, userID aside: the heroes of a room
// nobody else is joined or invited to. One statement (per 500 rooms on
// SQLite).
func (s *Store) FormerMembers(ctx context.Context, roomIDs []string, userID string) (map[string][]string, error) {
	out := map[string][]string{}
	scan := func(rows *sql.Rows, err error) error {
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var roomID, u string
			if err := rows.Scan(&roomID, &u); err != nil {
				return err
			}
			out[roomID] = append(out[roomID], u)
		}
		return rows.Err()
	}
	const pre = `SELECT room_id, user_id FROM (SELECT room_id, user_id, ROW_NUMBER() OVER (PARTITION BY room_id ORDER BY user_id) AS n
		FROM room_members WHERE membership IN ('leave', 'ban') AND `
	const post = `) AS f WHERE n <= 5 ORDER BY room_id, user_id`
	if s.Engine == Postgres {
		return out, scan(s.reader().QueryContext(ctx, pre+`room_id = ANY($1) AND user_id <> $2`+post, roomIDs, userID))
	}
	for start := 0; start < len(roomIDs); start += 500 {
		chunk := roomIDs[start:min(len(roomIDs), start+500)]
		q, args := inList(pre+`room_id IN (`, chunk, `) AND user_id <> $`+strconv.Itoa(len(chunk)+1)+post, userID)
		if err := scan(s.reader().QueryContext(ctx, q, args...)); err != nil {
			return nil, err
		}
	}
	return out, nil
}
