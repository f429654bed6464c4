package turn

import (
	"net/netip"
	"testing"
)

func TestPeerPolicy(t *testing.T) {
	p := &peerPolicy{
		allowed: []netip.Prefix{netip.MustParsePrefix("10.20.0.0/16")},
		relayIP: netip.MustParseAddr("203.0.113.7"), relayLo: 50000, relayHi: 50010,
	}
	ips := []struct {
		ip   string
		want bool
	}{
		{"8.8.8.8", true},
		{"2a00:1450:4007::1", true},
		{"127.0.0.1", false},
		{"127.5.6.7", false},
		{"::1", false},
		{"::ffff:127.0.0.1", false},
		{"::ffff:8.8.8.8", true},
		{"10.0.0.1", false},
		{"10.20.3.4", true}, // allowed network
		{"::ffff:10.20.3.4", true},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false}, // cloud metadata
		{"fe80::1", false},
		{"fc00::1", false},
		{"fd12::1", false},
		{"224.0.0.1", false},
		{"239.255.255.250", false},
		{"ff02::1", false},
		{"0.0.0.0", false},
		{"::", false},
		{"255.255.255.255", false},
		{"100.64.0.1", false},
		{"64:ff9b::7f00:1", false},  // NAT64 of 127.0.0.1
		{"64:ff9b::808:808", true},  // NAT64 of 8.8.8.8
		{"2002:c0a8:101::1", false}, // 6to4 of 192.168.1.1
		{"2002:808:808::1", true},
		{"::127.0.0.1", false},
		{"2001::1", false},
		{"203.0.113.7", true}, // our own relay address
	}
	for _, c := range ips {
		if got := p.permitIP(netip.MustParseAddr(c.ip)); got != c.want {
			t.Errorf("permitIP(%s) = %v, want %v", c.ip, got, c.want)
		}
	}
	addrs := []struct {
		ap   string
		want bool
	}{
		{"203.0.113.7:50000", true},
		{"203.0.113.7:50010", true},
		{"203.0.113.7:3478", false}, // the TURN port itself
		{"203.0.113.7:8008", false}, // another service of ours
		{"[::ffff:203.0.113.7]:8008", false},
		{"8.8.8.8:53", true},
		{"127.0.0.1:50000", false},
		{"10.20.0.1:22", true},
	}
	for _, c := range addrs {
		if got := p.permitAddr(netip.MustParseAddrPort(c.ap)); got != c.want {
			t.Errorf("permitAddr(%s) = %v, want %v", c.ap, got, c.want)
		}
	}
}
