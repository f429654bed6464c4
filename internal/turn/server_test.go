package turn_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v4"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
	"luxchat/internal/turn"
)

const secret = "correct horse turn secret"

// relayHost is the embedded server's address in these tests: a loopback
// address other than 127.0.0.1, so that 127.0.0.1 stands for "the
// operator's loopback" that relays must not reach, while the relay
// address itself (where the other caller's relay lives) stays reachable.
const relayHost = "127.0.0.2"

// withTURN enables the embedded server on a free port of relayHost.
func withTURN(edit func(*config.TURN)) ts.Option {
	return ts.WithConfig(func(c *config.Config) {
		c.Listen.TURN = relayHost + ":0"
		c.TURN.Enabled = true
		c.TURN.SharedSecret = secret
		c.TURN.RelayPorts = "40000-40999"
		c.Listen.Metrics = freeAddr()
		if edit != nil {
			edit(&c.TURN)
		}
	})
}

type grant struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	URIs     []string `json:"uris"`
	TTL      int64    `json:"ttl"`
}

func fetchGrant(t *testing.T, c *ts.Client) grant {
	t.Helper()
	var g grant
	c.MustDo("GET", "/_matrix/client/v3/voip/turnServer", nil, &g)
	return g
}

// serverAddr is the host:port of the grant's URI for transport.
func serverAddr(t *testing.T, g grant, transport string) string {
	t.Helper()
	for _, u := range g.URIs {
		if rest, ok := strings.CutPrefix(u, "turn:"); ok && strings.HasSuffix(u, "?transport="+transport) {
			return strings.TrimSuffix(rest, "?transport="+transport)
		}
	}
	t.Fatalf("no %s URI in %v", transport, g.URIs)
	return ""
}

// turnClient is a pion TURN client connected over UDP or TCP.
type turnClient struct {
	*pionturn.Client
	conn net.PacketConn
}

func dial(t testing.TB, addr, transport, username, password, realm string) *turnClient {
	t.Helper()
	var conn net.PacketConn
	switch transport {
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conn = c
	case "tcp":
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn = pionturn.NewSTUNConn(c)
	}
	cl, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: username, Password: password, Realm: realm,
		RTO: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	tc := &turnClient{Client: cl, conn: conn}
	t.Cleanup(func() { cl.Close(); conn.Close() })
	return tc
}

// readWithin reads one datagram or fails the test after d.
func readWithin(t testing.TB, pc net.PacketConn, d time.Duration) ([]byte, net.Addr) {
	t.Helper()
	buf := make([]byte, 1600)
	pc.SetReadDeadline(time.Now().Add(d))
	n, from, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return buf[:n], from
}

func TestTurnServerEndpointWithoutTURN(t *testing.T) {
	s := ts.New(t)
	alice := s.Register(t, "alice")
	for _, path := range []string{"/_matrix/client/v3/voip/turnServer", "/_matrix/client/r0/voip/turnServer"} {
		r := alice.Do("GET", path, nil)
		if r.Status != 200 || strings.TrimSpace(string(r.Body)) != "{}" {
			t.Fatalf("%s without TURN: %d %s", path, r.Status, r.Body)
		}
	}
	if r := s.Anonymous(t).Do("GET", "/_matrix/client/v3/voip/turnServer", nil); r.Status != 401 || r.ErrCode() != "M_MISSING_TOKEN" {
		t.Fatalf("anonymous: %d %s", r.Status, r.Body)
	}
}

// An external coturn: the URIs as configured, credentials coturn's
// use-auth-secret accepts (checked here the way coturn checks them).
func TestTurnServerEndpointExternal(t *testing.T) {
	uris := []string{"turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:5349?transport=tcp"}
	s := ts.New(t, ts.WithConfig(func(c *config.Config) {
		c.TURN.SharedSecret = secret
		c.TURN.URIs = uris
		c.TURN.TTL = config.Duration{Duration: time.Hour}
	}))
	alice := s.Register(t, "alice")
	before := time.Now()
	var g grant
	alice.MustDo("GET", "/_matrix/client/r0/voip/turnServer", nil, &g)
	if strings.Join(g.URIs, " ") != strings.Join(uris, " ") || g.TTL != 3600 {
		t.Fatalf("grant %+v", g)
	}
	ts, user, ok := strings.Cut(g.Username, ":")
	expiry, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || user != alice.UserID || expiry < before.Add(time.Hour).Unix()-1 || expiry > time.Now().Add(time.Hour).Unix()+1 {
		t.Fatalf("username %q", g.Username)
	}
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(g.Username))
	if g.Password != base64.StdEncoding.EncodeToString(mac.Sum(nil)) {
		t.Fatalf("password %q is not base64(HMAC-SHA1(secret, username))", g.Password)
	}
}

