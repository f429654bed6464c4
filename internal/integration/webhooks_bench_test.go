package integration

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// BenchmarkWebhookPost measures a webhook post to a message in the room:
// from the POST of an Alertmanager notification of a new alert (parse,
// hook check, rate limit, one message posted and its alert recorded) to
// the moment a member's long-polling /sync returns that message. It
// reports the median and the p99 of that time and the process's CPU per
// post (server and client in one process).
//
//	go test ./internal/integration -run XXX -bench WebhookPost -benchtime 2000x
func BenchmarkWebhookPost(b *testing.B) {
	forEachBenchEngine(b, func(b *testing.B, opts ...ts.Option) {
		opts = append(opts, ts.WithConfig(func(c *config.Config) {
			c.Encryption.Default = false
			c.Webhooks.RatePerSecond, c.Webhooks.RateBurst = 1e6, 1e6
		}))
		s := ts.New(b, opts...)
		admin := makeAdmin(b, s, s.Register(b, "admin"))
		room := admin.CreateRoom(map[string]any{"preset": "public_chat"})
		var made struct {
			Webhook hookInfo `json:"webhook"`
		}
		admin.MustDo("POST", "/_luxchat/admin/v1/webhooks", map[string]string{"room": room}, &made)
		hook := hookPath(s, made.Webhook.URL)
		filter := url.QueryEscape(`{"presence":{"not_types":["*"]},"account_data":{"not_types":["*"]},"room":{"timeline":{"limit":5},"state":{"lazy_load_members":true},"ephemeral":{"not_types":["*"]}}}`)
		since := doSync(b, admin, "timeout=0&filter="+filter).NextBatch
		client := &http.Client{Timeout: 30 * time.Second}
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		cpu0 := cpuTime()
		for i := 0; i < b.N; i++ {
			body := fmt.Sprintf(`{"version":"4","groupKey":"{}:{alertname=\"Bench\"}","status":"firing","receiver":"bench","externalURL":"http://am.example:9093",
"commonLabels":{"alertname":"Bench","severity":"warning"},"alerts":[{"status":"firing","labels":{"alertname":"Bench","severity":"warning","instance":"host-%d:9100","job":"node"},
"annotations":{"summary":"Bench alert %d","description":"something is wrong on host-%d"},"startsAt":"2026-12-07T10:00:00Z","endsAt":"0001-01-01T00:00:00Z",
"generatorURL":"http://prometheus.example:9090/graph?g0.expr=up","fingerprint":"%016x"}]}`, i, i, i, i)
			done := make(chan syncResp, 1)
			go func(since string) {
				done <- doSync(b, admin, "timeout=10000&filter="+filter+"&since="+url.QueryEscape(since))
			}(since)
			start := time.Now()
			resp, err := client.Post(hook, "application/json", strings.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("post %d: %d", i, resp.StatusCode)
			}
			want := fmt.Sprintf("Bench alert %d", i)
			for seen := false; !seen; {
				sr := <-done
				since = sr.NextBatch
				for _, e := range sr.Rooms.Join[room].Timeline.Events {
					if b, _ := e.Content["body"].(string); strings.Contains(b, want) {
						seen = true
					}
				}
				if !seen {
					go func(since string) {
						done <- doSync(b, admin, "timeout=10000&filter="+filter+"&since="+url.QueryEscape(since))
					}(since)
				}
			}
			lat = append(lat, time.Since(start))
		}
		cpu := cpuTime() - cpu0
		b.StopTimer()
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/post")
	})
}
