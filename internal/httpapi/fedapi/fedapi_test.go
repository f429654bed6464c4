package fedapi_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/federation"
	"luxchat/internal/matrix/signing"
	"luxchat/internal/testserver"
)

// fedDo sends a raw request to srv's federation listener, trusting the
// test CA, with the given Authorization header (none when empty).
func fedDo(t *testing.T, fed *testserver.Federation, srv *testserver.Server, method, uri, auth string, body []byte) (int, map[string]any) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(fed.CA)
	host := strings.Split(srv.Config.ServerName, ":")[0]
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: host},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, srv.Config.Listen.Federation)
		},
	}}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, "https://"+srv.Config.ServerName+uri, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	data, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(data, &out)
	return resp.StatusCode, out
}

func sign(t *testing.T, k signing.KeyPair, origin, dest, method, uri string, body []byte) string {
	t.Helper()
	x, err := signing.SignRequest(k, origin, dest, method, uri, body)
	if err != nil {
		t.Fatal(err)
	}
	return x.String()
}

func TestTwoServersFederate(t *testing.T) {
	fed := testserver.NewFederation(t)
	a := testserver.New(t, fed.Server())
	b := testserver.New(t, fed.Server())
	ctx := context.Background()
	aName, bName := a.Config.ServerName, b.Config.ServerName

	var version struct {
		Server struct{ Name, Version string } `json:"server"`
	}
	if err := a.Federation.DoUnsigned(ctx, bName, "GET", "/_matrix/federation/v1/version", nil, &version); err != nil {
		t.Fatal(err)
	}
	if version.Server.Name != "luxchat" || version.Server.Version == "" {
		t.Fatalf("version %+v", version)
	}

	// A fetches B's keys directly.
	pub, err := a.Keys.VerifyKey(ctx, bName, b.Key.ID(), time.Now().UnixMilli())
	if err != nil || !pub.Equal(b.Key.Public()) {
		t.Fatalf("B's key as seen by A: %v", err)
	}

	// A's signed request is accepted by B, which fetches A's key.
	bob := b.Register(t, "bob")
	bob.MustDo("PUT", "/_matrix/client/v3/profile/"+url.PathEscape(bob.UserID)+"/displayname", map[string]string{"displayname": "Bob B"}, nil)
	uri := "/_matrix/federation/v1/query/profile?user_id=" + url.QueryEscape(bob.UserID) + "&field=displayname"
	var profile map[string]string
	if err := a.Federation.Do(ctx, bName, "GET", uri, nil, &profile); err != nil {
		t.Fatal(err)
	}
	if profile["displayname"] != "Bob B" || len(profile) != 1 {
		t.Fatalf("profile %v", profile)
	}
	if st, _ := fedDo(t, fed, b, "GET", uri, sign(t, a.Key, aName, bName, "GET", uri, nil), nil); st != 200 {
		t.Fatalf("raw signed request: %d", st)
	}

	// Forged or modified requests are refused with 401 M_UNAUTHORIZED.
	other, _ := signing.GenerateKeyPair()
	impostor, _ := signing.NewKeyPair(a.Key.Version(), other.Seed())
	otherURI := "/_matrix/federation/v1/query/profile?user_id=" + url.QueryEscape(bob.UserID)
	for name, auth := range map[string]string{
		"no header":        "",
		"bearer token":     "Bearer abc",
		"garbage":          "X-Matrix nonsense",
		"other uri":        sign(t, a.Key, aName, bName, "GET", otherURI, nil),
		"other method":     sign(t, a.Key, aName, bName, "POST", uri, nil),
		"wrong dest":       sign(t, a.Key, aName, "hs99.test:1", "GET", uri, nil),
		"with content":     sign(t, a.Key, aName, bName, "GET", uri, []byte(`{"a":1}`)),
		"impostor key":     sign(t, impostor, aName, bName, "GET", uri, nil),
		"unknown key id":   sign(t, other, aName, bName, "GET", uri, nil),
		"unreachable orig": sign(t, a.Key, "hs98.test:1", bName, "GET", uri, nil),
	} {
		st, body := fedDo(t, fed, b, "GET", uri, auth, nil)
		if st != 401 || body["errcode"] != "M_UNAUTHORIZED" {
			t.Errorf("%s: %d %v", name, st, body)
		}
	}
	// A request claiming to come from B itself is not one B federates with.
	if st, body := fedDo(t, fed, b, "GET", uri, sign(t, a.Key, bName, bName, "GET", uri, nil), nil); st != 403 || body["errcode"] != "M_FORBIDDEN" {
		t.Errorf("claims to be B: %d %v", st, body)
	}
	// A modified body is refused too.
	signed := sign(t, a.Key, aName, bName, "GET", uri, []byte(`{"a":1}`))
	if st, _ := fedDo(t, fed, b, "GET", uri, signed, []byte(`{"a":2}`)); st != 401 {
		t.Errorf("modified body: %d", st)
	}

	// Notary: B answers for A's keys, signed by A and by B.
	var q struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}
	body := map[string]any{"server_keys": map[string]any{aName: map[string]any{a.Key.ID(): map[string]any{"minimum_valid_until_ts": time.Now().UnixMilli()}}}}
	if err := a.Federation.DoUnsigned(ctx, bName, "POST", "/_matrix/key/v2/query", body, &q); err != nil {
		t.Fatal(err)
	}
	if len(q.ServerKeys) != 1 {
		t.Fatalf("notary answer %s", q.ServerKeys)
	}
	if _, err := federation.VerifyResponse(q.ServerKeys[0], aName); err != nil {
		t.Fatal(err)
	}
	if err := signing.VerifyJSON(q.ServerKeys[0], bName, b.Key.ID(), b.Key.Public()); err != nil {
		t.Fatalf("notary signature: %v", err)
	}
	q.ServerKeys = nil
	if err := a.Federation.DoUnsigned(ctx, bName, "GET", "/_matrix/key/v2/query/"+url.PathEscape(bName), nil, &q); err != nil || len(q.ServerKeys) != 1 {
		t.Fatalf("GET query for the notary itself: %v %s", err, q.ServerKeys)
	}
	if _, err := federation.VerifyResponse(q.ServerKeys[0], bName); err != nil {
		t.Fatal(err)
	}

	// With A gone, a third server learns A's key from the notary B.
	c := testserver.New(t, fed.Server())
	aKey := a.Key
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	c.Keys.Notaries = []string{bName}
	pub, err = c.Keys.VerifyKey(ctx, aName, aKey.ID(), time.Now().UnixMilli())
	if err != nil || !pub.Equal(aKey.Public()) {
		t.Fatalf("A's key through the notary: %v", err)
	}
}

