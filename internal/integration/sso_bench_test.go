package integration

import (
	"net/http"
	"testing"
	"time"
)

// BenchmarkSSOCallback times the provider's redirect back to luxchat
// (GET /_luxchat/oidc/callback): the flow taken from the store, the code
// exchanged with the PKCE verifier, the ID token verified (keys cached),
// userinfo fetched, the link looked up and a login token stored. The
// provider runs in this process: its own handler time is reported apart
// (op-ns/op) and taken out of server-ns/op, luxchat's share (the loopback
// round trips of its HTTP client stay in it).
func BenchmarkSSOCallback(b *testing.B) {
	e := newSSOEnv(b, false, nil)
	br := newBrowser(b)
	e.login("luxid", "anne.weber", "pw-anne") // the account and link exist; keys fetched
	var total, op time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		cb := e.atProvider(br, e.begin(br, "luxid", appRedirect), "anne.weber", "pw-anne")
		opBefore, start := e.op.Busy(), time.Now()
		b.StartTimer()
		a := get(b, br, cb)
		b.StopTimer()
		total += time.Since(start)
		op += e.op.Busy() - opBefore
		if a.status != http.StatusFound {
			b.Fatalf("callback: %d %s", a.status, a.body)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(op.Nanoseconds())/n, "op-ns/op")
	b.ReportMetric(float64((total-op).Nanoseconds())/n, "server-ns/op")
}
