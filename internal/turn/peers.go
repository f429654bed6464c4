package turn

import (
	"net"
	"net/netip"
)

// peerPolicy decides which peers an allocation may relay to. Only public
// unicast addresses pass, besides the operator's allowed networks and
// this server's own relay address (a caller's relay talking to the other
// caller's relay), where only the relay ports are reachable: never the
// TURN port itself nor any other service of the machine.
type peerPolicy struct {
	allowed          []netip.Prefix
	relayIP          netip.Addr
	relayIP6         netip.Addr // the IPv6 relay address; invalid: none
	relayLo, relayHi uint16
}

// isRelay reports whether ip is one of this server's relay addresses.
func (p *peerPolicy) isRelay(ip netip.Addr) bool {
	return ip == p.relayIP || p.relayIP6.IsValid() && ip == p.relayIP6
}

// permitIP is the check of CreatePermission and ChannelBind, which name
// an address without a port.
func (p *peerPolicy) permitIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	return p.isRelay(ip) || p.inAllowed(ip) || isPublic(ip)
}

// permitAddr is the check of every datagram sent to a peer.
func (p *peerPolicy) permitAddr(ap netip.AddrPort) bool {
	ip := ap.Addr().Unmap()
	if p.inAllowed(ip) {
		return true
	}
	if p.isRelay(ip) {
		return ap.Port() >= p.relayLo && ap.Port() <= p.relayHi
	}
	return isPublic(ip)
}

func (p *peerPolicy) inAllowed(ip netip.Addr) bool {
	for _, n := range p.allowed {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// notPublic lists the special-purpose ranges (RFC 6890 and successors)
// that the netip predicates leave out.
var notPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT
	netip.MustParsePrefix("192.0.0.0/24"),    // IETF protocol assignments
	netip.MustParsePrefix("192.0.2.0/24"),    // documentation
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("198.51.100.0/24"), // documentation
	netip.MustParsePrefix("203.0.113.0/24"),  // documentation
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, broadcast
	netip.MustParsePrefix("::/96"),           // IPv4-compatible (deprecated)
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local-use NAT64
	netip.MustParsePrefix("100::/64"),        // discard-only
	netip.MustParsePrefix("2001::/32"),       // Teredo: hides an IPv4 address
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("fec0::/10"),       // site-local (deprecated)
}

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// isPublic reports whether ip is a global unicast address. Addresses
// that embed an IPv4 one (IPv4-mapped, NAT64, 6to4) are judged by it.
func isPublic(ip netip.Addr) bool {
	ip = ip.Unmap()
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64.Contains(ip):
			return isPublic(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		case sixToFour.Contains(ip):
			return isPublic(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
		}
	}
	if !ip.IsValid() || !ip.IsGlobalUnicast() || ip.IsPrivate() || ip.Zone() != "" {
		return false // also loopback, link-local, multicast, unspecified
	}
	for _, n := range notPublic {
		if n.Contains(ip) {
			return false
		}
	}
	return true
}

// addrOf converts a net.Addr of a UDP socket.
func addrOf(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort(), true
	case *net.TCPAddr:
		return a.AddrPort(), true
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}