func TestAllowedServers(t *testing.T) {
	fed := testserver.NewFederation(t)
	a := testserver.New(t, fed.Server())
	b := testserver.New(t, fed.Server(), testserver.WithConfig(func(c *config.Config) {
		c.Federation.AllowedServers = []string{"*.gouv.example", "police.example:8448"}
	}))
	c := testserver.New(t, fed.Server(), testserver.WithConfig(func(c *config.Config) {
		c.Federation.AllowedServers = []string{"hs*.test"} // no port: any port
	}))
	ctx := context.Background()
	aName, bName, cName := a.Config.ServerName, b.Config.ServerName, c.Config.ServerName
	uri := "/_matrix/federation/v1/query/profile?user_id=" + url.QueryEscape("@nobody:"+bName)

	// Inbound: B refuses A with 403 M_FORBIDDEN.
	var re *federation.RemoteError
	err := a.Federation.Do(ctx, bName, "GET", uri, nil, nil)
	if !errors.As(err, &re) || re.Status != 403 || !strings.Contains(string(re.Body), "M_FORBIDDEN") {
		t.Fatalf("A to B: %v", err)
	}
	// Outbound: B will not send to A, nor anyone to itself.
	if err := b.Federation.Do(ctx, aName, "GET", "/_matrix/federation/v1/version", nil, nil); !errors.Is(err, federation.ErrNotAllowed) {
		t.Fatalf("B to A: %v", err)
	}
	if err := a.Federation.Do(ctx, aName, "GET", "/_matrix/federation/v1/version", nil, nil); !errors.Is(err, federation.ErrNotAllowed) {
		t.Fatalf("A to itself: %v", err)
	}
	// C allows hs*.test: A and C talk both ways (404 M_NOT_FOUND means
	// authenticated and answered).
	for _, p := range [][2]*testserver.Server{{a, c}, {c, a}} {
		from, to := p[0], p[1]
		err := from.Federation.Do(ctx, to.Config.ServerName, "GET", "/_matrix/federation/v1/query/profile?user_id="+url.QueryEscape("@nobody:"+to.Config.ServerName), nil, nil)
		if !errors.As(err, &re) || re.Status != 404 {
			t.Fatalf("%s to %s: %v", from.Config.ServerName, to.Config.ServerName, err)
		}
	}
	_ = cName
}

