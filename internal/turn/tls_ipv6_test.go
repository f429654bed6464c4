package turn_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v4/stdnet"
	pionturn "github.com/pion/turn/v4"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// selfSigned writes a certificate for relayHost and its key, and returns
// their files and a pool that trusts it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "turn test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(relayHost)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// uriFor is the host:port of the first URI with prefix (scheme and host
// start) and the transport.
func uriFor(t *testing.T, g grant, prefix, transport string) string {
	t.Helper()
	for _, u := range g.URIs {
		if strings.HasPrefix(u, prefix) && strings.HasSuffix(u, "?transport="+transport) {
			_, rest, _ := strings.Cut(u, ":")
			return strings.TrimSuffix(rest, "?transport="+transport)
		}
	}
	t.Fatalf("no %s…?transport=%s URI in %v", prefix, transport, g.URIs)
	return ""
}

// clientOn is a pion TURN client over conn.
func clientOn(t *testing.T, conn net.PacketConn, addr string, g grant, realm string) *pionturn.Client {
	t.Helper()
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := pionturn.NewClient(&pionturn.ClientConfig{STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: g.Username, Password: g.Password, Realm: realm, RTO: 200 * time.Millisecond, Net: anyFamilyNet{n}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); conn.Close() })
	return cl
}

// echoThrough sends through relay to a UDP peer listening on peerNet
// peerAddr and back, and fails unless both arrive.
func echoThrough(t *testing.T, relay net.PacketConn, peerNet, peerAddr string) {
	t.Helper()
	peer, err := net.ListenPacket(peerNet, peerAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := relay.WriteTo([]byte("hello peer"), peer.LocalAddr()); err != nil {
		t.Fatalf("write to peer: %v", err)
	}
	got, from := readWithin(t, peer, 5*time.Second)
	if string(got) != "hello peer" || from.String() != relay.LocalAddr().String() {
		t.Fatalf("peer got %q from %s (relay %s)", got, from, relay.LocalAddr())
	}
	peer.WriteTo([]byte("hello caller"), from)
	if got, from := readWithin(t, relay, 5*time.Second); string(got) != "hello caller" || from.String() != peer.LocalAddr().String() {
		t.Fatalf("caller got %q from %s", got, from)
	}
}

// TestRelayTLS: with listen.turns and a certificate, /voip/turnServer
// offers a turns: URI, and a client that checks the certificate
// allocates over TLS and relays.
func TestRelayTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	s := ts.New(t, withTURN(func(c *config.TURN) {
		c.AllowedPeerNetworks = []string{"127.0.0.1/32"}
		c.TLSCertFile, c.TLSKeyFile = certFile, keyFile
	}), ts.WithConfig(func(c *config.Config) { c.Listen.TURNS = relayHost + ":0" }))
	g := fetchGrant(t, s.Register(t, "alice"))
	addr := uriFor(t, g, "turns:", "tcp")
	if addr != s.TURN.TLSAddr().String() {
		t.Fatalf("turns URI %s, TLS listener at %s", addr, s.TURN.TLSAddr())
	}
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: relayHost})
	if err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	cl := clientOn(t, pionturn.NewSTUNConn(c), addr, g, s.Config.ServerName)
	relay, err := cl.Allocate()
	if err != nil {
		t.Fatalf("allocate over TLS: %v", err)
	}
	defer relay.Close()
	echoThrough(t, relay, "udp4", "127.0.0.1:0")

	// The TLS port speaks nothing but TLS.
	plain, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	pc := clientOn(t, pionturn.NewSTUNConn(plain), addr, g, s.Config.ServerName)
	if r, err := pc.Allocate(); err == nil {
		r.Close()
		t.Fatal("a plain TCP allocation on the TLS port")
	}
}

