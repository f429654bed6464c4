package turn

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/pion/turn/v4"
	"github.com/prometheus/client_golang/prometheus"

	"luxchat/internal/config"
)

// Server is the embedded TURN/STUN server: one UDP socket and one TCP
// listener on the same port (listen.turn), relays on turn.relay_ports.
// Start and Close may be called once each.
type Server struct {
	listen  netip.AddrPort // as configured; port 0 picks a free one
	realm   string
	secret  []byte
	quota   *quota
	relays  *relays
	metrics *metrics
	log     *slog.Logger
	now     func() time.Time

	mu    sync.Mutex
	bound netip.AddrPort // once started
	pion  *turn.Server
	tcp   *trackingListener
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
	policy := &peerPolicy{relayIP: relayIP.Unmap(), relayLo: lo, relayHi: hi}
	for _, n := range t.AllowedPeerNetworks {
		policy.allowed = append(policy.allowed, netip.MustParsePrefix(n).Masked()) // validated
	}
	s := &Server{
		listen: listen, realm: cfg.ServerName, secret: []byte(secret),
		quota: newQuota(t.MaxAllocationsPerUser, t.MaxAllocations),
		log:   log.With("component", "turn"), now: time.Now,
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
		bindIP: bindIP, relayIP: net.IP(relayIP.AsSlice()), lo: lo, hi: hi,
		policy: policy, bitrate: t.MaxBitrate, metrics: s.metrics, attempts: 64,
	}
	return s, nil
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

// Start listens on UDP and TCP and serves until Close.
func (s *Server) Start() error {
	udp, tcp, err := listenBoth(s.listen)
	if err != nil {
		return fmt.Errorf("listen turn: %w", err)
	}
	tl := &trackingListener{Listener: tcp, conns: map[net.Conn]struct{}{}}
	guarded := newFloodGuard(udp, requestsPerSecond, requestBurst, s.metrics.requestsDropped.Inc)
	permit := func(client net.Addr, peer net.IP) bool {
		ip, ok := netip.AddrFromSlice(peer)
		if ok && s.relays.policy.permitIP(ip) {
			return true
		}
		s.metrics.peersRefused.Inc()
		s.log.Debug("peer refused", "client", client.String(), "peer", peer.String())
		return false
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
		PacketConnConfigs: []turn.PacketConnConfig{{PacketConn: guarded, RelayAddressGenerator: s.relays, PermissionHandler: permit}},
		ListenerConfigs:   []turn.ListenerConfig{{Listener: tl, RelayAddressGenerator: s.relays, PermissionHandler: permit}},
	})
	if err != nil {
		udp.Close()
		tcp.Close()
		return fmt.Errorf("start turn: %w", err)
	}
	s.mu.Lock()
	s.pion, s.tcp = srv, tl
	s.bound = udp.LocalAddr().(*net.UDPAddr).AddrPort()
	s.mu.Unlock()
	s.log.Info("TURN listening", "udp_tcp", s.bound.String(), "relay", s.relays.relayIP.String(),
		"relay_ports", strconv.Itoa(int(s.relays.lo))+"-"+strconv.Itoa(int(s.relays.hi)))
	return nil
}

// Close stops listening, ends every allocation and closes the TCP
// connections of clients.
func (s *Server) Close() error {
	s.mu.Lock()
	srv, tl := s.pion, s.tcp
	s.pion = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Close()
	tl.closeAll()
	return err
}

// Addr is the address served (its port chosen when listen.turn's was 0);
// invalid before Start.
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bound
}

// URIs are the TURN URIs of this server, UDP and TCP, at its relay
// address (turn.external_ip, or the listening address).
func (s *Server) URIs() []string {
	port := s.Addr().Port()
	if port == 0 {
		port = s.listen.Port()
	}
	ip, _ := netip.AddrFromSlice(s.relays.relayIP)
	hp := netip.AddrPortFrom(ip.Unmap(), port).String()
	return []string{"turn:" + hp + "?transport=udp", "turn:" + hp + "?transport=tcp"}
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

// listenBoth opens UDP and TCP on the same address; with port 0 it picks
// a port free for both.
func listenBoth(addr netip.AddrPort) (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 20 {
		udp, err := net.ListenPacket("udp", addr.String())
		if err != nil {
			return nil, nil, err
		}
		port := udp.LocalAddr().(*net.UDPAddr).Port
		tcp, err := net.Listen("tcp", netip.AddrPortFrom(addr.Addr(), uint16(port)).String())
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