func TestDenyNetworks(t *testing.T) {
	fed := testserver.NewFederation(t)
	b := testserver.New(t, fed.Server())
	a := testserver.New(t, fed.Server(), testserver.WithConfig(func(c *config.Config) {
		c.Federation.DenyNetworks = append([]string(nil), config.DefaultDenyNetworks...)
	}))
	err := a.Federation.DoUnsigned(context.Background(), b.Config.ServerName, "GET", "/_matrix/federation/v1/version", nil, nil)
	if !errors.Is(err, federation.ErrDeniedNetwork) {
		t.Fatalf("loopback target with default deny_networks: %v", err)
	}
	// B (deny_networks cleared) reaches A.
	if err := b.Federation.DoUnsigned(context.Background(), a.Config.ServerName, "GET", "/_matrix/federation/v1/version", nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestServerKeysAndWellKnown(t *testing.T) {
	fed := testserver.NewFederation(t)
	dir := t.TempDir()
	old, _ := signing.GenerateKeyPair()
	line := old.ID() + " " + old.PublicBase64() + " 1600000000000\n"
	if err := os.WriteFile(filepath.Join(dir, "old_signing.keys"), []byte("# retired\n"+line), 0o600); err != nil {
		t.Fatal(err)
	}
	a := testserver.New(t, fed.Server(), testserver.WithConfig(func(c *config.Config) {
		c.DataDir = dir
		c.Federation.WellKnownServer = "matrix.hs.test:443"
	}))
	st, body := fedDo(t, fed, a, "GET", "/_matrix/key/v2/server", "", nil)
	if st != 200 {
		t.Fatal(st)
	}
	raw, _ := json.Marshal(body)
	r, err := federation.VerifyResponse(raw, a.Config.ServerName)
	if err != nil {
		t.Fatal(err)
	}
	week := time.Now().Add(federation.OwnKeyLifetime).UnixMilli()
	if r.ValidUntilTS < week-60000 || r.ValidUntilTS > week+60000 {
		t.Errorf("valid_until_ts %d", r.ValidUntilTS)
	}
	if ok := r.OldVerifyKeys[old.ID()]; ok.Key != old.PublicBase64() || ok.ExpiredTS != 1600000000000 {
		t.Errorf("old_verify_keys %+v", r.OldVerifyKeys)
	}
	if r.VerifyKeys[a.Key.ID()].Key != a.Key.PublicBase64() {
		t.Errorf("verify_keys %+v", r.VerifyKeys)
	}
	// Unknown federation endpoints answer 404 M_UNRECOGNIZED.
	if st, body := fedDo(t, fed, a, "GET", "/_matrix/federation/v1/nope", "", nil); st != 404 || body["errcode"] != "M_UNRECOGNIZED" {
		t.Errorf("unknown endpoint: %d %v", st, body)
	}

	var wk map[string]string
	a.Anonymous(t).MustDo("GET", "/.well-known/matrix/server", nil, &wk)
	if wk["m.server"] != "matrix.hs.test:443" {
		t.Errorf("well-known %v", wk)
	}
	plain := testserver.New(t)
	if r := plain.Anonymous(t).Do("GET", "/.well-known/matrix/server", nil); r.Status != 404 {
		t.Errorf("well-known without delegation: %d", r.Status)
	}
	if plain.FederationHandler() != nil {
		t.Error("federation listener without listen.federation")
	}
}

// The first requests of a new origin arrive together: they share one key
// fetch and all succeed.
func TestConcurrentFirstRequests(t *testing.T) {
	fed := testserver.NewFederation(t)
	a := testserver.New(t, fed.Server())
	b := testserver.New(t, fed.Server())
	bob := b.Register(t, "bob")
	uri := "/_matrix/federation/v1/query/profile?user_id=" + url.QueryEscape(bob.UserID)
	errs := make(chan error, 16)
	for i := 0; i < cap(errs); i++ {
		go func() { errs <- a.Federation.Do(context.Background(), b.Config.ServerName, "GET", uri, nil, nil) }()
	}
	for i := 0; i < cap(errs); i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
