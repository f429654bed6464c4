package id

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// MaxLength is the byte limit of user ids, room ids, room aliases and event
// ids, sigil and domain included.
const MaxLength = 255

// ErrInvalid wraps every validation failure of this package.
var ErrInvalid = errors.New("invalid identifier")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// ServerName is a validated server name: hostname with an optional port.
// Server names are case-sensitive and never normalised.
type ServerName string

// ParseServerName validates s against the server name grammar.
func ParseServerName(s string) (ServerName, error) {
	if err := ValidServerName(s); err != nil {
		return "", err
	}
	return ServerName(s), nil
}

// ValidServerName reports whether s matches
// `hostname [ ":" port ]` with an IPv4, bracketed IPv6 or DNS hostname.
func ValidServerName(s string) error {
	host, port, hasPort, err := splitServerName(s)
	if err != nil {
		return err
	}
	if hasPort && (len(port) == 0 || len(port) > 5 || !allDigits(port)) {
		return invalid("server name %q: bad port", s)
	}
	switch {
	case strings.HasPrefix(host, "["):
		return validIPv6Literal(host)
	case isDottedQuad(host):
		// The grammar's dns-name would also match, but the prose requires
		// dotted quads to be real IPv4 addresses.
		for _, octet := range strings.Split(host, ".") {
			if n := atoi(octet); n > 255 {
				return invalid("server name %q: IPv4 octet out of range", s)
			}
		}
		return nil
	default:
		if len(host) == 0 || len(host) > 255 {
			return invalid("server name %q: bad hostname length", s)
		}
		for i := 0; i < len(host); i++ {
			if !isDNSChar(host[i]) {
				return invalid("server name %q: bad character %q", s, host[i])
			}
		}
		return nil
	}
}

// splitServerName splits at the port separator without validating.
func splitServerName(s string) (host, port string, hasPort bool, err error) {
	if s == "" {
		return "", "", false, invalid("empty server name")
	}
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", "", false, invalid("server name %q: unterminated IPv6 literal", s)
		}
		host, rest := s[:end+1], s[end+1:]
		if rest == "" {
			return host, "", false, nil
		}
		if rest[0] != ':' {
			return "", "", false, invalid("server name %q: junk after IPv6 literal", s)
		}
		return host, rest[1:], true, nil
	}
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[:i], s[i+1:], true, nil
	}
	return s, "", false, nil
}

func validIPv6Literal(host string) error {
	inner := host[1 : len(host)-1]
	if len(inner) < 2 || len(inner) > 45 {
		return invalid("IPv6 literal %q: bad length", host)
	}
	for i := 0; i < len(inner); i++ {
		c := inner[i]
		if !isHexDigit(c) && c != ':' && c != '.' {
			return invalid("IPv6 literal %q: bad character %q", host, c)
		}
	}
	addr, err := netip.ParseAddr(inner)
	if err != nil || !addr.Is6() {
		return invalid("IPv6 literal %q: not an IPv6 address", host)
	}
	return nil
}

// Hostname returns the host without port, and without brackets for IPv6
// literals (like url.URL.Hostname).
func (s ServerName) Hostname() string {
	host, _, _, err := splitServerName(string(s))
	if err != nil {
		return ""
	}
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		return host[1 : len(host)-1]
	}
	return host
}

// Port returns the explicit port, or "" when there is none.
func (s ServerName) Port() string {
	_, port, _, err := splitServerName(string(s))
	if err != nil {
		return ""
	}
	return port
}

// IsIPLiteral reports whether the hostname is an IPv4 or IPv6 literal,
// which server discovery treats differently from DNS names.
func (s ServerName) IsIPLiteral() bool {
	host, _, _, err := splitServerName(string(s))
	return err == nil && (strings.HasPrefix(host, "[") || isDottedQuad(host))
}

func (s ServerName) String() string { return string(s) }

// isDottedQuad matches 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT.
func isDottedQuad(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return false
	}
	for _, p := range parts {
		if len(p) < 1 || len(p) > 3 || !allDigits(p) {
			return false
		}
	}
	return true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// atoi converts at most three validated digits.
func atoi(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		n = n*10 + int(s[i]-'0')
	}
	return n
}

func isHexDigit(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func isDNSChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.'
}
