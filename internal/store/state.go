package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// StateKey identifies a piece of room state.
type StateKey struct {
	Type     string
	StateKey string
}

// StateMap maps state keys to event ids.
type StateMap map[StateKey]string

// Delta chains. A state group is stored either in full (a snapshot: no
// prev_group, chain_len 0) or as the entries changed since an earlier
// group of its chain. chain_len is the group's number in its chain, seq,
// counted from the snapshot; group seq points at group seq - lowbit(seq)
// and stores every change since it, as a binary counter carries: group 8
// holds the changes of 1..8, group 12 those of 9..12, group 13 its own.
// So a lookup walks at most popcount(seq) groups (seq < maxChainSeq: at
// most 16), each change is written into about log2(seq) groups, and a
// snapshot, a write as big as the room's state, comes only when the rows
// along the chain (chain_rows, the snapshot's excluded) would outgrow the
// state: after at least as many changes as the state has entries. A
// change then costs the same in a room of ten members or of ten thousand
// (with a snapshot every 33 changes, a join into a room of 10,000 wrote
// 300 rows), and reading a whole state at most twice its size.

// maxChainSeq bounds a chain's numbering, hence the groups a lookup walks.
const maxChainSeq = 1 << 16

// smallState is the size of state stored in full at every change: no
// larger than a carry's read, which it spares (a round trip on
// PostgreSQL), and a lookup then reads one group. Direct chats and small
// groups stay there.
const smallState = 16

// ChainPos is where a state group sits in its delta chain.
type ChainPos struct {
	Seq  int // its number in the chain (0: a snapshot)
	Rows int // entries stored along the chain, the snapshot's excluded
}

// NewStateSnapshot stores a state in full and returns its group.
func (tx *Tx) NewStateSnapshot(ctx context.Context, roomID string, full StateMap) (int64, error) {
	id, _, err := tx.NewStateGroup(ctx, roomID, 0, ChainPos{}, nil, len(full), func() StateMap { return full })
	return id, err
}

// NewStateGroup stores the state of group prev (at position at of its
// chain) with delta applied, and returns the new group and its position.
// stateSize is about the size of the resulting state, full computes it
// whole; full is called only when a snapshot is due (prev 0 asks for one).
func (tx *Tx) NewStateGroup(ctx context.Context, roomID string, prev int64, at ChainPos, delta StateMap, stateSize int, full func() StateMap) (int64, ChainPos, error) {
	id := tx.Alloc(tx.s.Streams.StateGroups)
	entries, base, pos := delta, prev, ChainPos{Seq: at.Seq + 1, Rows: at.Rows}
	if prev != 0 && pos.Seq < maxChainSeq && stateSize > smallState {
		if target := pos.Seq - pos.Seq&-pos.Seq; at.Seq > target {
			// Carry: the new group replaces the groups after target on
			// prev's chain, so it stores their changes too.
			merged, stop, rows, err := tx.chainSince(ctx, prev, target)
			if err != nil {
				return 0, ChainPos{}, err
			}
			for k, v := range delta {
				merged[k] = v
			}
			entries, base, pos.Rows = merged, stop, max(0, at.Rows-rows)
		}
		pos.Rows += len(entries)
	}
	if prev == 0 || pos.Seq >= maxChainSeq || pos.Rows > stateSize || stateSize <= smallState {
		entries, base, pos = full(), 0, ChainPos{}
	}
	if err := tx.execLater(ctx, nil, `INSERT INTO state_groups (group_id, room_id, prev_group, chain_len, chain_rows) VALUES ($1, $2, $3, $4, $5)`,
		id, roomID, sql.NullInt64{Int64: base, Valid: base != 0}, pos.Seq, pos.Rows); err != nil {
		return 0, ChainPos{}, fmt.Errorf("insert state group: %w", err)
	}
	if err := tx.insertStateEntries(ctx, id, entries); err != nil {
		return 0, ChainPos{}, err
	}
	return id, pos, nil
}

