package federation

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// fakeDNS answers from maps and records the SRV names asked for.
type fakeDNS struct {
	srv    map[string][]*net.SRV // "_service._proto.name"
	hosts  map[string][]netip.Addr
	srvLog []string
}

func (d *fakeDNS) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	key := "_" + service + "._" + proto + "." + name
	d.srvLog = append(d.srvLog, key)
	if recs, ok := d.srv[key]; ok {
		return "", recs, nil
	}
	return "", nil, &net.DNSError{Err: "no such host", Name: key, IsNotFound: true}
}

func (d *fakeDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if a, ok := d.hosts[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// wellKnownServer serves /.well-known/matrix/server per requested host
// over TLS; the returned client sends every connection to it.
type wellKnownServer struct {
	answers map[string]func(w http.ResponseWriter) // by Host
	hits    atomic.Int64
}

func newWellKnown(t *testing.T) (*wellKnownServer, *http.Client) {
	wk := &wellKnownServer{answers: map[string]func(http.ResponseWriter){}}
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wk.hits.Add(1)
		if r.URL.Path != "/.well-known/matrix/server" {
			http.NotFound(w, r)
			return
		}
		if f, ok := wk.answers[r.Host]; ok {
			f(w)
			return
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(ts.Close)
	c := ts.Client()
	tr := c.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.InsecureSkipVerify = true // the test server's certificate is for 127.0.0.1
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, ts.Listener.Addr().String())
	}
	return wk, &http.Client{Transport: tr}
}

func body(s string) func(http.ResponseWriter) {
	return func(w http.ResponseWriter) { w.Header().Set("Content-Type", "application/json"); w.Write([]byte(s)) }
}

func TestResolveOrder(t *testing.T) {
	wk, client := newWellKnown(t)
	wk.answers["delegated-ip.test"] = body(`{"m.server":"[2001:db8::1]"}`)
	wk.answers["delegated-port.test"] = body(`{"m.server":"matrix.delegated.test:1234"}`)
	wk.answers["delegated-srv.test"] = body(`{"m.server":"srv.delegated.test"}`)
	wk.answers["delegated-oldsrv.test"] = body(`{"m.server":"oldsrv.delegated.test"}`)
	wk.answers["delegated-plain.test"] = body(`{"m.server":"plain.delegated.test"}`)
	wk.answers["bad-json.test"] = body(`{"m.server":`)
	wk.answers["bad-name.test"] = body(`{"m.server":"a b"}`)
	wk.answers["error.test"] = func(w http.ResponseWriter) { w.WriteHeader(500) }
	dns := &fakeDNS{srv: map[string][]*net.SRV{
		"_matrix-fed._tcp.srv.delegated.test":  {{Target: "target1.test.", Port: 8001}, {Target: "target2.test.", Port: 8002}},
		"_matrix._tcp.srv.delegated.test":      {{Target: "never.test.", Port: 1}},
		"_matrix._tcp.oldsrv.delegated.test":   {{Target: "old.test.", Port: 8003}},
		"_matrix-fed._tcp.srv-only.test":       {{Target: "fed.target.test.", Port: 8004}},
		"_matrix._tcp.old-srv-only.test":       {{Target: "legacy.target.test.", Port: 8005}},
		"_matrix-fed._tcp.error.test":          {{Target: ".", Port: 0}}, // "no service"
		"_matrix-fed._tcp.bad-json.test":       {{Target: "after-bad-json.test", Port: 8006}},
		"_matrix-fed._tcp.explicit.test":       {{Target: "never.test.", Port: 1}},
		"_matrix-fed._tcp.delegated-port.test": {{Target: "never.test.", Port: 1}},
	}}
	r := NewResolver(dns, client)
	d := func(host, port, hostHeader, tlsName string) []Destination {
		return []Destination{{Host: host, Port: port, HostHeader: hostHeader, TLSName: tlsName}}
	}
	cases := []struct {
		name string
		want []Destination
	}{
		// 1. IP literals, with or without port.
		{"1.2.3.4", d("1.2.3.4", "8448", "1.2.3.4", "1.2.3.4")},
		{"1.2.3.4:99", d("1.2.3.4", "99", "1.2.3.4:99", "1.2.3.4")},
		{"[2001:db8::2]:99", d("2001:db8::2", "99", "[2001:db8::2]:99", "2001:db8::2")},
		// 2. Explicit port: no well-known, no SRV.
		{"explicit.test:8443", d("explicit.test", "8443", "explicit.test:8443", "explicit.test")},
		// 3.1 – 3.5 well-known delegation.
		{"delegated-ip.test", d("2001:db8::1", "8448", "[2001:db8::1]", "2001:db8::1")},
		{"delegated-port.test", d("matrix.delegated.test", "1234", "matrix.delegated.test:1234", "matrix.delegated.test")},
		{"delegated-srv.test", []Destination{
			{Host: "target1.test", Port: "8001", HostHeader: "srv.delegated.test", TLSName: "srv.delegated.test"},
			{Host: "target2.test", Port: "8002", HostHeader: "srv.delegated.test", TLSName: "srv.delegated.test"},
		}},
		{"delegated-oldsrv.test", d("old.test", "8003", "oldsrv.delegated.test", "oldsrv.delegated.test")},
		{"delegated-plain.test", d("plain.delegated.test", "8448", "plain.delegated.test", "plain.delegated.test")},
		// 4, 5: no (valid) well-known: SRV of the hostname.
		{"srv-only.test", d("fed.target.test", "8004", "srv-only.test", "srv-only.test")},
		{"old-srv-only.test", d("legacy.target.test", "8005", "old-srv-only.test", "old-srv-only.test")},
		{"bad-json.test", d("after-bad-json.test", "8006", "bad-json.test", "bad-json.test")},
		// 6: nothing: the hostname on 8448.
		{"error.test", d("error.test", "8448", "error.test", "error.test")},
		{"bad-name.test", d("bad-name.test", "8448", "bad-name.test", "bad-name.test")},
		{"nothing.test", d("nothing.test", "8448", "nothing.test", "nothing.test")},
	}
	for _, c := range cases {
		got, err := r.Resolve(context.Background(), c.name)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}
	for _, bad := range []string{"", "a b", "host:port", "[::1"} {
		if _, err := r.Resolve(context.Background(), bad); err == nil {
			t.Errorf("Resolve(%q) accepted", bad)
		}
	}
}

func TestWellKnownCache(t *testing.T) {
	wk, client := newWellKnown(t)
	now := time.Unix(1_000_000, 0)
	r := NewResolver(&fakeDNS{}, client)
	r.Now = func() time.Time { return now }
	resolveHost := func(name string) string {
		t.Helper()
		ds, err := r.Resolve(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		return ds[0].Host
	}

	// Cache-Control max-age is honoured.
	wk.answers["a.test"] = func(w http.ResponseWriter) {
		w.Header().Set("Cache-Control", "public, max-age=600")
		w.Write([]byte(`{"m.server":"one.test:1"}`))
	}
	if h := resolveHost("a.test"); h != "one.test" {
		t.Fatal(h)
	}
	wk.answers["a.test"] = body(`{"m.server":"two.test:1"}`)
	now = now.Add(599 * time.Second)
	if h := resolveHost("a.test"); h != "one.test" {
		t.Fatalf("cached answer not used: %s", h)
	}
	now = now.Add(2 * time.Second)
	if h := resolveHost("a.test"); h != "two.test" {
		t.Fatalf("expired answer used: %s", h)
	}
	// No headers: 24 hours.
	now = now.Add(24*time.Hour - time.Second)
	wk.answers["a.test"] = body(`{"m.server":"three.test:1"}`)
	if h := resolveHost("a.test"); h != "two.test" {
		t.Fatalf("default lifetime: %s", h)
	}
	now = now.Add(2 * time.Second)
	if h := resolveHost("a.test"); h != "three.test" {
		t.Fatalf("after default lifetime: %s", h)
	}

	// Errors are cached with exponential back-off, at most an hour.
	before := wk.hits.Load()
	wk.answers["b.test"] = func(w http.ResponseWriter) { w.WriteHeader(503) }
	resolveHost("b.test")
	var backoffs []time.Duration
	for i := 0; i < 9; i++ {
		e := r.cache["b.test"]
		backoffs = append(backoffs, e.expires.Sub(now))
		now = e.expires
		resolveHost("b.test")
	}
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour, time.Hour}
	if !reflect.DeepEqual(backoffs, want) {
		t.Errorf("back-off %v", backoffs)
	}
	if hits := wk.hits.Load() - before; hits != 10 {
		t.Errorf("%d well-known requests, want 10", hits)
	}
	// A success resets the back-off.
	wk.answers["b.test"] = body(`{"m.server":"back.test:1"}`)
	now = r.cache["b.test"].expires
	if h := resolveHost("b.test"); h != "back.test" || r.cache["b.test"].failures != 0 {
		t.Errorf("after recovery: %s %+v", h, r.cache["b.test"])
	}
}

func TestCacheTTL(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	cases := []struct {
		h    http.Header
		want time.Duration
	}{
		{h(), 24 * time.Hour},
		{h("Cache-Control", "max-age=3600"), time.Hour},
		{h("Cache-Control", "max-age=999999999"), 48 * time.Hour},
		{h("Cache-Control", "no-store"), 0},
		{h("Cache-Control", "private, no-cache"), 0},
		{h("Expires", now.Add(2*time.Hour).UTC().Format(http.TimeFormat)), 2 * time.Hour},
		{h("Expires", now.Add(100*time.Hour).UTC().Format(http.TimeFormat)), 48 * time.Hour},
		{h("Expires", "0"), 0},
		{h("Expires", now.Add(2*time.Hour).UTC().Format(http.TimeFormat), "Cache-Control", "max-age=60"), time.Minute},
	}
	for i, c := range cases {
		if got := cacheTTL(c.h, now); got != c.want {
			t.Errorf("case %d (%v): %v, want %v", i, c.h, got, c.want)
		}
	}
}

func TestPolicy(t *testing.T) {
	p, err := NewPolicy("self.test", []string{"*.gouv.test", "police.test:8448", "[::1]:80", "exact.test"}, []string{"127.0.0.0/8", "fc00::/7", "10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	for name, ok := range map[string]bool{
		"a.gouv.test": true, "a.b.gouv.test:8448": true, "gouv.test": false, "evilgouv.test": false,
		"police.test:8448": true, "police.test": false, "police.test:1": false,
		"exact.test": true, "exact.test:9": true, "[::1]:80": true, "[::1]": false,
		"self.test": false, "other.test": false,
	} {
		if err := p.Allowed(name); (err == nil) != ok || (err != nil && !errors.Is(err, ErrNotAllowed)) {
			t.Errorf("Allowed(%q) = %v, want allowed=%v", name, err, ok)
		}
	}
	open, _ := NewPolicy("self.test", nil, nil)
	if open.Allowed("anything.example") != nil || open.Allowed("self.test") == nil {
		t.Error("open federation")
	}
	for addr, denied := range map[string]bool{"127.0.0.1": true, "10.1.2.3": true, "::ffff:10.1.2.3": true, "fd00::1": true, "8.8.8.8": false, "2001:db8::1": false} {
		if got := p.DeniedAddr(netip.MustParseAddr(addr)); got != denied {
			t.Errorf("DeniedAddr(%s) = %v", addr, got)
		}
	}
	if _, err := NewPolicy("s", nil, []string{"10.0.0.0"}); err == nil {
		t.Error("bad CIDR accepted")
	}
	for i, c := range []struct {
		pattern, name string
		want          bool
	}{{"*", "x", true}, {"a*b*c", "abc", true}, {"a*b*c", "a-b-c-c", true}, {"a*a", "a", false}, {"*.x", ".x", true}, {"a*", "b", false}} {
		if MatchServer(c.pattern, c.name) != c.want {
			t.Errorf("case %d: MatchServer(%q, %q) != %v", i, c.pattern, c.name, c.want)
		}
	}
}

func TestClientRefusesDeniedAndDisallowed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	dns := &fakeDNS{hosts: map[string][]netip.Addr{"loop.test": {netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}}}
	p, _ := NewPolicy("self.test", []string{"*.test", "127.0.0.1", "[::1]"}, []string{"127.0.0.0/8", "::1/128"})
	c := NewClient("self.test", mustKey(t), p, dns, nil)
	for _, dest := range []string{"loop.test:" + port, "127.0.0.1:" + port, "[::1]:" + port} {
		err := c.DoUnsigned(context.Background(), dest, "GET", "/_matrix/federation/v1/version", nil, nil)
		if !errors.Is(err, ErrDeniedNetwork) {
			t.Errorf("%s: %v", dest, err)
		}
	}
	if err := c.Do(context.Background(), "elsewhere.example", "GET", "/x", nil, nil); !errors.Is(err, ErrNotAllowed) {
		t.Errorf("outside allowed_servers: %v", err)
	}
}

func TestWellKnownRedirects(t *testing.T) {
	wk, client := newWellKnown(t)
	client.CheckRedirect = httpsRedirectsOnly
	redirect := func(to string) func(http.ResponseWriter) {
		return func(w http.ResponseWriter) { w.Header().Set("Location", to); w.WriteHeader(http.StatusFound) }
	}
	wk.answers["moved.test"] = redirect("https://elsewhere.test/.well-known/matrix/server")
	wk.answers["elsewhere.test"] = body(`{"m.server":"real.test:1"}`)
	wk.answers["downgrade.test"] = redirect("http://elsewhere.test/.well-known/matrix/server")
	wk.answers["loop.test"] = redirect("https://loop.test/.well-known/matrix/server")
	r := NewResolver(&fakeDNS{}, client)
	for name, want := range map[string]string{"moved.test": "real.test", "downgrade.test": "downgrade.test", "loop.test": "loop.test"} {
		ds, err := r.Resolve(context.Background(), name)
		if err != nil || ds[0].Host != want {
			t.Errorf("%s: %+v %v, want host %s", name, ds, err, want)
		}
	}
}
