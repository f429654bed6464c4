package store

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"luxchat/internal/testutil/pgtest"
)

// forEachEngine runs f on a fresh SQLite and a fresh PostgreSQL store.
func forEachEngine(t *testing.T, f func(t *testing.T, s *Store)) {
	t.Run("sqlite", func(t *testing.T) {
		s, err := Open(context.Background(), Options{DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		f(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := pgtest.NewDatabase(t)
		s, err := Open(context.Background(), Options{PostgresDSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		f(t, s)
	})
}

// forEachEngineAt is forEachEngine on stores whose schema stops after
// migration version: the test writes data as servers of that time did,
// then calls migrateRest.
func forEachEngineAt(t *testing.T, version int, f func(t *testing.T, s *Store)) {
	t.Run("sqlite", func(t *testing.T) {
		s, err := Open(context.Background(), Options{DataDir: t.TempDir(), migrateUpTo: version})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		f(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		s, err := Open(context.Background(), Options{PostgresDSN: pgtest.NewDatabase(t), migrateUpTo: version})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		f(t, s)
	})
}

// migrateRest runs the migrations a store opened by forEachEngineAt
// stopped before.
func (s *Store) migrateRest(t *testing.T) {
	t.Helper()
	s.migrateUpTo = 0
	if err := s.migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// insertOldEvent writes an event row as the schema between migrations 8
// and 25 held it (the PDU as text), with its client transaction key when
// txnKey is not "".
func insertOldEvent(t *testing.T, s *Store, e *EventRow, txnKey string) {
	t.Helper()
	key := sql.NullString{String: txnKey, Valid: txnKey != ""}
	_, err := s.w.ExecContext(context.Background(), `INSERT INTO events (stream_pos, event_id, room_id, type, state_key, sender, depth, origin_ts,
		pdu, unsigned, state_group, redacted, txn_device, txn_id, txn_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		e.Pos, e.EventID, e.RoomID, e.Type, e.StateKey, e.Sender, e.Depth, e.OriginTS, string(e.JSON()), cmp.Or(string(e.Unsigned), "{}"),
		e.StateGroup, e.Redacted, e.TxnDevice, e.TxnID, key)
	if err != nil {
		t.Fatal(err)
	}
}

// Every query must number its placeholders $1…$n in order of first
// appearance, because SQLite binds by appearance.
func TestPlaceholdersAscending(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	ph := regexp.MustCompile(`\$(\d+)`)
	lit := regexp.MustCompile("(?s)`[^`]*`")
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, _ := os.ReadFile(f)
		for _, q := range lit.FindAllString(string(src), -1) {
			want := 1
			seen := map[int]bool{}
			for _, m := range ph.FindAllStringSubmatch(q, -1) {
				n, _ := strconv.Atoi(m[1])
				if seen[n] {
					continue
				}
				if n != want {
					t.Errorf("%s: placeholder $%d where $%d expected in %s", f, n, want, q)
					break
				}
				seen[n] = true
				want++
			}
		}
	}
}

func TestMigrationsIdempotent(t *testing.T) {
	dir := t.TempDir()
	for range 2 {
		s, err := Open(context.Background(), Options{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
}

// A data directory may hold characters that a SQLite URI reads as syntax
// ('#' starts a fragment, '?' the query, '%' an escape): each store must
// still keep its own database inside its own directory. Test temp dirs of
// same-named subtests end in "#01", "#02", …
func TestOpenDataDirWithURICharacters(t *testing.T) {
	ctx := context.Background()
	base := t.TempDir()
	for _, name := range []string{"a#1", "a#2", "b?x=1", "c%41", "c%2541"} {
		dir := filepath.Join(base, name)
		s, err := Open(ctx, Options{DataDir: dir})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		err = s.InTx(ctx, func(tx *Tx) error { return tx.CreateUser(ctx, User{UserID: "@same:x"}) })
		s.Close()
		if err != nil {
			t.Fatalf("%s: create user: %v", name, err)
		}
		if _, err := os.Stat(filepath.Join(dir, "luxchat.db")); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	entries, _ := os.ReadDir(base)
	if len(entries) != 5 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("want only the 5 data directories in %s, got %q", base, names)
	}
}

func TestAccounts(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		err := s.InTx(ctx, func(tx *Tx) error {
			if err := tx.CreateUser(ctx, User{UserID: "@a:x", PasswordHash: "h"}); err != nil {
				return err
			}
			if err := tx.CreateUser(ctx, User{UserID: "@a:x"}); err != ErrExists {
				t.Errorf("duplicate user: %v", err)
			}
			if err := tx.UpsertDevice(ctx, Device{UserID: "@a:x", DeviceID: "D1"}); err != nil {
				return err
			}
			return tx.InsertAccessToken(ctx, "hash1", "@a:x", "D1", 0)
		})
		if err != nil {
			t.Fatal(err)
		}
		ss, err := s.LookupAccessToken(ctx, "hash1")
		if err != nil || ss.UserID != "@a:x" || ss.DeviceID != "D1" {
			t.Fatalf("lookup: %+v %v", ss, err)
		}
		if _, err := s.LookupAccessToken(ctx, "nope"); err != ErrNotFound {
			t.Fatalf("unknown token: %v", err)
		}
		_ = s.InTx(ctx, func(tx *Tx) error { return tx.DeleteDevice(ctx, "@a:x", "D1") })
		if _, err := s.LookupAccessToken(ctx, "hash1"); err != ErrNotFound {
			t.Fatalf("token survived device deletion: %v", err)
		}
		var id0, id1 int64
		_ = s.InTx(ctx, func(tx *Tx) error {
			id0, _ = tx.PutFilter(ctx, "@a:x", "{}")
			id1, err = tx.PutFilter(ctx, "@a:x", `{"room":{}}`)
			return err
		})
		if id0 != 0 || id1 != 1 {
			t.Fatalf("filter ids %d %d", id0, id1)
		}
		if f, _ := s.GetFilter(ctx, "@a:x", 1); f != `{"room":{}}` {
			t.Fatalf("filter %q", f)
		}
	})
}

func TestStreamsVisibleInOrder(t *testing.T) {
	st := newStream(10)
	a, b := st.alloc(), st.alloc()
	if st.Current() != 10 {
		t.Fatalf("current %d with both pending", st.Current())
	}
	advances := 0
	st.OnAdvance(func() { advances++ })
	if st.Hidden() {
		t.Fatal("hidden with nothing finished")
	}
	st.done(b)
	if st.Current() != 10 {
		t.Fatalf("current %d: %d visible before %d finished", st.Current(), b, a)
	}
	if !st.Hidden() || advances != 0 {
		t.Fatalf("after out-of-order finish: hidden %v, advances %d", st.Hidden(), advances)
	}
	st.done(a)
	if st.Hidden() || advances != 1 {
		t.Fatalf("after in-order finish: hidden %v, advances %d", st.Hidden(), advances)
	}
	if st.Current() != 12 {
		t.Fatalf("current %d, want 12", st.Current())
	}
}

func TestStateGroups(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		var g int64
		var at ChainPos
		var groups []int64
		states := map[int64]StateMap{}
		full := StateMap{}
		// Enough changes of 40 keys for snapshots and carries of every
		// size up to 64.
		for i := range 200 {
			k := StateKey{"m.room.member", "@u" + strconv.Itoa(i%40) + ":x"}
			full[k] = "$e" + strconv.Itoa(i)
			err := s.InTx(ctx, func(tx *Tx) error {
				var err error
				g, at, err = tx.NewStateGroup(ctx, "!r:x", g, at, StateMap{k: full[k]}, len(full), func() StateMap { return maps.Clone(full) })
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			groups = append(groups, g)
			states[g] = maps.Clone(full)
		}
		// Every group reads back as its state, whole or by key; many groups
		// at once answer as each alone, overwritten keys and absent ones
		// included.
		for _, grp := range groups {
			got, err := s.StateGroup(ctx, grp)
			if err != nil || !maps.Equal(got, states[grp]) {
				t.Fatalf("group %d: %d entries, want %d (%v)", grp, len(got), len(states[grp]), err)
			}
		}
		for _, u := range []string{"@u0:x", "@u7:x", "@u39:x", "@nobody:x"} {
			k := StateKey{"m.room.member", u}
			many, err := s.StateGroupEntries(ctx, groups, k)
			if err != nil || len(many) != len(groups) {
				t.Fatalf("entries %d %v", len(many), err)
			}
			for _, grp := range groups {
				one, err := s.StateGroupEntry(ctx, grp, k)
				if err != nil || many[grp] != one || one != states[grp][k] {
					t.Fatalf("group %d %s: %q, alone %q, want %q %v", grp, u, many[grp], one, states[grp][k], err)
				}
			}
		}
		ev, err := s.StateGroupEntry(ctx, g, StateKey{"m.room.member", "@u0:x"})
		if err != nil || ev != "$e160" {
			t.Fatalf("entry %q %v", ev, err)
		}
		if got, err := s.StateGroupChain(ctx, g); err != nil || got != at {
			t.Fatalf("chain position %+v, want %+v (%v)", got, at, err)
		}
	})
}

// TestStateChainsStayShort checks the cost of state groups as a room
// grows to 2,000 members one join at a time: few rows written per join
// (not a snapshot of the room every few joins), few groups walked per
// lookup, and a whole state read back from at most twice its size.
func TestStateChainsStayShort(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		full := StateMap{{"m.room.create", ""}: "$create"}
		var g int64
		var at ChainPos
		err := s.InTx(ctx, func(tx *Tx) error {
			for i := range 2000 {
				k := StateKey{"m.room.member", "@u" + strconv.Itoa(i) + ":x"}
				full[k] = "$join" + strconv.Itoa(i)
				var err error
				if g, at, err = tx.NewStateGroup(ctx, "!big:x", g, at, StateMap{k: full[k]}, len(full), func() StateMap { return maps.Clone(full) }); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		var rows, groups, longest int
		q := `SELECT COUNT(*) FROM state_group_entries`
		if err := s.reader().QueryRowContext(ctx, q).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		// Each group's chain: how many groups a lookup walks.
		for gid := range s.Streams.StateGroups.Current() + 1 {
			var hops int
			err := s.reader().QueryRowContext(ctx, `WITH RECURSIVE chain (group_id, prev_group) AS (
				SELECT group_id, prev_group FROM state_groups WHERE group_id = $1
				UNION ALL SELECT g.group_id, g.prev_group FROM state_groups g JOIN chain c ON g.group_id = c.prev_group)
				SELECT COUNT(*) FROM chain`, gid).Scan(&hops)
			if err != nil {
				t.Fatal(err)
			}
			if hops > 0 {
				groups++
				longest = max(longest, hops)
			}
		}
		t.Logf("%d entry rows for %d groups, lookups walk up to %d groups, %d rows along the last chain", rows, groups, longest, at.Rows)
		// A snapshot every 33 joins wrote about 61,000 rows here.
		if perJoin := float64(rows) / float64(groups); perJoin > 16 {
			t.Errorf("%d entry rows for %d groups: %.1f per join", rows, groups, perJoin)
		}
		if longest > 17 {
			t.Errorf("a lookup walks up to %d groups", longest)
		}
		if at.Rows > len(full) {
			t.Errorf("%d rows along the chain of a state of %d", at.Rows, len(full))
		}
		got, err := s.StateGroup(ctx, g)
		if err != nil || !maps.Equal(got, full) {
			t.Fatalf("state of %d entries, want %d (%v)", len(got), len(full), err)
		}
	})
}

// TestStateEntryPlans checks that a state entry lookup searches
// state_group_entries by key: a plan that scans it costs seconds once a
// sector's rooms have millions of entries.
func TestStateEntryPlans(t *testing.T) {
	s, err := Open(context.Background(), Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The query as written, and as it was before (which the SQLite we
	// ship plans as a scan, so that this test can fail).
	before := strings.Replace(stateEntrySQL, "CROSS JOIN state_group_entries e\n\t\tWHERE e.group_id = c.group_id AND", "JOIN state_group_entries e ON e.group_id = c.group_id\n\t\tWHERE", 1)
	for _, tc := range []struct {
		q        string
		searched bool
	}{{stateEntrySQL, true}, {before, false}} {
		q := tc.q
		rows, err := s.reader().QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+q, 1, "m.room.member", "@a:x")
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, notused int
			var detail string
			if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		joined := strings.Join(plan, "\n")
		if searched := !strings.Contains(joined, "SCAN e") && strings.Contains(joined, "SEARCH e USING"); searched != tc.searched {
			t.Fatalf("searched by key %v, want %v:\n%s", searched, tc.searched, joined)
		}
	}
}

// TestJoinedCountFollowsMemberships checks the joined member count that
// SetMembership keeps in step in the database (no answer read first): a
// profile change (join after join) and a leave after a leave move it not,
// and every transaction's reads see the writes before them.
func TestJoinedCountFollowsMemberships(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		const room = "!count:x"
		steps := []struct {
			user, membership string
			want             int64
		}{
			{"@a:x", "join", 1}, {"@b:x", "join", 2}, {"@a:x", "join", 2}, {"@c:x", "invite", 2},
			{"@a:x", "leave", 1}, {"@a:x", "leave", 1}, {"@c:x", "join", 2}, {"@b:x", "ban", 1}, {"@a:x", "join", 2},
		}
		err := s.InTx(ctx, func(tx *Tx) error {
			if err := tx.CreateRoom(ctx, Room{RoomID: room, Version: "12", Creator: "@a:x"}); err != nil {
				return err
			}
			return tx.SetSummaryJoined(ctx, room, 0)
		})
		if err != nil {
			t.Fatal(err)
		}
		for i, st := range steps {
			var n, counted int64
			err := s.InTx(ctx, func(tx *Tx) error {
				if err := tx.SetMembership(ctx, Membership{RoomID: room, UserID: st.user, Membership: st.membership, EventID: fmt.Sprint("$m", i), Pos: int64(i + 1)}); err != nil {
					return err
				}
				if err := tx.q.QueryRowContext(ctx, `SELECT joined_members FROM room_summaries WHERE room_id = $1`, room).Scan(&n); err != nil {
					return err
				}
				var err error
				counted, err = tx.CountJoined(ctx, room)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if n != st.want || counted != st.want {
				t.Fatalf("after %s %s: count %d, counted %d, want %d", st.user, st.membership, n, counted, st.want)
			}
		}
	})
}

// RoomEvents pages one room's timeline both ways among other rooms'
// events, on both engines (PostgreSQL's statement names the room by a
// one-value range, see inRoomOrdered).
func TestRoomEventsPages(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		err := s.InTx(ctx, func(tx *Tx) error {
			for pos := int64(1); pos <= 30; pos++ {
				room := "!other:hs"
				if pos%3 == 0 {
					room = "!r:hs"
				}
				row := &EventRow{Pos: pos, EventID: fmt.Sprintf("$e%d", pos), RoomID: room, Type: "m.room.message", Sender: "@a:hs",
					PDU: []byte(`{}`), Unsigned: []byte(`{}`)}
				if err := tx.InsertEvent(ctx, row); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		positions := func(rows []*EventRow, err error) string {
			if err != nil {
				t.Fatal(err)
			}
			var ps []string
			for _, r := range rows {
				if r.RoomID != "!r:hs" {
					t.Errorf("event %d of room %s", r.Pos, r.RoomID)
				}
				ps = append(ps, strconv.FormatInt(r.Pos, 10))
			}
			return strings.Join(ps, ",")
		}
		for _, c := range []struct {
			from, to  int64
			backwards bool
			want      string
		}{
			{0, 30, true, "30,27,24,21"},
			{0, 20, true, "18,15,12,9"},
			{10, 30, false, "12,15,18,21"},
			{0, 30, false, "3,6,9,12"},
			{27, 30, false, "30"},
		} {
			if got := positions(s.RoomEvents(ctx, "!r:hs", c.from, c.to, c.backwards, 4)); got != c.want {
				t.Errorf("RoomEvents(%d, %d, backwards %v) = %s, want %s", c.from, c.to, c.backwards, got, c.want)
			}
		}
	})
}

// On PostgreSQL the writers' connections plan each statement once for
// any arguments; the readers' keep the default.
func TestPostgresPlanCacheModes(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *Store) {
		if s.Engine != Postgres {
			t.Skip("PostgreSQL only")
		}
		for _, c := range []struct {
			db   *sql.DB
			want string
		}{{s.w, "force_generic_plan"}, {s.r, "auto"}} {
			var mode string
			if err := c.db.QueryRowContext(t.Context(), `SHOW plan_cache_mode`).Scan(&mode); err != nil || mode != c.want {
				t.Errorf("plan_cache_mode %q %v, want %q", mode, err, c.want)
			}
		}
	})
}
