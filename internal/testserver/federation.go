package testserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"luxchat/internal/server"
)

// Federation is a private federation for tests: a CA generated for the
// test, whose certificates the servers trust through
// federation.trusted_ca_file, and a DNS where every name under .test is
// 127.0.0.1 and no SRV record exists. Everything stays on loopback.
type Federation struct {
	t      testing.TB
	dir    string
	CAFile string
	// CAKeyFile holds the CA's key (PEM, SEC 1), for servers that issue
	// their own certificate (tls.ca_cert_file / ca_key_file).
	CAKeyFile string
	CA        *x509.Certificate
	caKey     *ecdsa.PrivateKey
	n         atomic.Int64

	cutMu sync.Mutex
	cuts  map[[2]string]bool // see Cut

	serversMu sync.Mutex
	servers   []*server.Server // every server started in it, for closeIdle
}

func (f *Federation) add(s *server.Server) {
	f.serversMu.Lock()
	f.servers = append(f.servers, s)
	f.serversMu.Unlock()
}

// closeIdle closes the idle outbound connections of the federation's
// servers (see New's stop).
func (f *Federation) closeIdle() {
	f.serversMu.Lock()
	defer f.serversMu.Unlock()
	for _, s := range f.servers {
		if s.Federation != nil {
			s.Federation.CloseIdleConnections()
		}
	}
}

// NewFederation makes the CA.
func NewFederation(t testing.TB) *Federation {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "luxchat test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	f := &Federation{t: t, dir: t.TempDir(), CA: ca, caKey: key}
	f.CAFile = filepath.Join(f.dir, "ca.pem")
	writePEM(t, f.CAFile, "CERTIFICATE", der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f.CAKeyFile = filepath.Join(f.dir, "ca.key")
	writePEM(t, f.CAKeyFile, "EC PRIVATE KEY", kder)
	return f
}

// SelfIssued is an option, after Server or ServerNamed, that makes the
// server issue its own certificate from the CA at start instead of
// using one issued by the test.
func (f *Federation) SelfIssued() Option {
	return func(s *setup) {
		s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile = "", ""
		s.cfg.TLS.CACertFile, s.cfg.TLS.CAKeyFile = f.CAFile, f.CAKeyFile
	}
}

// Issue writes a certificate for the DNS names or IP addresses in hosts,
// signed by the CA, and returns the certificate and key files.
func (f *Federation) Issue(hosts ...string) (certFile, keyFile string) {
	f.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.t.Fatal(err)
	}
	n := f.n.Add(1)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(n + 100),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.CA, &key.PublicKey, f.caKey)
	if err != nil {
		f.t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		f.t.Fatal(err)
	}
	certFile = filepath.Join(f.dir, fmt.Sprintf("cert%d.pem", n))
	keyFile = filepath.Join(f.dir, fmt.Sprintf("key%d.pem", n))
	writePEM(f.t, certFile, "CERTIFICATE", der)
	writePEM(f.t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

// Server is an option that gives a test server a federation listener on
// a loopback port, the server name hsN.test:PORT with a certificate for
// hsN.test, the CA as trusted_ca_file, deny_networks cleared (everything
// is loopback) and the .test DNS. Options after it may change these.
func (f *Federation) Server() Option {
	f.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { ln.Close() })
	host := fmt.Sprintf("hs%d.test", f.n.Add(1))
	certFile, keyFile := f.Issue(host)
	port := ln.Addr().(*net.TCPAddr).Port
	return func(s *setup) {
		s.cfg.ServerName = fmt.Sprintf("%s:%d", host, port)
		s.cfg.Listen.Federation = ln.Addr().String()
		s.cfg.TLS.CertFile, s.cfg.TLS.KeyFile = certFile, keyFile
		s.cfg.Federation.Enabled = true
		s.cfg.Federation.TrustedCAFile = f.CAFile
		s.cfg.Federation.DenyNetworks = []string{}
		s.fedLn = ln
		s.dns = TestDNS{}
		s.fed = f
	}
}

// TestDNS resolves every name under .test to 127.0.0.1 and has no SRV
// records; other names do not resolve.
type TestDNS struct{}

var errNoSuchHost = errors.New("no such host (test DNS)")

// LookupNetIP implements federation.DNS.
func (TestDNS) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if strings.HasSuffix(host, ".test") {
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	}
	return nil, &net.DNSError{Err: errNoSuchHost.Error(), Name: host, IsNotFound: true}
}

// LookupSRV implements federation.DNS.
func (TestDNS) LookupSRV(_ context.Context, service, proto, name string) (string, []*net.SRV, error) {
	return "", nil, &net.DNSError{Err: errNoSuchHost.Error(), Name: "_" + service + "._" + proto + "." + name, IsNotFound: true}
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
