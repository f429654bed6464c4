package federation

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"luxchat/internal/matrix/id"
)

// ErrNotAllowed: the server is outside federation.allowed_servers (or is
// ourselves).
var ErrNotAllowed = errors.New("server not allowed to federate")

// ErrDeniedNetwork: every address of a destination is in
// federation.deny_networks.
var ErrDeniedNetwork = errors.New("destination address is in a denied network")

// Policy decides which servers and addresses federation may reach. It is
// immutable and safe for concurrent use.
type Policy struct {
	self    string
	allowed []string // empty: every server
	deny    []netip.Prefix
}

// NewPolicy builds a policy; self is our own server name, never a
// destination.
func NewPolicy(self string, allowed, denyNetworks []string) (*Policy, error) {
	p := &Policy{self: self, allowed: append([]string(nil), allowed...)}
	for _, n := range denyNetworks {
		pfx, err := netip.ParsePrefix(n)
		if err != nil {
			return nil, fmt.Errorf("deny network %q: %w", n, err)
		}
		p.deny = append(p.deny, pfx.Masked())
	}
	return p, nil
}

// Allowed reports whether serverName may federate with us: it matches
// allowed_servers (or that list is empty) and is not our own name.
func (p *Policy) Allowed(serverName string) error {
	if serverName == p.self {
		return fmt.Errorf("%w: %q is this server", ErrNotAllowed, serverName)
	}
	if len(p.allowed) == 0 {
		return nil
	}
	host := serverName
	if sn := id.ServerName(serverName); sn.Port() != "" {
		host = strings.TrimSuffix(serverName, ":"+sn.Port())
	}
	for _, pattern := range p.allowed {
		// A pattern without a port allows every port of its hosts.
		if MatchServer(pattern, serverName) || (!hasPort(pattern) && MatchServer(pattern, host)) {
			return nil
		}
	}
	return fmt.Errorf("%w: %q is not in federation.allowed_servers", ErrNotAllowed, serverName)
}

// DeniedAddr reports whether addr is in a denied network. IPv4-mapped
// IPv6 addresses are checked as IPv4.
func (p *Policy) DeniedAddr(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, pfx := range p.deny {
		if pfx.Contains(addr) {
			return true
		}
	}
	return false
}

// MatchServer matches a server name against a pattern where '*' stands
// for any run of characters (possibly empty). Comparison is exact
// otherwise: server names are case-sensitive.
func MatchServer(pattern, name string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == name
	}
	if !strings.HasPrefix(name, parts[0]) {
		return false
	}
	name = name[len(parts[0]):]
	last := parts[len(parts)-1]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(name, mid)
		if i < 0 {
			return false
		}
		name = name[i+len(mid):]
	}
	return strings.HasSuffix(name, last)
}

// hasPort reports whether a server name pattern ends in a port.
func hasPort(pattern string) bool {
	i := strings.LastIndexByte(pattern, ':')
	return i >= 0 && !strings.HasSuffix(pattern, "]") && !strings.Contains(pattern[i:], "]")
}
