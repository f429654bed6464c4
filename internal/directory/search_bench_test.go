package directory

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/store"
	"luxchat/internal/testutil/pgtest"
)

var (
	benchFirst = []string{"Jean", "Marie", "Luc", "Anne", "Émile", "Zoë", "Jürgen", "Łukasz", "Søren", "François", "Chloé", "Léa",
		"Paul", "Sophie", "Thomas", "Laura", "Marc", "Julie", "Pedro", "Ana", "João", "Inês", "Giulia", "Marco", "Noah", "Emma",
		"Lukas", "Mia", "Ben", "Lena", "Tom", "Sarah", "Max", "Nina", "Jan", "Eva", "Olivier", "Camille", "Hugo", "Manon"}
	benchLast = []string{"Müller", "Schmit", "Weber", "Wagner", "Hoffmann", "Martin", "Bernard", "Dubois", "Thill", "Schroeder",
		"Reuter", "Kieffer", "Da Silva", "Pereira", "Ferreira", "Rossi", "Becker", "Klein", "Meyer", "Schneider", "Krier",
		"Hansen", "Muller", "Steichen", "Lentz", "Goedert", "Majerus", "Welter", "Feller", "Kremer", "Nilles", "Hoffman",
		"Gonçalves", "Lambert", "Faber", "Braun", "Frisch", "Jacoby", "Kayser", "Wolff"}
	benchQueries = []string{"mar", "müller", "muller", "jean d", "sch", "a", "lukasz", "zzz", "emma weber", "da silva",
		"Søren K", "hoff", "user12", "chloé", "l", "thill marie", "pe", "gonçalves", "krier", "w"}
)

// seedDirectory writes n users with realistic names straight into the
// store (the account hooks would index them one transaction at a time):
// 30% opted in, 5% opted out; the searcher shares 5 rooms of 200 members.
func seedDirectory(b *testing.B, st *store.Store, n int) string {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	const server = "bench.test"
	users := make([]string, n)
	for i := range users {
		users[i] = fmt.Sprintf("@user%d:%s", i, server)
	}
	for start := 0; start < n; start += 1000 {
		err := st.InTx(ctx, func(tx *store.Tx) error {
			for i := start; i < min(start+1000, n); i++ {
				name := benchFirst[rng.IntN(len(benchFirst))] + " " + benchLast[rng.IntN(len(benchLast))]
				if err := tx.CreateUser(ctx, store.User{UserID: users[i], DisplayName: sql.NullString{String: name, Valid: true}}); err != nil {
					return err
				}
				row, terms := directoryEntry(users[i], name, "", true)
				if err := tx.PutDirectoryUser(ctx, row, terms); err != nil {
					return err
				}
				var choice *bool
				switch r := rng.IntN(100); {
				case r < 30:
					choice = new(bool)
					*choice = true
				case r < 35:
					choice = new(bool)
				}
				if err := tx.SetDirectoryOptIn(ctx, users[i], choice); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	searcher := users[0]
	err := st.InTx(ctx, func(tx *store.Tx) error {
		for r := range 5 {
			roomID := fmt.Sprintf("!room%d:%s", r, server)
			if err := tx.CreateRoom(ctx, store.Room{RoomID: roomID, Version: "11", Creator: searcher}); err != nil {
				return err
			}
			members := append([]string{searcher}, users[1+r*200:1+(r+1)*200]...)
			for i, u := range members {
				m := store.Membership{RoomID: roomID, UserID: u, Membership: "join", EventID: fmt.Sprintf("$m%d_%d", r, i), Pos: int64(r*1000 + i + 1)}
				if err := tx.SetMembership(ctx, m); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return searcher
}

// BenchmarkUserDirectorySearch searches 40,000 users with realistic
// queries (one-letter prefixes included) and reports p50/p99 latency, on
// SQLite, and on PostgreSQL too with LUXCHAT_BENCH_POSTGRES=1.
func BenchmarkUserDirectorySearch(b *testing.B) {
	engines := map[string]store.Options{"sqlite": {DataDir: b.TempDir()}}
	// Seeding 40,000 users on PostgreSQL takes a minute: asked for only.
	if os.Getenv("LUXCHAT_TEST_POSTGRES") != "" && os.Getenv("LUXCHAT_BENCH_POSTGRES") != "" {
		engines["postgres"] = store.Options{PostgresDSN: pgtest.NewDatabase(b)}
	}
	for name, opts := range engines {
		b.Run(name, func(b *testing.B) {
			st, err := store.Open(context.Background(), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			searcher := seedDirectory(b, st, 40000)
			cfg := config.Default()
			cfg.ServerName = "bench.test"
			s := New(cfg, st, nil, nil, nil)
			ctx := context.Background()
			var lat []time.Duration
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				q := benchQueries[i%len(benchQueries)]
				t0 := time.Now()
				if _, err := s.SearchUsers(ctx, searcher, q, 10); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			pct := func(p float64) float64 { return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000 }
			b.ReportMetric(pct(0.5), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(pct(1), "max-ms")
		})
	}
}