// A UDP allocation relays to a peer on an allowed network and back, and
// two callers' relays (one over UDP, one over TCP) reach each other.
func TestRelay(t *testing.T) {
	allowLoopback := withTURN(func(c *config.TURN) { c.AllowedPeerNetworks = []string{"127.0.0.1/32"} })
	t.Run("sqlite", func(t *testing.T) { testRelay(t, ts.New(t, allowLoopback)) })
	t.Run("postgres", func(t *testing.T) { testRelay(t, ts.New(t, ts.WithPostgres(t), allowLoopback)) })
}

func testRelay(t *testing.T, s *ts.Server) {
	alice, bob := s.Register(t, "alice"), s.Register(t, "bob")
	ga, gb := fetchGrant(t, alice), fetchGrant(t, bob)
	if got, want := serverAddr(t, ga, "udp"), s.TURN.Addr().String(); got != want || serverAddr(t, ga, "tcp") != want {
		t.Fatalf("URIs %v, server at %s", ga.URIs, want)
	}
	realm := s.Config.ServerName

	ca := dial(t, serverAddr(t, ga, "udp"), "udp", ga.Username, ga.Password, realm)
	relayA, err := ca.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	defer relayA.Close()
	if host, _, _ := net.SplitHostPort(relayA.LocalAddr().String()); host != relayHost {
		t.Fatalf("relay address %s", relayA.LocalAddr())
	}

	// A plain UDP peer on 127.0.0.1, which allowed_peer_networks lists.
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := relayA.WriteTo([]byte("hello peer"), peer.LocalAddr()); err != nil {
		t.Fatalf("write to peer: %v", err)
	}
	got, from := readWithin(t, peer, 5*time.Second)
	if string(got) != "hello peer" || from.String() != relayA.LocalAddr().String() {
		t.Fatalf("peer got %q from %s", got, from)
	}
	if _, err := peer.WriteTo([]byte("hello caller"), from); err != nil {
		t.Fatal(err)
	}
	if got, from := readWithin(t, relayA, 5*time.Second); string(got) != "hello caller" || from.String() != peer.LocalAddr().String() {
		t.Fatalf("caller got %q from %s", got, from)
	}

	// Bob allocates over TCP; the two relays talk to each other.
	cb := dial(t, serverAddr(t, gb, "tcp"), "tcp", gb.Username, gb.Password, realm)
	relayB, err := cb.Allocate()
	if err != nil {
		t.Fatalf("allocate over TCP: %v", err)
	}
	defer relayB.Close()
	// Each side must permit the other before data passes (as ICE does).
	for i := 0; i < 50; i++ {
		relayB.WriteTo([]byte("ping"), relayA.LocalAddr())
		relayA.WriteTo([]byte("ping"), relayB.LocalAddr())
		relayB.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		buf := make([]byte, 64)
		if n, _, err := relayB.ReadFrom(buf); err == nil && string(buf[:n]) == "ping" {
			break
		}
		if i == 49 {
			t.Fatal("relay to relay: nothing arrived")
		}
	}
	if _, err := relayB.WriteTo([]byte("from bob"), relayA.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	for {
		got, from := readWithin(t, relayA, 5*time.Second)
		if string(got) == "ping" {
			continue
		}
		if string(got) != "from bob" || from.String() != relayB.LocalAddr().String() {
			t.Fatalf("alice got %q from %s", got, from)
		}
		break
	}

	// The metrics count what was relayed.
	metrics := scrape(t, s)
	for _, want := range []string{`luxchat_turn_allocations 2`, `luxchat_turn_relayed_bytes_total{direction="to_peer"}`, `luxchat_turn_relayed_bytes_total{direction="from_peer"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// The TURN server stops with the homeserver: its ports and the
	// relays' ports are let go.
	turnAddr, relayAddrA := s.TURN.Addr().String(), relayA.LocalAddr().String()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{turnAddr, relayAddrA} {
		pc, err := net.ListenPacket("udp4", a)
		if err != nil {
			t.Fatalf("%s still held after stop: %v", a, err)
		}
		pc.Close()
	}
	ln, err := net.Listen("tcp4", turnAddr)
	if err != nil {
		t.Fatalf("TCP %s still held after stop: %v", turnAddr, err)
	}
	ln.Close()
}

// freeAddr is a loopback address with a port free now (for the metrics
// listener, which takes an address rather than a listener).
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrape reads the metrics the server exports, as Prometheus would.
func scrape(t *testing.T, s *ts.Server) string {
	t.Helper()
	rec := &bytes.Buffer{}
	var resp *http.Response
	var err error
	for range 50 { // the metrics listener starts beside the client one
		if resp, err = http.Get("http://" + s.Config.Listen.Metrics + "/metrics"); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(rec, resp.Body)
	return rec.String()
}

func TestRefused(t *testing.T) {
	s := ts.New(t, withTURN(func(c *config.TURN) { c.MaxAllocationsPerUser = 2 }))
	alice := s.Register(t, "alice")
	g := fetchGrant(t, alice)
	addr, realm := serverAddr(t, g, "udp"), s.Config.ServerName

	mustRefuse := func(name, username, password string) {
		t.Helper()
		c := dial(t, addr, "udp", username, password, realm)
		if relay, err := c.Allocate(); err == nil {
			relay.Close()
			t.Errorf("%s: allocation accepted", name)
		}
	}
	expiredUser, expiredPass := turn.Credentials([]byte(secret), alice.UserID, time.Now().Add(-time.Second))
	mustRefuse("expired", expiredUser, expiredPass)
	mustRefuse("forged password", g.Username, base64.StdEncoding.EncodeToString([]byte("not the hmac of it")))
	otherUser, otherPass := turn.Credentials([]byte("another secret"), alice.UserID, time.Now().Add(time.Hour))
	mustRefuse("other secret", otherUser, otherPass)
	// A username carrying a later expiry than it was signed for.
	later := strconv.FormatInt(time.Now().Add(48*time.Hour).Unix(), 10) + ":" + alice.UserID
	mustRefuse("extended expiry", later, g.Password)
	mustRefuse("malformed", "alice", g.Password)

	// Relays to loopback addresses are refused by default (private
	// networks are checked by TestPeerPolicy: no datagram is sent there).
	c := dial(t, addr, "udp", g.Username, g.Password, realm)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate: %v", err)
	}
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	for _, to := range []net.Addr{peer.LocalAddr(), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3), Port: 5000}} {
		if _, err := relay.WriteTo([]byte("let me in"), to); err == nil {
			t.Errorf("permission to %s granted", to)
		}
	}
	buf := make([]byte, 64)
	peer.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := peer.ReadFrom(buf); err == nil {
		t.Fatalf("loopback peer received %q", buf[:n])
	}

	// The per-user cap: two allocations, the third refused; freeing one
	// makes room again.
	c2 := dial(t, addr, "udp", g.Username, g.Password, realm)
	relay2, err := c2.Allocate()
	if err != nil {
		t.Fatalf("second allocation: %v", err)
	}
	defer relay2.Close()
	c3 := dial(t, addr, "udp", g.Username, g.Password, realm)
	if r, err := c3.Allocate(); err == nil {
		r.Close()
		t.Fatal("third allocation accepted over max_allocations_per_user 2")
	}
	// Another user is not held by alice's cap.
	gb := fetchGrant(t, s.Register(t, "bob"))
	cb := dial(t, addr, "udp", gb.Username, gb.Password, realm)
	rb, err := cb.Allocate()
	if err != nil {
		t.Fatalf("bob's allocation: %v", err)
	}
	rb.Close()
	relay.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c4 := dial(t, addr, "udp", g.Username, g.Password, realm)
		r, err := c4.Allocate()
		if err == nil {
			r.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no allocation after freeing one: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	metrics := scrape(t, s)
	for _, want := range []string{`luxchat_turn_auth_refused_total{reason="expired"} 1`, `luxchat_turn_auth_refused_total{reason="integrity"}`,
		`luxchat_turn_auth_refused_total{reason="malformed"} 1`, `luxchat_turn_allocations_refused_total{reason="quota"}`, `luxchat_turn_peers_refused_total`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestBitrate: an allocation sending beyond turn.max_bitrate has the
// excess dropped (and counted), after a burst of at least 64 KiB.
func TestBitrate(t *testing.T) {
	const bitrate = 800_000 // 100 kB/s
	s := ts.New(t, withTURN(func(c *config.TURN) {
		c.MaxBitrate = bitrate
		c.AllowedPeerNetworks = []string{"127.0.0.1/32"}
	}))
	g := fetchGrant(t, s.Register(t, "alice"))
	c := dial(t, serverAddr(t, g, "udp"), "udp", g.Username, g.Password, s.Config.ServerName)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	received := make(chan int)
	go func() {
		n, buf := 0, make([]byte, 1500)
		for {
			peer.SetReadDeadline(time.Now().Add(time.Second))
			k, _, err := peer.ReadFrom(buf)
			if err != nil {
				received <- n
				return
			}
			n += k
		}
	}()
	payload := make([]byte, 1200)
	const packets = 400 // 480 kB
	start := time.Now()
	for i := 0; i < packets; i += 20 {
		for range 20 {
			if _, err := relay.WriteTo(payload, peer.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	got := <-received
	bound := 64<<10 + int(bitrate/8*elapsed.Seconds()) + 2*len(payload)
	if bound >= packets*len(payload)*3/4 {
		t.Skipf("sending took %s: too slow a machine to tell the bitrate", elapsed)
	}
	if got > bound || got < 20*len(payload) {
		t.Fatalf("the peer received %d bytes of %d in %s, want between %d and %d", got, packets*len(payload), elapsed, 20*len(payload), bound)
	}
	if m := scrape(t, s); strings.Contains(m, "luxchat_turn_dropped_packets_total 0\n") || !strings.Contains(m, "luxchat_turn_dropped_packets_total") {
		t.Error("dropped packets are not counted")
	}
}
