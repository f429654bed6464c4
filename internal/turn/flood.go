package turn

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// floodGuard wraps the UDP socket: STUN requests (Binding, Allocate,
// Refresh, CreatePermission, ChannelBind) from one address beyond a
// rate are dropped unread. Over UDP a source address can be forged, and
// each request is answered (an unauthenticated Allocate with a nonce
// several times its size), so without it the server would reflect a
// flood at whoever the forged address names. Relayed data (ChannelData,
// Send indications) is not counted: its volume is the bitrate's business.
// One goroutine reads it (pion's read loop).
type floodGuard struct {
	net.PacketConn
	rate, burst float64 // requests per second and burst, per source IP
	onDrop      func()

	mu      sync.Mutex
	sources map[netip.Addr]*requestBucket
	swept   time.Time
}

type requestBucket struct {
	tokens float64
	last   time.Time
}

func newFloodGuard(pc net.PacketConn, perSecond, burst int, onDrop func()) *floodGuard {
	return &floodGuard{PacketConn: pc, rate: float64(perSecond), burst: float64(burst), onDrop: onDrop,
		sources: map[netip.Addr]*requestBucket{}, swept: time.Now()}
}

// ReadFrom returns the next datagram that is not a request over its
// source's rate.
func (g *floodGuard) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := g.PacketConn.ReadFrom(p)
		if err != nil || !isSTUNRequest(p[:n]) {
			return n, addr, err
		}
		ap, ok := addrOf(addr)
		if !ok || g.allow(ap.Addr().Unmap(), time.Now()) {
			return n, addr, nil
		}
		g.onDrop()
	}
}

func (g *floodGuard) allow(ip netip.Addr, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now.Sub(g.swept) > time.Minute { // forget sources whose bucket is full again
		for a, b := range g.sources {
			if now.Sub(b.last).Seconds()*g.rate >= g.burst {
				delete(g.sources, a)
			}
		}
		g.swept = now
	}
	b := g.sources[ip]
	if b == nil {
		b = &requestBucket{tokens: g.burst, last: now}
		g.sources[ip] = b
	}
	b.tokens = min(g.burst, b.tokens+g.rate*now.Sub(b.last).Seconds())
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// isSTUNRequest reports whether b is a STUN message of the request class
// (RFC 5389: the top two bits zero, the magic cookie, class bits 00).
// ChannelData starts with 0b01, indications have class 01.
func isSTUNRequest(b []byte) bool {
	if len(b) < 20 || b[0]&0xC0 != 0 || b[4] != 0x21 || b[5] != 0x12 || b[6] != 0xA4 || b[7] != 0x42 {
		return false
	}
	class := (b[0]&0x01)<<1 | (b[1]&0x10)>>4
	return class == 0
}
