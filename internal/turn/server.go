package turn

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/pion/turn/v4"
	"github.com/prometheus/client_golang/prometheus"

	"luxchat/internal/config"
)

// Server is the embedded TURN/STUN server: one UDP socket and one TCP
// listener on the same port (listen.turn), a TLS listener (listen.turns)
// when configured, relays on turn.relay_ports. With turn.external_ipv6
// each of them is doubled on IPv6, and a client gets a relay of the
// family it came over. Start and Close may be called once each.
type Server struct {
	listen  netip.AddrPort // as configured; port 0 picks a free one
	listenS netip.AddrPort // listen.turns; invalid: no TLS
	tlsCfg  *tls.Config
	host    string // the turns: URI's host: public_base_url's name, or ""
	realm   string
	secret  []byte
	quota   *quota
	relays  *relays // IPv4
	relays6 *relays // IPv6; nil: IPv4 only
	metrics *metrics
	log     *slog.Logger
	now     func() time.Time

	mu     sync.Mutex
	bound  netip.AddrPort // once started
	boundS netip.AddrPort // the TLS listener's, once started
	pion   *turn.Server
	tcp    []*trackingListener
}

// New builds the server from the configuration (already validated) and
// registers its metrics; it does not listen.
func New(cfg *config.Config, reg prometheus.Registerer, log *slog.Logger) (*Server, error) {
	t := cfg.TURN
	secret, err := t.Secret()
	if err != nil {
		return nil, err
	}
	listen, err := netip.ParseAddrPort(cfg.Listen.TURN)
	if err != nil {
		return nil, fmt.Errorf("listen.turn: %w", err)
	}
	lo, hi, err := t.RelayPortRange()
	if err != nil {
		return nil, err
	}
	relayIP := listen.Addr().Unmap()
	if t.ExternalIP != "" {
		relayIP = netip.MustParseAddr(t.ExternalIP) // validated
	}
	var relayIP6 netip.Addr
	if t.ExternalIPv6 != "" {
		relayIP6 = netip.MustParseAddr(t.ExternalIPv6) // validated
	}
	policy := &peerPolicy{relayIP: relayIP.Unmap(), relayIP6: relayIP6, relayLo: lo, relayHi: hi}
	for _, n := range t.AllowedPeerNetworks {
		policy.allowed = append(policy.allowed, netip.MustParsePrefix(n).Masked()) // validated
	}
	s := &Server{
		listen: listen, realm: cfg.ServerName, secret: []byte(secret),
		quota: newQuota(t.MaxAllocationsPerUser, t.MaxAllocations),
		log:   log.With("component", "turn"), now: time.Now,
	}
	if cfg.Listen.TURNS != "" {
		if s.listenS, err = netip.ParseAddrPort(cfg.Listen.TURNS); err != nil {
			return nil, fmt.Errorf("listen.turns: %w", err)
		}
		cert, err := tls.LoadX509KeyPair(t.TLSCertFile, t.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("turn tls: %w", err)
		}
		s.tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if u, err := url.Parse(cfg.PublicBaseURL); err == nil && u.Hostname() != "" {
			if _, err := netip.ParseAddr(u.Hostname()); err != nil {
				s.host = u.Hostname() // a name, which the certificate names
			}
		}
	}
	s.metrics = newMetrics(reg, func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.pion == nil {
			return 0
		}
		return float64(s.pion.AllocationCount())
	})
	// Relays are IPv4 (pion allocates udp4): on the listening address
	// when it is one, else on every IPv4 address.
	bindIP := "0.0.0.0"
	if a := listen.Addr().Unmap(); a.Is4() {
		bindIP = a.String()
	}
	s.relays = &relays{
		network: "udp4", bindIP: bindIP, relayIP: net.IP(relayIP.AsSlice()), lo: lo, hi: hi,
		policy: policy, bitrate: t.MaxBitrate, metrics: s.metrics, attempts: 64,
	}
	if relayIP6.IsValid() {
		bind6 := "::"
		if a := listen.Addr(); a.Is6() && !a.Is4In6() && !a.IsUnspecified() {
			bind6 = a.String()
		}
		s.relays6 = &relays{
			network: "udp6", bindIP: bind6, relayIP: net.IP(relayIP6.AsSlice()), lo: lo, hi: hi,
			policy: policy, bitrate: t.MaxBitrate, metrics: s.metrics, attempts: 64,
		}
	}
	return s, nil
}

// family is one address family the server serves: where it listens and
// the relays its clients get.
type family struct {
	v6     bool
	relays *relays
}

func (s *Server) families() []family {
	fs := []family{{false, s.relays}}
	if s.relays6 != nil {
		fs = append(fs, family{true, s.relays6})
	}
	return fs
}

