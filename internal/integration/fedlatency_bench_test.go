package integration

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	ts "luxchat/internal/testserver"
)

// BenchmarkFederatedDelivery measures how long a message sent on one of
// four federating servers takes to show up in the long-polling /sync of a
// user on each of the three others. Every user sends in turn, at
// fedBenchRate messages a second in all; each run sends fedBenchMessages
// messages and reports the p50, p99 and max over every (message, remote
// receiver) pair. The police server runs on PostgreSQL when
// LUXCHAT_TEST_POSTGRES is set, the others on SQLite.
//
//	go test ./internal/integration -run '^$' -bench FederatedDelivery -benchtime=1x
func BenchmarkFederatedDelivery(b *testing.B) {
	const fedBenchMessages, fedBenchRate = 200, 50
	fed := ts.NewFederation(b)
	var users []*ts.Client
	var servers []*ts.Server
	for _, host := range sectors {
		opts := []ts.Option{fed.ServerNamed(host), closedTo(sectors...)}
		if host == "police.test" && os.Getenv("LUXCHAT_TEST_POSTGRES") != "" {
			opts = append(opts, ts.WithPostgres(b))
		}
		s := ts.New(b, opts...)
		servers = append(servers, s)
		users = append(users, s.Register(b, "u"+strings.TrimSuffix(host, ".test")))
	}
	room := users[0].CreateRoom(map[string]any{"preset": "public_chat"})
	for _, u := range users[1:] {
		u.MustDo("POST", "/_matrix/client/v3/join/"+esc(room)+"?server_name="+url.QueryEscape(servers[0].Config.ServerName), map[string]any{}, nil)
	}

	// One long-polling /sync per user records when each message shows up.
	type key struct {
		msg  string
		user int
	}
	var mu gosync.Mutex
	sentAt := map[string]time.Time{}
	seenAt := map[key]time.Time{}
	stop := make(chan struct{})
	ready := make(chan struct{}, len(users))
	for i, u := range users {
		go func() {
			fedBenchSync(u, room, stop, ready, func(body string, at time.Time) {
				mu.Lock()
				if _, dup := seenAt[key{body, i}]; !dup {
					seenAt[key{body, i}] = at
				}
				mu.Unlock()
			})
		}()
	}
	for range users {
		<-ready
	}
	// Every user must see every other server's messages before timing.
	warm := map[string]bool{}
	for i, u := range users {
		body := fmt.Sprintf("warm-up %d", i)
		warm[body] = true
		u.SendText(room, body)
	}
	fedBenchWait(b, &mu, func() bool {
		n := 0
		for k := range seenAt {
			if warm[k.msg] {
				n++
			}
		}
		return n == len(users)*len(users)
	}, func() string { return "warm-up messages missing" })

	var lat []time.Duration
	byReceiver := make([][]time.Duration, len(users))
	b.ResetTimer()
	for run := range b.N {
		tick := time.NewTicker(time.Second / fedBenchRate)
		var sends gosync.WaitGroup
		for m := range fedBenchMessages {
			<-tick.C
			from := m % len(users)
			body := fmt.Sprintf("bench %d.%d from %d", run, m, from)
			mu.Lock()
			sentAt[body] = time.Now()
			mu.Unlock()
			sends.Add(1)
			go func() {
				defer sends.Done()
				users[from].SendText(room, body)
			}()
		}
		tick.Stop()
		sends.Wait()
		fedBenchWait(b, &mu, func() bool {
			n := 0
			for k := range seenAt {
				if strings.HasPrefix(k.msg, fmt.Sprintf("bench %d.", run)) {
					n++
				}
			}
			return n >= fedBenchMessages*len(users)
		}, func() string {
			var missing []string
			for m := range fedBenchMessages {
				for i := range users {
					body := fmt.Sprintf("bench %d.%d from %d", run, m, m%len(users))
					if _, ok := seenAt[key{body, i}]; !ok {
						missing = append(missing, fmt.Sprintf("%q at %d", body, i))
					}
				}
			}
			return fmt.Sprintf("%d not seen: %s", len(missing), strings.Join(missing[:min(len(missing), 20)], ", "))
		})
	}
	b.StopTimer()
	close(stop)
	mu.Lock()
	for k, at := range seenAt {
		var from int
		if _, err := fmt.Sscanf(k.msg[strings.LastIndex(k.msg, " ")+1:], "%d", &from); err != nil || from == k.user {
			continue
		}
		if t0, ok := sentAt[k.msg]; ok {
			lat = append(lat, at.Sub(t0))
			byReceiver[k.user] = append(byReceiver[k.user], at.Sub(t0))
		}
	}
	mu.Unlock()
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no samples")
	}
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d samples: p50 %.1f ms, p99 %.1f ms, max %.1f ms", len(lat), pct(0.5), pct(0.99), float64(lat[len(lat)-1].Microseconds())/1000)
	for i, l := range byReceiver {
		slices.Sort(l)
		if len(l) > 0 {
			b.Logf("received on %s: p50 %v, p99 %v", sectors[i], l[len(l)/2], l[min(len(l)-1, len(l)*99/100)])
		}
	}
}

// fedBenchWait waits (up to 30 s) until done, checked under mu; what
// says what is missing.
func fedBenchWait(b *testing.B, mu *gosync.Mutex, done func() bool, what func() string) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		ok := done()
		mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			mu.Lock()
			defer mu.Unlock()
			b.Fatalf("messages not delivered within 30 s: %s", what())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fedBenchSync long-polls /sync for u until stop, reporting each message
// body of the room with the time its response arrived. It signals ready
// after the initial sync.
func fedBenchSync(u *ts.Client, room string, stop <-chan struct{}, ready chan<- struct{}, seen func(body string, at time.Time)) {
	hc := &http.Client{Timeout: time.Minute}
	since := ""
	first := true
	for {
		select {
		case <-stop:
			return
		default:
		}
		// A large timeline limit: a gappy (limited) timeline would hide
		// messages of a burst.
		q := "filter=" + url.QueryEscape(`{"room":{"timeline":{"limit":500}}}`) + "&timeout=30000"
		if since != "" {
			q += "&since=" + url.QueryEscape(since)
		} else {
			q += "&timeout=0"
		}
		req, _ := http.NewRequest("GET", u.URL+"/_matrix/client/v3/sync?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+u.Token)
		resp, err := hc.Do(req)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		at := time.Now()
		var s struct {
			NextBatch string `json:"next_batch"`
			Rooms     struct {
				Join map[string]struct {
					Timeline struct {
						Events []struct {
							Type    string `json:"type"`
							Content struct {
								Body string `json:"body"`
							} `json:"content"`
						} `json:"events"`
					} `json:"timeline"`
				} `json:"join"`
			} `json:"rooms"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &s) != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		since = s.NextBatch
		if first {
			first = false
			ready <- struct{}{}
			continue
		}
		for _, e := range s.Rooms.Join[room].Timeline.Events {
			if e.Type == "m.room.message" {
				seen(e.Content.Body, at)
			}
		}
	}
}