// TestRelayIPv6: with turn.external_ipv6 the server listens on IPv6 too;
// a client that comes over IPv6 gets an IPv6 relay, one over IPv4 an
// IPv4 relay; loopback, unique-local and link-local IPv6 peers are
// refused unless allowed.
func TestRelayIPv6(t *testing.T) {
	if ln, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skipf("SKIPPED LOUDLY: no IPv6 loopback here: %v", err)
	} else {
		ln.Close()
	}
	v6 := func(allowed ...string) ts.Option {
		return withTURN(func(c *config.TURN) { c.ExternalIPv6 = "::1"; c.AllowedPeerNetworks = allowed })
	}
	t.Run("relays", func(t *testing.T) {
		s := ts.New(t, v6("::1/128", "127.0.0.1/32"))
		g := fetchGrant(t, s.Register(t, "alice"))
		addr6 := uriFor(t, g, "turn:[", "udp")
		if uriFor(t, g, "turn:[", "tcp") != addr6 || !strings.HasPrefix(addr6, "[::1]:") {
			t.Fatalf("IPv6 URIs %v", g.URIs)
		}
		conn, err := net.ListenPacket("udp6", "[::1]:0")
		if err != nil {
			t.Fatal(err)
		}
		relay, err := clientOn(t, conn, addr6, g, s.Config.ServerName).Allocate()
		if err != nil {
			t.Fatalf("allocate over IPv6: %v", err)
		}
		defer relay.Close()
		if host, _, _ := net.SplitHostPort(relay.LocalAddr().String()); host != "::1" {
			t.Fatalf("relay over IPv6 at %s", relay.LocalAddr())
		}
		echoThrough(t, relay, "udp6", "[::1]:0")

		// Over TCP on IPv6 as well.
		tc, err := net.Dial("tcp6", addr6)
		if err != nil {
			t.Fatal(err)
		}
		relayT, err := clientOn(t, pionturn.NewSTUNConn(tc), addr6, g, s.Config.ServerName).Allocate()
		if err != nil {
			t.Fatalf("allocate over TCP/IPv6: %v", err)
		}
		defer relayT.Close()
		echoThrough(t, relayT, "udp6", "[::1]:0")

		// IPv4 clients still get IPv4 relays.
		conn4, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		relay4, err := clientOn(t, conn4, serverAddr(t, g, "udp"), g, s.Config.ServerName).Allocate()
		if err != nil {
			t.Fatalf("allocate over IPv4: %v", err)
		}
		defer relay4.Close()
		if host, _, _ := net.SplitHostPort(relay4.LocalAddr().String()); host != relayHost {
			t.Fatalf("relay over IPv4 at %s", relay4.LocalAddr())
		}
		echoThrough(t, relay4, "udp4", "127.0.0.1:0")
	})
	t.Run("non-public IPv6 peers refused", func(t *testing.T) {
		// The relay address advertised is another than ::1, which
		// stands here for the operator's loopback; the server is reached
		// on ::1 all the same (it listens on [::]).
		s := ts.New(t, withTURN(func(c *config.TURN) { c.ExternalIPv6 = "2001:db8::7" }))
		g := fetchGrant(t, s.Register(t, "alice"))
		if !strings.HasPrefix(uriFor(t, g, "turn:[", "udp"), "[2001:db8::7]:") {
			t.Fatalf("URIs %v", g.URIs)
		}
		conn, err := net.ListenPacket("udp6", "[::1]:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := net.JoinHostPort("::1", strconv.Itoa(int(s.TURN.Addr().Port())))
		relay, err := clientOn(t, conn, addr, g, s.Config.ServerName).Allocate()
		if err != nil {
			t.Fatalf("allocate over IPv6: %v", err)
		}
		defer relay.Close()
		peer, err := net.ListenPacket("udp6", "[::1]:0")
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		port := peer.LocalAddr().(*net.UDPAddr).Port
		for _, to := range []string{"::1", "fd00::1", "fe80::1", "64:ff9b::a00:1", "2002:c0a8:101::1"} {
			ua := &net.UDPAddr{IP: net.ParseIP(to), Port: port}
			if _, err := relay.WriteTo([]byte("let me in"), ua); err == nil {
				t.Errorf("permission to %s granted", to)
			}
		}
		buf := make([]byte, 64)
		peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, _, err := peer.ReadFrom(buf); err == nil {
			t.Fatalf("loopback peer received %q", buf[:n])
		}
	})
}

// anyFamilyNet resolves the server's address in either family: pion's
// client asks for udp4 only.
type anyFamilyNet struct{ *stdnet.Net }

func (n anyFamilyNet) ResolveUDPAddr(_, address string) (*net.UDPAddr, error) {
	return net.ResolveUDPAddr("udp", address)
}