// bindFor is the address of a family's listener for a configured one:
// the configured address when it is of that family, else the family's
// wildcard, at the configured port.
func bindFor(a netip.AddrPort, v6 bool) netip.AddrPort {
	ip := a.Addr()
	switch {
	case !v6 && ip.Unmap().Is4() && !ip.IsUnspecified():
		return netip.AddrPortFrom(ip.Unmap(), a.Port())
	case v6 && ip.Is6() && !ip.Is4In6() && !ip.IsUnspecified():
		return a
	case v6:
		return netip.AddrPortFrom(netip.IPv6Unspecified(), a.Port())
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), a.Port())
}

// requestsPerSecond and requestBurst bound the STUN requests answered
// to one source address over UDP (see floodGuard). A caller makes a few
// dozen at the start of a call (allocations, permissions, channels, the
// nonce round trips) and one every few minutes afterwards; one address
// may be an office's NAT with many callers.
const (
	requestsPerSecond = 100
	requestBurst      = 200
)

// Start listens on UDP and TCP (and TLS) and serves until Close.
func (s *Server) Start() error {
	var (
		packetConfigs []turn.PacketConnConfig
		listenConfigs []turn.ListenerConfig
		closers       []io.Closer
		tls4          netip.AddrPort
		bound4        netip.AddrPort
	)
	fail := func(err error) error {
		for _, c := range closers {
			c.Close()
		}
		return err
	}
	permit := s.permit
	for _, f := range s.families() {
		at, atS := bindFor(s.listen, f.v6), bindFor(s.listenS, f.v6)
		if f.v6 {
			// The port IPv4 got, when it was left to choose.
			at = netip.AddrPortFrom(at.Addr(), bound4.Port())
			if s.listenS.IsValid() {
				atS = netip.AddrPortFrom(atS.Addr(), tls4.Port())
			}
		}
		udp, tcp, err := listenBoth(at, f.v6)
		if err != nil {
			return fail(fmt.Errorf("listen turn: %w", err))
		}
		closers = append(closers, udp, tcp)
		if !f.v6 {
			bound4 = udp.LocalAddr().(*net.UDPAddr).AddrPort()
		}
		guarded := newFloodGuard(udp, requestsPerSecond, requestBurst, s.metrics.requestsDropped.Inc)
		tl := &trackingListener{Listener: tcp, conns: map[net.Conn]struct{}{}}
		packetConfigs = append(packetConfigs, turn.PacketConnConfig{PacketConn: guarded, RelayAddressGenerator: f.relays, PermissionHandler: permit})
		listenConfigs = append(listenConfigs, turn.ListenerConfig{Listener: tl, RelayAddressGenerator: f.relays, PermissionHandler: permit})
		if s.tlsCfg != nil {
			network := "tcp4"
			if f.v6 {
				network = "tcp6"
			}
			ln, err := net.Listen(network, atS.String())
			if err != nil {
				return fail(fmt.Errorf("listen turns: %w", err))
			}
			closers = append(closers, ln)
			if !f.v6 {
				tls4 = ln.Addr().(*net.TCPAddr).AddrPort()
			}
			tl := &trackingListener{Listener: tls.NewListener(ln, s.tlsCfg), conns: map[net.Conn]struct{}{}}
			listenConfigs = append(listenConfigs, turn.ListenerConfig{Listener: tl, RelayAddressGenerator: f.relays, PermissionHandler: permit})
		}
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:         s.realm,
		AuthHandler:   s.authenticate,
		QuotaHandler:  s.admit,
		LoggerFactory: newSlogFactory(s.log),
		EventHandler: turn.EventHandler{
			OnAuth: func(_, _ net.Addr, _, _, _ string, _ string, ok bool) {
				if !ok {
					s.metrics.authRefused.WithLabelValues("integrity").Inc()
				}
			},
			OnAllocationCreated: func(_, _ net.Addr, _, username, _ string, _ net.Addr, _ int) {
				s.quota.created(userOf(username))
			},
			OnAllocationDeleted: func(_, _ net.Addr, _, username, _ string) {
				s.quota.deleted(userOf(username))
			},
		},
		PacketConnConfigs: packetConfigs,
		ListenerConfigs:   listenConfigs,
	})
	if err != nil {
		return fail(fmt.Errorf("start turn: %w", err))
	}
	var tracked []*trackingListener
	for _, lc := range listenConfigs {
		tracked = append(tracked, lc.Listener.(*trackingListener))
	}
	s.mu.Lock()
	s.pion, s.tcp = srv, tracked
	s.bound, s.boundS = bound4, tls4
	s.mu.Unlock()
	s.log.Info("TURN listening", "udp_tcp", bound4.String(), "tls", tls4.String(), "ipv6", s.relays6 != nil,
		"relay", s.relays.relayIP.String(), "relay_ports", strconv.Itoa(int(s.relays.lo))+"-"+strconv.Itoa(int(s.relays.hi)))
	return nil
}