// chainSinceSQL reads the groups of $1's chain numbered above $2, newest
// first, with their entries (a group without any comes once with NULLs).
// LEFT JOIN keeps the chain outside on SQLite as CROSS JOIN does in
// stateEntrySQL.
const chainSinceSQL = `WITH RECURSIVE chain (group_id, prev_group, depth) AS (
			SELECT group_id, prev_group, 0 FROM state_groups WHERE group_id = $1 AND chain_len > $2
			UNION ALL
			SELECT g.group_id, g.prev_group, c.depth + 1 FROM state_groups g JOIN chain c ON g.group_id = c.prev_group WHERE g.chain_len > $2
		)
		SELECT c.depth, c.prev_group, e.type, e.state_key, e.event_id FROM chain c LEFT JOIN state_group_entries e ON e.group_id = c.group_id
		ORDER BY c.depth DESC`

// chainSincePG is chainSinceSQL for PostgreSQL, whose generic plan of the
// statement (prepared statements are planned once for any arguments
// after a few runs) hashes whole tables: both of them scanned per join,
// a cost that grew with the room. The LATERAL subqueries, kept apart by
// LIMIT and OFFSET, are looked up by key for each group of the chain.
const chainSincePG = `WITH RECURSIVE chain (group_id, prev_group, depth) AS (
			SELECT group_id, prev_group, 0 FROM state_groups WHERE group_id = $1 AND chain_len > $2
			UNION ALL
			SELECT g.group_id, g.prev_group, c.depth + 1 FROM chain c CROSS JOIN LATERAL (
				SELECT group_id, prev_group FROM state_groups WHERE group_id = c.prev_group AND chain_len > $2 LIMIT 1) g
		)
		SELECT c.depth, c.prev_group, e.type, e.state_key, e.event_id FROM chain c LEFT JOIN LATERAL (
			SELECT type, state_key, event_id FROM state_group_entries WHERE group_id = c.group_id OFFSET 0) e ON TRUE
		ORDER BY c.depth DESC`

// chainSince merges the changes stored by the groups of group's chain
// numbered above target (newer entries win), and returns them with the
// group the walk stopped at and how many entries the walked groups hold.
func (tx *Tx) chainSince(ctx context.Context, group int64, target int) (StateMap, int64, int, error) {
	q := chainSinceSQL
	if tx.s.Engine == Postgres {
		q = chainSincePG
	}
	merged := StateMap{}
	var stop int64
	n, deepest := 0, -1
	err := tx.queryEach(ctx, func(scan func(...any) error) error {
		var depth int
		var prev sql.NullInt64
		var typ, key, ev sql.NullString
		if err := scan(&depth, &prev, &typ, &key, &ev); err != nil {
			return err
		}
		if deepest < 0 {
			deepest, stop = depth, prev.Int64
		}
		if ev.Valid {
			merged[StateKey{Type: typ.String, StateKey: key.String}] = ev.String
			n++
		}
		return nil
	}, q, group, target)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("read state chain: %w", err)
	}
	if deepest < 0 || stop == 0 {
		return nil, 0, 0, fmt.Errorf("state group %d: no group numbered %d or less on its chain", group, target)
	}
	return merged, stop, n, nil
}

// StateGroupChain returns where a group sits in its delta chain.
func (s *Store) StateGroupChain(ctx context.Context, group int64) (ChainPos, error) {
	var p ChainPos
	err := s.reader().QueryRowContext(ctx, `SELECT chain_len, chain_rows FROM state_groups WHERE group_id = $1`, group).Scan(&p.Seq, &p.Rows)
	return p, err
}

// StateGroup reads the full state of a group: its delta chain, oldest
// first so that newer entries win, in one round trip.
func (s *Store) StateGroup(ctx context.Context, group int64) (StateMap, error) {
	rows, err := s.reader().QueryContext(ctx, `WITH RECURSIVE chain (group_id, prev_group, depth) AS (
			SELECT group_id, prev_group, 0 FROM state_groups WHERE group_id = $1
			UNION ALL
			SELECT g.group_id, g.prev_group, c.depth + 1 FROM state_groups g JOIN chain c ON g.group_id = c.prev_group
		)
		SELECT e.type, e.state_key, e.event_id, c.depth FROM chain c JOIN state_group_entries e ON e.group_id = c.group_id
		ORDER BY c.depth DESC`, group)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := StateMap{}
	for rows.Next() {
		var k StateKey
		var ev string
		var depth int
		if err := rows.Scan(&k.Type, &k.StateKey, &ev, &depth); err != nil {
			return nil, err
		}
		out[k] = ev
	}
	return out, rows.Err()
}

