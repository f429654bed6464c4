package eventauth

import (
	"strings"
	"unicode/utf8"
)

// domain returns the part after the first ':' of a user, room or v1 event
// id, or "" when there is none.
func domain(id string) string {
	if i := strings.IndexByte(id, ':'); i >= 0 {
		return id[i+1:]
	}
	return ""
}

// validUserID applies the user id grammar with the historical localpart
// rules, which servers must still accept over federation: any code point
// but ':' and NUL, even an empty localpart. The server name must follow the
// grammar and the whole id must fit in 255 bytes.
func validUserID(s string) bool {
	if len(s) > 255 || !strings.HasPrefix(s, "@") {
		return false
	}
	i := strings.IndexByte(s, ':')
	if i < 0 {
		return false
	}
	local := s[1:i]
	if !utf8.ValidString(local) || strings.IndexByte(local, 0) >= 0 {
		return false
	}
	return validServerName(s[i+1:])
}

// validServerName follows the appendix grammar:
// hostname [":" port], hostname = IPv4 / "[" IPv6 "]" / dns-name.
// An IPv4 literal is also a dns-name, so it needs no case of its own.
func validServerName(s string) bool {
	host, port, hasPort := s, "", false
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		host = s[1:end]
		if rest := s[end+1:]; rest != "" {
			if rest[0] != ':' {
				return false
			}
			port, hasPort = rest[1:], true
		}
		if len(host) < 2 || len(host) > 45 || !allBytes(host, isIPv6Char) {
			return false
		}
	} else {
		if i := strings.IndexByte(s, ':'); i >= 0 {
			host, port, hasPort = s[:i], s[i+1:], true
		}
		if host == "" || len(host) > 255 || !allBytes(host, isDNSChar) {
			return false
		}
	}
	return !hasPort || port != "" && len(port) <= 5 && allBytes(port, isDigit)
}

func allBytes(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isDNSChar(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-' || c == '.'
}

func isIPv6Char(c byte) bool {
	return isDigit(c) || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' || c == ':' || c == '.'
}