// permit is pion's PermissionHandler: CreatePermission and ChannelBind
// name a peer the policy must allow.
func (s *Server) permit(client net.Addr, peer net.IP) bool {
	ip, ok := netip.AddrFromSlice(peer)
	if ok && s.relays.policy.permitIP(ip) {
		return true
	}
	s.metrics.peersRefused.Inc()
	s.log.Debug("peer refused", "client", client.String(), "peer", peer.String())
	return false
}

// Close stops listening, ends every allocation and closes the TCP
// connections of clients.
func (s *Server) Close() error {
	s.mu.Lock()
	srv, tls := s.pion, s.tcp
	s.pion = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Close()
	for _, tl := range tls {
		tl.closeAll()
	}
	return err
}

// TLSAddr is the address of the turns: listener (its port chosen when
// listen.turns's was 0); invalid before Start or without TLS.
func (s *Server) TLSAddr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.boundS
}

// Addr is the address served (its port chosen when listen.turn's was 0);
// invalid before Start.
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bound
}

// URIs are the TURN URIs of this server, UDP and TCP, at its relay
// addresses (turn.external_ip, or the listening address, and
// turn.external_ipv6), and turns: over TCP at public_base_url's host
// name (which the certificate names) or at the relay addresses.
func (s *Server) URIs() []string {
	port, portS := s.Addr().Port(), s.TLSAddr().Port()
	if port == 0 {
		port = s.listen.Port()
	}
	if portS == 0 {
		portS = s.listenS.Port()
	}
	var ips []netip.Addr
	for _, f := range s.families() {
		ip, _ := netip.AddrFromSlice(f.relays.relayIP)
		ips = append(ips, ip.Unmap())
	}
	var uris []string
	for _, ip := range ips {
		hp := netip.AddrPortFrom(ip, port).String()
		uris = append(uris, "turn:"+hp+"?transport=udp", "turn:"+hp+"?transport=tcp")
	}
	if s.tlsCfg != nil {
		if s.host != "" {
			uris = append(uris, "turns:"+net.JoinHostPort(s.host, strconv.Itoa(int(portS)))+"?transport=tcp")
		} else {
			for _, ip := range ips {
				uris = append(uris, "turns:"+netip.AddrPortFrom(ip, portS).String()+"?transport=tcp")
			}
		}
	}
	return uris
}

// authenticate is pion's AuthHandler: the key of a credential that this
// server's secret signed and that has not expired. The password a client
// proves is never compared here: pion checks the message integrity made
// with this key (in constant time).
func (s *Server) authenticate(username, realm string, src net.Addr) ([]byte, bool) {
	reason := ""
	expiry, _, ok := parseUsername(username)
	switch {
	case realm != s.realm:
		reason = "realm"
	case !ok:
		reason = "malformed"
	case !s.now().Before(expiry):
		reason = "expired"
	}
	if reason != "" {
		s.metrics.authRefused.WithLabelValues(reason).Inc()
		s.log.Debug("credentials refused", "reason", reason, "client", src.String())
		return nil, false
	}
	return turn.GenerateAuthKey(username, realm, sign(s.secret, username)), true
}

// admit is pion's QuotaHandler.
func (s *Server) admit(username, _ string, src net.Addr) bool {
	if s.quota.admit(userOf(username), s.now()) {
		return true
	}
	s.metrics.allocsRefused.WithLabelValues("quota").Inc()
	s.log.Debug("allocation quota reached", "user", userOf(username), "client", src.String())
	return false
}

// userOf is the user id of an authenticated username.
func userOf(username string) string {
	_, user, _ := parseUsername(username)
	return user
}

// listenBoth opens UDP and TCP on the same address, of one family (v6:
// IPv6 only); with port 0 it picks a port free for both.
func listenBoth(addr netip.AddrPort, v6 bool) (net.PacketConn, net.Listener, error) {
	udpNet, tcpNet := "udp4", "tcp4"
	if v6 {
		udpNet, tcpNet = "udp6", "tcp6"
	}
	var lastErr error
	for range 20 {
		udp, err := net.ListenPacket(udpNet, addr.String())
		if err != nil {
			return nil, nil, err
		}
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.Listen(tcpNet, netip.AddrPortFrom(addr.Addr(), uint16(port)).String())
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		lastErr = err
		if addr.Port() != 0 {
			break
		}
	}
	return nil, nil, lastErr
}

// trackingListener remembers accepted connections so that Close can end
// them: pion serves each until its client goes.
type trackingListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[c] = struct{}{}
	return &trackedConn{Conn: c, l: l}, nil
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	for c := range l.conns {
		c.Close()
	}
	clear(l.conns)
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c.Conn)
		c.l.mu.Unlock()
	})
	err := c.Conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