// stateEntrySQL reads one entry of a group's state ($1 group, $2 type, $3
// state key).
const stateEntrySQL = `WITH RECURSIVE chain (group_id, prev_group, depth) AS (
			SELECT group_id, prev_group, 0 FROM state_groups WHERE group_id = $1
			UNION ALL
			SELECT g.group_id, g.prev_group, c.depth + 1 FROM state_groups g JOIN chain c ON g.group_id = c.prev_group
		)
		SELECT e.event_id FROM chain c CROSS JOIN state_group_entries e
		WHERE e.group_id = c.group_id AND e.type = $2 AND e.state_key = $3 ORDER BY c.depth LIMIT 1`

// StateGroupEntry returns one entry of a group's state ("" when absent),
// walking the delta chain in the database: one round trip. CROSS JOIN
// keeps SQLite's order: the chain outside, each of its groups looked up
// by key. Left to itself the SQLite we ship scans the whole entries table
// against a Bloom filter of the chain (seconds in a sector's database).
func (s *Store) StateGroupEntry(ctx context.Context, group int64, k StateKey) (string, error) {
	var ev string
	err := s.reader().QueryRowContext(ctx, stateEntrySQL, group, k.Type, k.StateKey).Scan(&ev)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return ev, err
}

// StateGroupEntries is StateGroupEntry for several groups at once (one
// statement): group → event id, "" when absent.
func (s *Store) StateGroupEntries(ctx context.Context, groups []int64, k StateKey) (map[int64]string, error) {
	out := make(map[int64]string, len(groups))
	if s.Engine == Postgres && len(groups) > 0 {
		return out, s.stateGroupEntriesPG(ctx, groups, k, out)
	}
	for len(groups) > 0 {
		n := min(len(groups), 100)
		var q query
		q.add(`WITH RECURSIVE chain (start, group_id, prev_group, depth) AS (
			SELECT group_id, group_id, prev_group, 0 FROM state_groups WHERE group_id IN (`)
		for i, g := range groups[:n] {
			if i > 0 {
				q.add(", ")
			}
			q.add("?", g)
		}
		q.add(`)
			UNION ALL
			SELECT c.start, g.group_id, g.prev_group, c.depth + 1 FROM state_groups g JOIN chain c ON g.group_id = c.prev_group
		)
		SELECT c.start, e.event_id, c.depth FROM chain c CROSS JOIN state_group_entries e
		WHERE e.group_id = c.group_id AND e.type = ? AND e.state_key = ?`, k.Type, k.StateKey)
		rows, err := s.reader().QueryContext(ctx, q.b.String(), q.args...)
		if err != nil {
			return nil, err
		}
		depth := map[int64]int{}
		for rows.Next() {
			var start int64
			var ev string
			var d int
			if err := rows.Scan(&start, &ev, &d); err != nil {
				rows.Close()
				return nil, err
			}
			if best, seen := depth[start]; !seen || d < best {
				depth[start], out[start] = d, ev
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		for _, g := range groups[:n] {
			if _, ok := out[g]; !ok {
				out[g] = ""
			}
		}
		groups = groups[n:]
	}
	return out, nil
}

// StateGroupsOfTypes reads the entries of some types in the full state
// of several groups (StateGroup, restricted), in a statement per 100
// groups on SQLite and one on PostgreSQL, each chain step and entry
// looked up by key as in StateGroupEntries.
func (s *Store) StateGroupsOfTypes(ctx context.Context, groups []int64, types []string) (map[int64]StateMap, error) {
	out := make(map[int64]StateMap, len(groups))
	depth := map[int64]map[StateKey]int{}
	scan := func(rows *sql.Rows, err error) error {
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var start int64
			var k StateKey
			var ev string
			var d int
			if err := rows.Scan(&start, &k.Type, &k.StateKey, &ev, &d); err != nil {
				return err
			}
			if depth[start] == nil {
				depth[start], out[start] = map[StateKey]int{}, StateMap{}
			}
			if best, seen := depth[start][k]; !seen || d < best {
				depth[start][k], out[start][k] = d, ev
			}
		}
		return rows.Err()
	}
	if s.Engine == Postgres {
		return out, scan(s.reader().QueryContext(ctx, `WITH RECURSIVE chain (start, group_id, prev_group, depth) AS (
				SELECT group_id, group_id, prev_group, 0 FROM state_groups WHERE group_id = ANY($1)
				UNION ALL
				SELECT c.start, g.group_id, g.prev_group, c.depth + 1 FROM chain c
					CROSS JOIN LATERAL (SELECT group_id, prev_group FROM state_groups WHERE group_id = c.prev_group LIMIT 1) AS g
			)
			SELECT c.start, e.type, e.state_key, e.event_id, c.depth FROM chain c
				CROSS JOIN LATERAL (SELECT type, state_key, event_id FROM state_group_entries WHERE group_id = c.group_id AND type = ANY($2)) AS e`,
			groups, types))
	}
	for start := 0; start < len(groups); start += 100 {
		var q query
		q.add(`WITH RECURSIVE chain (start, group_id, prev_group, depth) AS (
			SELECT group_id, group_id, prev_group, 0 FROM state_groups WHERE group_id IN (`)
		for i, g := range groups[start:min(len(groups), start+100)] {
			if i > 0 {
				q.add(", ")
			}
			q.add("?", g)
		}
		q.add(`)
			UNION ALL
			SELECT c.start, g.group_id, g.prev_group, c.depth + 1 FROM state_groups g JOIN chain c ON g.group_id = c.prev_group
		)
		SELECT c.start, e.type, e.state_key, e.event_id, c.depth FROM chain c CROSS JOIN state_group_entries e
		WHERE e.group_id = c.group_id AND e.type IN (`)
		for i, t := range types {
			if i > 0 {
				q.add(", ")
			}
			q.add("?", t)
		}
		q.add(")")
		if err := scan(s.reader().QueryContext(ctx, q.b.String(), q.args...)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// stateGroupEntriesPG is StateGroupEntries on PostgreSQL: all groups in
// one statement, each step of a chain and each entry looked up by its
// key. Left to itself PostgreSQL hashes the whole of state_groups and
// every entry of the type for each statement (a quarter of a second in a
// sector's database), which a cold initial sync of a user in 1,000 rooms
// did ninety times.
const stateGroupEntriesPG = `WITH RECURSIVE chain (start, group_id, prev_group, depth) AS (
		SELECT group_id, group_id, prev_group, 0 FROM state_groups WHERE group_id = ANY($1)
		UNION ALL
		SELECT c.start, g.group_id, g.prev_group, c.depth + 1 FROM chain c
			CROSS JOIN LATERAL (SELECT group_id, prev_group FROM state_groups WHERE group_id = c.prev_group LIMIT 1) AS g
	)
	SELECT c.start, e.event_id, c.depth FROM chain c
		CROSS JOIN LATERAL (SELECT event_id FROM state_group_entries WHERE group_id = c.group_id AND type = $2 AND state_key = $3 LIMIT 1) AS e`

func (s *Store) stateGroupEntriesPG(ctx context.Context, groups []int64, k StateKey, out map[int64]string) error {
	rows, err := s.reader().QueryContext(ctx, stateGroupEntriesPG, groups, k.Type, k.StateKey)
	if err != nil {
		return err
	}
	defer rows.Close()
	depth := map[int64]int{}
	for rows.Next() {
		var start int64
		var ev string
		var d int
		if err := rows.Scan(&start, &ev, &d); err != nil {
			return err
		}
		if best, seen := depth[start]; !seen || d < best {
			depth[start], out[start] = d, ev
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, g := range groups {
		if _, ok := out[g]; !ok {
			out[g] = ""
		}
	}
	return nil
}

// CurrentState returns a room's current state.
func (s *Store) CurrentState(ctx context.Context, roomID string) (StateMap, error) {
	return scanStateMap(s.reader().QueryContext(ctx, `SELECT type, state_key, event_id FROM room_state WHERE room_id = $1`, roomID))
}

// scanStateMap reads rows of (type, state_key, event_id).
func scanStateMap(rows *sql.Rows, err error) (StateMap, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := StateMap{}
	for rows.Next() {
		var k StateKey
		var ev string
		if err := rows.Scan(&k.Type, &k.StateKey, &ev); err != nil {
			return nil, err
		}
		out[k] = ev
	}
	return out, rows.Err()
}

// CurrentStateWithMembers returns a room's current state without the
// member events of users other than members: two index ranges around
// the member events and one look-up per member, however big the room.
func (s *Store) CurrentStateWithMembers(ctx context.Context, roomID string, members []string) (StateMap, error) {
	var q query
	q.add(`SELECT type, state_key, event_id FROM room_state WHERE room_id = ? AND type < 'm.room.member'
		UNION ALL SELECT type, state_key, event_id FROM room_state WHERE room_id = ? AND type > 'm.room.member'`, roomID, roomID)
	// The members as one parameter, so that one statement serves any
	// number of them.
	if s.Engine == Postgres {
		q.add(` UNION ALL SELECT type, state_key, event_id FROM room_state WHERE room_id = ? AND type = 'm.room.member' AND state_key = ANY(CAST(? AS TEXT[]))`, roomID, members)
	} else {
		list, _ := json.Marshal(members)
		q.add(` UNION ALL SELECT type, state_key, event_id FROM room_state WHERE room_id = ? AND type = 'm.room.member' AND state_key IN (SELECT value FROM json_each(?))`, roomID, string(list))
	}
	return scanStateMap(s.reader().QueryContext(ctx, q.b.String(), q.args...))
}

// CurrentStateEvents returns the current state events of rooms, in one
// statement (per 500 rooms on SQLite): what an initial sync shows of
// every room, without a statement per room for its state and another
// naming each event.
func (s *Store) CurrentStateEvents(ctx context.Context, roomIDs []string) ([]*EventRow, error) {
	q := `SELECT e.` + strings.ReplaceAll(eventCols, ", ", ", e.") + ` FROM room_state s JOIN events e ON e.event_id = s.event_id WHERE s.room_id `
	if s.Engine == Postgres {
		return scanEvents(s.reader().QueryContext(ctx, currentStateEventsPG, roomIDs))
	}
	var out []*EventRow
	for start := 0; start < len(roomIDs); start += 500 {
		q, args := inList(q+`IN (`, roomIDs[start:min(len(roomIDs), start+500)], `)`)
		rows, err := scanEvents(s.reader().QueryContext(ctx, q, args...))
		if err != nil {
			return nil, err
		}
		out = append(out, rows...)
	}
	return out, nil
}

// currentStateEventsPG is CurrentStateEvents on PostgreSQL: each event
// looked up by its id. Left to itself PostgreSQL hashes the state rows and
// reads the whole events table against them, which grows with the server
// rather than with the rooms asked for.
var currentStateEventsPG = `SELECT e.* FROM room_state s CROSS JOIN LATERAL (
	SELECT ` + eventCols + ` FROM events WHERE event_id = s.event_id LIMIT 1) AS e WHERE s.room_id = ANY($1)`

// SetCurrentState points a state key of a room at an event.
func (tx *Tx) SetCurrentState(ctx context.Context, roomID string, k StateKey, eventID string) error {
	return tx.execLater(ctx, nil, `INSERT INTO room_state (room_id, type, state_key, event_id) VALUES ($1, $2, $3, $4)
		ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = excluded.event_id`, roomID, k.Type, k.StateKey, eventID)
}

// Membership is a room_members row.
type Membership struct {
	RoomID     string
	UserID     string
	Membership string
	EventID    string
	Pos        int64
	Forgotten  bool
}

// SetMembership records a user's current membership of a room, and
// keeps the room's joined member count (room_summaries) and member
// summary (room_member_summaries) in step: a join into a room of
// thousands adds one rather than counting them all. The membership it
// replaces is read first (the summary moves by the difference); the
// writes wait for the transaction's next round trip (execLater).
func (tx *Tx) SetMembership(ctx context.Context, m Membership) error {
	if tx.pg != nil {
		return tx.setMembershipPG(ctx, m)
	}
	// The member's previous membership and the room's member summary in
	// one statement: on PostgreSQL each answered statement of a join's
	// transaction is a round trip.
	var oldMembership, heroes sql.NullString
	var joined, invited sql.NullInt64
	// It rides with the writes before it (queryEach).
	err := tx.queryEach(ctx, func(scan func(...any) error) error {
		return scan(&oldMembership, &joined, &invited, &heroes)
	}, `SELECT (SELECT membership FROM room_members WHERE room_id = $1 AND user_id = $2), s.joined_members, s.invited_members, s.heroes
		FROM (SELECT 1 AS one) AS x LEFT JOIN room_member_summaries s ON s.room_id = $3`, m.RoomID, m.UserID, m.RoomID)
	if err != nil {
		return err
	}
	old := oldMembership.String
	var sum *MemberSummary
	if joined.Valid {
		sum = &MemberSummary{Joined: joined.Int64, Invited: invited.Int64}
	}
	if delta := isJoin(m.Membership) - isJoin(old); delta != 0 {
		// A room without a summary yet gets its count when it gets one.
		if err := tx.execLater(ctx, nil, `UPDATE room_summaries SET joined_members = joined_members + $1 WHERE room_id = $2`, delta, m.RoomID); err != nil {
			return err
		}
	}
	if err := tx.writeMembership(ctx, m); err != nil {
		return err
	}
	return tx.updateMemberSummary(ctx, m.RoomID, m.UserID, old, m.Membership, sum, heroes.String)
}

// writeMembership replaces the user's membership row (after the
// summaries' writes, which read the row it replaces).
func (tx *Tx) writeMembership(ctx context.Context, m Membership) error {
	return tx.execLater(ctx, nil, `INSERT INTO room_members (room_id, user_id, membership, event_id, stream_pos, forgotten, joined_pos)
		VALUES ($1, $2, $3, $4, $5, FALSE, $6)
		ON CONFLICT (room_id, user_id) DO UPDATE SET membership = excluded.membership, event_id = excluded.event_id, stream_pos = excluded.stream_pos, forgotten = FALSE,
			joined_pos = `+keepJoinedPos,
		m.RoomID, m.UserID, m.Membership, m.EventID, m.Pos, joinedPos(m))
}

// setMembershipPG is SetMembership on PostgreSQL, in writes alone (no
// answer awaited): the summaries move by what the previous membership
// row, read by each statement before the row is replaced, says. A join's
// transaction then has no answered statement and goes as one pipeline.
// The writes do what updateMemberSummary does: counts move by one, the
// joiner enters the hero candidates when short or sorting before the
// last, a candidate who leaves them has the list read again, and a room
// without a summary gets one counted afresh. Placeholders are numbered
// by first appearance, as for SQLite.
func (tx *Tx) setMembershipPG(ctx context.Context, m Membership) error {
	joined, invited := isJoin(m.Membership), isInvite(m.Membership)
	err := tx.execLater(ctx, nil, `UPDATE room_summaries SET joined_members = joined_members - p.joined + p.new
		FROM (SELECT CAST($1 AS BIGINT) AS new,
			CASE WHEN (SELECT membership FROM room_members WHERE room_id = $2 AND user_id = $3) = 'join' THEN 1 ELSE 0 END AS joined) AS p
		WHERE room_id = $2 AND p.joined <> p.new`, joined, m.RoomID, m.UserID)
	if err != nil {
		return err
	}
	err = tx.execLater(ctx, nil, `UPDATE room_member_summaries SET
			joined_members = joined_members - p.joined + p.new_joined,
			invited_members = invited_members - p.invited + p.new_invited,
			heroes = CASE WHEN p.new_joined + p.new_invited > 0 AND p.joined + p.invited = 0 THEN
				array_to_string(ARRAY(SELECT h FROM (SELECT unnest(string_to_array(heroes, E'\n')) AS h UNION SELECT p.user_id) AS u
					WHERE h <> '' ORDER BY h COLLATE "C" LIMIT `+strconv.Itoa(heroCandidates)+`), E'\n')
				ELSE heroes END
		FROM (SELECT CAST($1 AS TEXT) AS user_id, CAST($2 AS BIGINT) AS new_joined, CAST($3 AS BIGINT) AS new_invited,
				CASE WHEN x.m = 'join' THEN 1 ELSE 0 END AS joined, CASE WHEN x.m = 'invite' THEN 1 ELSE 0 END AS invited
			FROM (SELECT (SELECT membership FROM room_members WHERE room_id = $4 AND user_id = $1) AS m) AS x) AS p
		WHERE room_id = $4 AND (p.joined <> p.new_joined OR p.invited <> p.new_invited)`, m.UserID, joined, invited, m.RoomID)
	if err != nil {
		return err
	}
	if err := tx.writeMembership(ctx, m); err != nil {
		return err
	}
	candidates := `(SELECT string_agg(user_id, E'\n') FROM (SELECT user_id FROM room_members WHERE room_id = $1 AND membership IN ('join', 'invite')
		ORDER BY user_id LIMIT ` + strconv.Itoa(heroCandidates) + `) AS h)`
	if !heroSet(m.Membership) {
		// A candidate left the list: the next one is read.
		err = tx.execLater(ctx, nil, `UPDATE room_member_summaries SET heroes = COALESCE(`+candidates+`, '')
			WHERE room_id = $1 AND CAST($2 AS TEXT) = ANY(string_to_array(heroes, E'\n'))`, m.RoomID, m.UserID)
		if err != nil {
			return err
		}
	}
	// A room without a summary yet: counted afresh. The members are read
	// only when the summary is missing (once per row of g, which has none
	// otherwise).
	return tx.execLater(ctx, nil, `INSERT INTO room_member_summaries (room_id, joined_members, invited_members, heroes)
		SELECT g.r, c.joined, c.invited, COALESCE(c.heroes, '')
		FROM (SELECT CAST($1 AS TEXT) AS r WHERE NOT EXISTS (SELECT 1 FROM room_member_summaries WHERE room_id = $1)) AS g
		CROSS JOIN LATERAL (SELECT COUNT(*) FILTER (WHERE membership = 'join') AS joined, COUNT(*) FILTER (WHERE membership = 'invite') AS invited,
			`+candidates+` AS heroes FROM room_members WHERE room_id = g.r) AS c
		ON CONFLICT (room_id) DO NOTHING`, m.RoomID)
}

func isJoin(membership string) int64 {
	if membership == "join" {
		return 1
	}
	return 0
}

// joinedPos is the joined_pos of a new room_members row.
func joinedPos(m Membership) int64 {
	if m.Membership == "join" {
		return m.Pos
	}
	return 0
}

// keepJoinedPos is the joined_pos of an updated room_members row: a join
// after a join (a profile change) keeps where the membership began.
const keepJoinedPos = `CASE WHEN excluded.membership <> 'join' THEN 0 WHEN room_members.membership = 'join' THEN room_members.joined_pos ELSE excluded.stream_pos END`

// ForgetRoom hides a left room from a user.
func (tx *Tx) ForgetRoom(ctx context.Context, roomID, userID string) error {
	_, err := tx.q.ExecContext(ctx, `UPDATE room_members SET forgotten = TRUE WHERE room_id = $1 AND user_id = $2`, roomID, userID)
	return err
}

// UserMemberships lists a user's memberships, forgotten rooms included
// (Forgotten tells them apart).
func (s *Store) UserMemberships(ctx context.Context, userID string) ([]Membership, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT room_id, user_id, membership, event_id, stream_pos, forgotten FROM room_members WHERE user_id = $1`, userID)
	return scanMemberships(rows, err)
}

// GetMembership returns a user's membership row in a room or ErrNotFound.
func (s *Store) GetMembership(ctx context.Context, roomID, userID string) (*Membership, error) {
	var m Membership
	err := s.reader().QueryRowContext(ctx, `SELECT room_id, user_id, membership, event_id, stream_pos, forgotten FROM room_members WHERE room_id = $1 AND user_id = $2`, roomID, userID).
		Scan(&m.RoomID, &m.UserID, &m.Membership, &m.EventID, &m.Pos, &m.Forgotten)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return &m, err
}

// RoomMemberships lists the membership rows of a room.
func (s *Store) RoomMemberships(ctx context.Context, roomID string) ([]Membership, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT room_id, user_id, membership, event_id, stream_pos, forgotten FROM room_members WHERE room_id = $1`, roomID)
	return scanMemberships(rows, err)
}

func scanMemberships(rows *sql.Rows, err error) ([]Membership, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Membership
	for rows.Next() {
		var m Membership
		if err := rows.Scan(&m.RoomID, &m.UserID, &m.Membership, &m.EventID, &m.Pos, &m.Forgotten); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// RoomIDs lists every room with its latest event position, for warming
// caches at start.
func (s *Store) RoomLatestPositions(ctx context.Context) (map[string]int64, error) {
	rows, err := s.reader().QueryContext(ctx, `SELECT room_id, MAX(stream_pos) FROM events GROUP BY room_id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var r string
		var p int64
		if err := rows.Scan(&r, &p); err != nil {
			return nil, err
		}
		out[r] = p
	}
	return out, rows.Err()
}
