package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestTemplateIsTheDefault(t *testing.T) {
	c, err := Parse([]byte(Template))
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if !reflect.DeepEqual(c, d) {
		t.Fatalf("template differs from defaults:\n%+v\n%+v", c, d)
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	c, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "localhost" || c.Registration.Mode != "closed" || !c.RateLimits.Enabled {
		t.Fatalf("unexpected defaults %+v", c)
	}
}

func TestUnknownKeyNamed(t *testing.T) {
	_, err := Parse([]byte("server_name: a\nregistration:\n  mdoe: open\n"))
	if err == nil || !strings.Contains(err.Error(), `"mdoe"`) {
		t.Fatalf("want error naming mdoe, got %v", err)
	}
}

func TestInvalidValues(t *testing.T) {
	for _, in := range []string{
		"registration: {mode: maybe}",
		"database: mysql://x",
		"server_name: ''",
		"auth: {access_token_lifetime: soon}",
		"media: {legacy_unauthenticated: sometimes}",
		"media: {max_upload_bytes: 0}",
		"media: {quota_bytes: -1}",
		"media: {unused_expiry: 1s}",
		"media: {max_pending_uploads: 0}",
	} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestKeys(t *testing.T) {
	c, err := Parse([]byte("server_name: police.test\nlisten: {client: '0.0.0.0:9000'}\ndata_dir: /x\ndatabase: postgres://u@h/db\nregistration: {mode: token, shared_secret: s}\nrate_limits: {enabled: false}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "police.test" || c.Listen.Client != "0.0.0.0:9000" || c.DataDir != "/x" ||
		c.Registration.Mode != "token" || c.Registration.SharedSecret != "s" || c.RateLimits.Enabled {
		t.Fatalf("%+v", c)
	}
	if dsn, ok := c.PostgresDSN(); !ok || dsn != "postgres://u@h/db" {
		t.Fatal("dsn")
	}
}

func TestEnvReferences(t *testing.T) {
	t.Setenv("LUXCHAT_TEST_NAME", "hs1")
	c, err := Parse([]byte("server_name: ${LUXCHAT_TEST_NAME}\nregistration: {shared_secret: a$b}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "hs1" || c.Registration.SharedSecret != "a$b" {
		t.Fatalf("%q %q", c.ServerName, c.Registration.SharedSecret)
	}
}

func TestComplementConfig(t *testing.T) {
	t.Setenv("SERVER_NAME", "hs2")
	c, err := Load("../../build/complement/complement.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.ServerName != "hs2" || c.Registration.Mode != "open" || c.Registration.SharedSecret != "complement" || c.RateLimits.Enabled {
		t.Fatalf("%+v", c)
	}
}

func TestMediaKeys(t *testing.T) {
	c, err := Parse([]byte("media: {max_upload_bytes: 5000, quota_bytes: 10000, legacy_unauthenticated: open, max_pending_uploads: 3, unused_expiry: 1h}\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := c.Media
	if m.MaxUploadBytes != 5000 || m.QuotaBytes != 10000 || m.LegacyUnauthenticated != MediaLegacyOpen ||
		m.MaxPendingUploads != 3 || m.UnusedExpiry.Hours() != 1 {
		t.Fatalf("%+v", m)
	}
	if _, err := Parse([]byte("media: {max_upload_byte: 1}\n")); err == nil || !strings.Contains(err.Error(), "max_upload_byte") {
		t.Fatalf("unknown media key: %v", err)
	}
}

func TestMediaStoreKeys(t *testing.T) {
	t.Setenv("LUXCHAT_TEST_S3_SECRET", "s3cr3t")
	c, err := Parse([]byte("media:\n  store: s3\n  s3: {endpoint: 127.0.0.1:9000, bucket: media, access_key: ak, secret_key: \"${LUXCHAT_TEST_S3_SECRET}\", region: eu-1, use_tls: false}\n  url_preview: {enabled: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	m := c.Media
	if m.Store != MediaStoreS3 || m.S3 != (MediaS3{Endpoint: "127.0.0.1:9000", Bucket: "media", AccessKey: "ak", SecretKey: "s3cr3t", Region: "eu-1"}) || !m.URLPreview.Enabled {
		t.Fatalf("%+v", m)
	}
	for _, bad := range []string{"media: {store: s4}\n", "media: {store: s3}\n", "media: {s3: {endpont: x}}\n", "media: {url_preview: {enable: true}}\n"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestFederationKeys(t *testing.T) {
	d := Default()
	if !d.Federation.Enabled || d.Listen.Federation != "" || len(d.Federation.AllowedServers) != 0 || len(d.Federation.DenyNetworks) != len(DefaultDenyNetworks) {
		t.Fatalf("defaults %+v", d.Federation)
	}
	c, err := Parse([]byte(`server_name: hs1.test:8448
listen: {federation: '0.0.0.0:8448'}
tls: {cert_file: /c.pem, key_file: /k.pem}
federation:
  trusted_ca_file: /ca.pem
  allowed_servers: ["*.gouv.test", "police.test:8448"]
  deny_networks: []
  well_known_server: matrix.hs1.test:443
`))
	if err != nil {
		t.Fatal(err)
	}
	f := c.Federation
	if c.ServerName != "hs1.test:8448" || c.Listen.Federation != "0.0.0.0:8448" || c.TLS.CertFile != "/c.pem" || c.TLS.KeyFile != "/k.pem" ||
		f.TrustedCAFile != "/ca.pem" || !reflect.DeepEqual(f.AllowedServers, []string{"*.gouv.test", "police.test:8448"}) ||
		len(f.DenyNetworks) != 0 || f.WellKnownServer != "matrix.hs1.test:443" || !f.Enabled {
		t.Fatalf("%+v %+v", c.Listen, f)
	}
	for _, in := range []string{
		"listen: {federation: ':8448'}",           // no certificate
		"federation: {deny_networks: [10.0.0.0]}", // not a CIDR
		"federation: {allowed_servers: ['']}",     // empty pattern
		"federation: {well_known_server: 'a b'}",  // not a server name
		"federation: {allowd_servers: []}",        // unknown key
		"tls: {cert: x}",                          // unknown key
	} {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
	// Without federation, the listener needs no certificate.
	if _, err := Parse([]byte("listen: {federation: ':8448'}\nfederation: {enabled: false}\n")); err != nil {
		t.Error(err)
	}
}

func TestSSOKeys(t *testing.T) {
	dir := t.TempDir()
	secretFile := dir + "/secret"
	if err := os.WriteFile(secretFile, []byte(" from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte(`
oidc:
  providers:
    - id: luxid
      name: LuxID
      issuer: https://login.example.lu/
      client_id: c
      client_secret_file: ` + secretFile + `
      pkce: false
      conditions:
        - {claim: email, suffix: "@police.etat.lu"}
        - {claim: org, one_of: [a, b]}
sso: {client_whitelist: ["https://app.example.org/"]}
auth: {password_login: false, get_login_token: true, login_token_lifetime: 30s}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := c.OIDC.Providers[0]
	if s, err := p.Secret(); err != nil || s != "from-file" || p.PKCEOn() || p.RequestTimeout() != 10*time.Second ||
		c.Auth.PasswordLogin || !c.Auth.GetLoginToken || c.Auth.LoginTokenLifetime.Duration != 30*time.Second {
		t.Fatalf("%+v %q %v", c.Auth, s, err)
	}
	if !Default().Auth.PasswordLogin {
		t.Fatal("defaults")
	}
	base := "oidc: {providers: [{id: a, name: A, issuer: 'https://i/', client_id: c%s}]}"
	for _, bad := range []string{
		", id: 'a b'", ", name: ''", ", issuer: 'ftp://i/'", ", client_id: ''", ", icon: 'https://x/i.png'",
		", client_secret: s, client_secret_file: /f", ", client_secret_file: /nonexistent/secret",
		", conditions: [{claim: email}]", ", conditions: [{claim: email, equals: x, suffix: y}]",
	} {
		if _, err := Parse([]byte(strings.Replace(base, "%s", bad, 1))); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := Parse([]byte("oidc: {providers: [{id: a, name: A, issuer: 'https://i/', client_id: c}, {id: a, name: B, issuer: 'https://j/', client_id: d}]}")); err == nil {
		t.Error("duplicate ids accepted")
	}
	for _, bad := range []string{"relative/", "https://app.example.org"} {
		if _, err := Parse([]byte("sso: {client_whitelist: ['" + bad + "']}")); err == nil {
			t.Errorf("whitelist entry %q accepted", bad)
		}
	}
}

func TestRetentionLifetimes(t *testing.T) {
	c, err := Parse([]byte("retention:\n  enabled: true\n  default_policy:\n    min_lifetime: 1d\n    max_lifetime: 86400000\n  allowed_lifetime_min: 12h\n  allowed_lifetime_max: 1y\n  purge_interval: 30m\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Retention
	if !r.Enabled || r.DefaultPolicy.MinLifetime.Duration != 24*time.Hour || r.DefaultPolicy.MaxLifetime.Duration != 24*time.Hour ||
		r.AllowedLifetimeMin.Duration != 12*time.Hour || r.AllowedLifetimeMax.Duration != 365*24*time.Hour || r.PurgeInterval.Duration != 30*time.Minute {
		t.Fatalf("retention %+v", r)
	}
	for _, bad := range []string{
		"retention:\n  allowed_lifetime_min: 2w\n  allowed_lifetime_max: 1w\n",
		"retention:\n  default_policy: {min_lifetime: 2d, max_lifetime: 1d}\n",
		"retention:\n  allowed_lifetime_max: -1d\n",
		"retention:\n  allowed_lifetime_max: 3x\n",
		"retention:\n  purge_interval: 10ms\n",
	} {
		if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "retention") && !strings.Contains(err.Error(), "lifetime") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
