package integration

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"luxchat/internal/store"
)

// BenchmarkAdminUserList measures one page (100 users) of
// GET /_synapse/admin/v2/users over LUXCHAT_BENCH_USERS (default 40,000)
// accounts created through the store, through HTTP, for the orders and
// filters operators' tools use; with the server's CPU per page
// (cpu-ms/op, and the database's on PostgreSQL: see reportCPU).
//
//	go test ./internal/integration -run '^$' -bench AdminUserList -benchtime 200x
//	LUXCHAT_BENCH_ENGINE=postgres go test ./internal/integration -run '^$' -bench AdminUserList -benchtime 200x
func BenchmarkAdminUserList(b *testing.B) {
	n := 40_000
	if v, err := strconv.Atoi(os.Getenv("LUXCHAT_BENCH_USERS")); err == nil && v > 0 {
		n = v
	}
	s := bigRoomServer(b)
	ctx := context.Background()
	reg := s.Register(b, "admin")
	if err := s.Store.InTx(ctx, func(tx *store.Tx) error { return tx.SetAdmin(ctx, reg.UserID, true) }); err != nil {
		b.Fatal(err)
	}
	admin := adminLoginAs(b, s, reg.UserID, "correct horse battery")
	const batch = 5000
	for start := 0; start < n; start += batch {
		err := s.Store.InTx(ctx, func(tx *store.Tx) error {
			for i := start; i < min(start+batch, n); i++ {
				u := store.User{UserID: fmt.Sprintf("@user%05d:%s", i, s.Config.ServerName),
					DisplayName: sql.NullString{String: fmt.Sprintf("Agent %05d", (i*7919)%n), Valid: i%10 != 0}, CreatedTS: int64(1_700_000_000_000 + i)}
				if err := tx.CreateUser(ctx, u); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if strings.HasPrefix(s.Config.Database, "postgres") {
		// As autovacuum does soon after 40,000 inserts on a server in use:
		// statistics, and the visibility map that index-only scans need.
		db, err := sql.Open("pgx", s.Config.Database)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "VACUUM ANALYZE users"); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct{ name, query string }{
		{"first", "limit=100"},
		{"middle", "limit=100&from=20000"},
		{"last", fmt.Sprintf("limit=100&from=%d", n-100)},
		{"displayname", "limit=100&from=20000&order_by=displayname"},
		{"creation_ts_b", "limit=100&from=20000&order_by=creation_ts&dir=b"},
		{"name_filter", "limit=100&name=" + esc("agent 1")},
		{"admins", "limit=100&admins=false&from=20000"},
	} {
		b.Run(c.name, func(b *testing.B) {
			path := synapseAdmin + "/v2/users?" + c.query
			if r := admin.Do("GET", path, nil); r.Status != http.StatusOK {
				b.Fatalf("%d %s", r.Status, r.Body)
			}
			cpu := serverCPU(b, s)
			b.ResetTimer()
			for range b.N {
				if r := admin.Do("GET", path, nil); r.Status != http.StatusOK {
					b.Fatalf("%d %s", r.Status, r.Body)
				}
			}
			b.StopTimer()
			reportCPU(b, s, cpu)
		})
	}
}
