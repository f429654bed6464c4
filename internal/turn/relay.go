package turn

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"
)

var (
	errNoRelayPort  = errors.New("turn: no relay port free")
	errPeerRefused  = errors.New("turn: peer address refused")
	errNoTCPRelays  = errors.New("turn: TCP relays (RFC 6062) are not offered")
	errPortOutRange = errors.New("turn: requested relay port outside turn.relay_ports")
)

// relays makes allocations' relay sockets (pion's RelayAddressGenerator):
// UDP ports of turn.relay_ports on the bind address, advertised as the
// relay address, each wrapped in a relayConn.
type relays struct {
	network  string // udp4 or udp6: the family of the relays made
	bindIP   string // where relay sockets listen
	relayIP  net.IP // what clients are told
	lo, hi   uint16
	policy   *peerPolicy
	bitrate  int64 // bits per second per allocation; 0: no bound
	metrics  *metrics
	attempts int // ports tried before giving up
}

// Validate implements turn.RelayAddressGenerator.
func (r *relays) Validate() error {
	if r.relayIP == nil || r.lo == 0 || r.hi < r.lo {
		return errors.New("turn: relay address and ports must be set")
	}
	return nil
}

// AllocatePacketConn opens a relay socket on a free port of the range,
// tried from a random one on. Its family is the generator's, that of
// the listener the client came to (pion asks for udp4 always: v4.1.4
// does not read RFC 6156's REQUESTED-ADDRESS-FAMILY).
func (r *relays) AllocatePacketConn(_ string, requestedPort int) (net.PacketConn, net.Addr, error) {
	network := r.network
	size := int(r.hi-r.lo) + 1
	ports := []int{requestedPort}
	if requestedPort != 0 {
		if requestedPort < int(r.lo) || requestedPort > int(r.hi) {
			return nil, nil, errPortOutRange
		}
	} else {
		start := rand.IntN(size)
		ports = ports[:0]
		for i := range min(size, r.attempts) {
			ports = append(ports, int(r.lo)+(start+i)%size)
		}
	}
	for _, port := range ports {
		conn, err := net.ListenPacket(network, net.JoinHostPort(r.bindIP, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		rc := &relayConn{PacketConn: conn, r: r}
		if r.bitrate > 0 {
			rc.bucket = newBucket(r.bitrate / 8)
		}
		return rc, &net.UDPAddr{IP: r.relayIP, Port: port}, nil
	}
	r.metrics.allocsRefused.WithLabelValues("ports").Inc()
	return nil, nil, fmt.Errorf("%w in %d-%d", errNoRelayPort, r.lo, r.hi)
}

// AllocateConn implements turn.RelayAddressGenerator: TCP relays are not
// offered (WebRTC relays UDP; clients reach us over TCP all the same).
func (r *relays) AllocateConn(string, int) (net.Conn, net.Addr, error) {
	return nil, nil, errNoTCPRelays
}

// relayConn is one allocation's relay socket. It checks every datagram's
// peer again (the permission names an address, the datagram a port
// too), holds the allocation to its bitrate and counts what it relays.
// pion reads it from one goroutine and writes it from others.
type relayConn struct {
	net.PacketConn
	r      *relays
	bucket *bucket // nil: no bound
}

// ReadFrom returns the next datagram from a peer within the bitrate.
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil {
			return n, addr, err
		}
		if !c.bucket.take(n) {
			c.r.metrics.dropped.Inc()
			continue
		}
		c.r.metrics.fromPeer.Add(float64(n))
		return n, addr, nil
	}
}

// WriteTo sends a datagram to a peer the policy allows, within the
// bitrate; one over it is dropped as a congested link would.
func (c *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ap, ok := addrOf(addr)
	if !ok || !c.r.policy.permitAddr(ap) {
		c.r.metrics.peersRefused.Inc()
		return 0, errPeerRefused
	}
	if !c.bucket.take(len(p)) {
		c.r.metrics.dropped.Inc()
		return len(p), nil
	}
	n, err := c.PacketConn.WriteTo(p, addr)
	c.r.metrics.toPeer.Add(float64(n))
	return n, err
}

// bucket is a token bucket of bytes: rate per second, a burst of half a
// second (a video key frame) but at least 64 KiB.
type bucket struct {
	mu     sync.Mutex
	rate   float64 // bytes per second
	burst  float64
	tokens float64
	last   time.Time
}

func newBucket(bytesPerSecond int64) *bucket {
	burst := max(float64(bytesPerSecond)/2, 64<<10)
	return &bucket{rate: float64(bytesPerSecond), burst: burst, tokens: burst, last: time.Now()}
}

// take spends n bytes if the bucket holds them; a nil bucket always can.
func (b *bucket) take(n int) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+b.rate*now.Sub(b.last).Seconds())
	b.last = now
	if b.tokens < float64(n) {
		return false
	}
	b.tokens -= float64(n)
	return true
}
