package signing

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"luxchat/internal/matrix/id"
)

var (
	// ErrBadHeader: the Authorization header is not a usable X-Matrix one.
	ErrBadHeader = errors.New("invalid X-Matrix authorization")
	// ErrWrongDestination: the request names another server as destination;
	// the spec requires 401 for it.
	ErrWrongDestination = errors.New("request is for another destination")
)

// XMatrix holds the parameters of an "Authorization: X-Matrix …" header.
// Destination is empty when an older server left it out.
type XMatrix struct {
	Origin      string
	Destination string
	Key         string
	Sig         string
}

// String formats the header value the way the spec asks senders to: one
// space after the scheme, lower-case names, quoted values, no spaces around
// commas.
func (x XMatrix) String() string {
	var b strings.Builder
	b.WriteString("X-Matrix ")
	param := func(name, value string) {
		if b.Len() > len("X-Matrix ") {
			b.WriteByte(',')
		}
		b.WriteString(name)
		b.WriteString(`="`)
		for i := 0; i < len(value); i++ {
			if value[i] == '"' || value[i] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(value[i])
		}
		b.WriteByte('"')
	}
	param("origin", x.Origin)
	if x.Destination != "" {
		param("destination", x.Destination)
	}
	param("key", x.Key)
	param("sig", x.Sig)
	return b.String()
}

// ParseXMatrix parses an Authorization header value (RFC 9110 section 11.4
// syntax): case-insensitive scheme and names, any order, optional quotes,
// backslash escapes, spaces and tabs around commas, unknown names ignored.
// Unquoted values may hold ':' (and other non-separators) for older servers.
func ParseXMatrix(header string) (XMatrix, error) {
	const scheme = "X-Matrix"
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) ||
		(header[len(scheme)] != ' ' && header[len(scheme)] != '\t') {
		return XMatrix{}, fmt.Errorf("%w: not an X-Matrix header", ErrBadHeader)
	}
	p := headerParser{s: header, pos: len(scheme)}
	var x XMatrix
	seen := map[string]bool{}
	for {
		p.skip(" \t,")
		if p.done() {
			break
		}
		name, value, err := p.param()
		if err != nil {
			return XMatrix{}, err
		}
		p.skip(" \t")
		if !p.done() && p.s[p.pos] != ',' {
			return XMatrix{}, fmt.Errorf("%w: expected ',' after %s", ErrBadHeader, name)
		}
		name = strings.ToLower(name)
		var field *string
		switch name {
		case "origin":
			field = &x.Origin
		case "destination":
			field = &x.Destination
		case "key":
			field = &x.Key
		case "sig":
			field = &x.Sig
		default:
			continue // unknown parameters are ignored
		}
		if seen[name] {
			return XMatrix{}, fmt.Errorf("%w: duplicate %q", ErrBadHeader, name)
		}
		seen[name] = true
		*field = value
	}
	if x.Origin == "" || x.Key == "" || x.Sig == "" {
		return XMatrix{}, fmt.Errorf("%w: origin, key and sig are required", ErrBadHeader)
	}
	if err := id.ValidServerName(x.Origin); err != nil {
		return XMatrix{}, fmt.Errorf("%w: origin: %w", ErrBadHeader, err)
	}
	if x.Destination != "" {
		if err := id.ValidServerName(x.Destination); err != nil {
			return XMatrix{}, fmt.Errorf("%w: destination: %w", ErrBadHeader, err)
		}
	}
	if err := ValidKeyID(x.Key); err != nil {
		return XMatrix{}, fmt.Errorf("%w: %w", ErrBadHeader, err)
	}
	return x, nil
}

type headerParser struct {
	s   string
	pos int
}

func (p *headerParser) done() bool { return p.pos >= len(p.s) }

func (p *headerParser) skip(chars string) {
	for p.pos < len(p.s) && strings.IndexByte(chars, p.s[p.pos]) >= 0 {
		p.pos++
	}
}

// param reads token BWS "=" BWS ( token / quoted-string ).
func (p *headerParser) param() (name, value string, err error) {
	start := p.pos
	for p.pos < len(p.s) && isTChar(p.s[p.pos]) {
		p.pos++
	}
	name = p.s[start:p.pos]
	p.skip(" \t")
	if name == "" || p.done() || p.s[p.pos] != '=' {
		return "", "", fmt.Errorf("%w: malformed parameter at offset %d", ErrBadHeader, start)
	}
	p.pos++
	p.skip(" \t")
	if !p.done() && p.s[p.pos] == '"' {
		p.pos++
		var b strings.Builder
		for {
			if p.done() {
				return "", "", fmt.Errorf("%w: unterminated quoted value of %s", ErrBadHeader, name)
			}
			c := p.s[p.pos]
			p.pos++
			switch {
			case c == '"':
				return name, b.String(), nil
			case c == '\\' && !p.done():
				b.WriteByte(p.s[p.pos])
				p.pos++
			default:
				b.WriteByte(c)
			}
		}
	}
	start = p.pos
	for p.pos < len(p.s) && isBareValueChar(p.s[p.pos]) {
		p.pos++
	}
	if p.pos == start {
		return "", "", fmt.Errorf("%w: empty value of %s", ErrBadHeader, name)
	}
	return name, p.s[start:p.pos], nil
}

// isTChar reports RFC 9110 token characters.
func isTChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// isBareValueChar accepts any visible ASCII but the separators that end
// or quote a value; this covers tokens and the colons older servers send.
func isBareValueChar(c byte) bool {
	return c > ' ' && c < 0x7f && c != ',' && c != '"' && c != '\\'
}

// requestJSON is the object a federation request signature covers.
func requestJSON(method, uri, origin, destination string, content []byte) (map[string]json.RawMessage, error) {
	obj := map[string]json.RawMessage{}
	for k, v := range map[string]string{"method": method, "uri": uri, "origin": origin, "destination": destination} {
		obj[k], _ = json.Marshal(v)
	}
	if len(content) > 0 {
		if !isJSON(content) {
			return nil, fmt.Errorf("%w: request content is not JSON", ErrBadJSON)
		}
		obj["content"] = content
	}
	return obj, nil
}

// SignRequest signs a federation request. uri is the full path with query
// string, starting at /_matrix; content is the JSON body, or nil.
func SignRequest(k KeyPair, origin, destination, method, uri string, content []byte) (XMatrix, error) {
	obj, err := requestJSON(method, uri, origin, destination, content)
	if err != nil {
		return XMatrix{}, err
	}
	msg, err := encodeObject(obj)
	if err != nil {
		return XMatrix{}, fmt.Errorf("%w: %w", ErrBadJSON, err)
	}
	return XMatrix{Origin: origin, Destination: destination, Key: k.ID(), Sig: EncodeBase64(k.Sign(msg))}, nil
}

// VerifyRequest checks a parsed X-Matrix header against the request, with
// pub being the origin's key x.Key. self is the receiving server's name:
// a header naming another destination fails with ErrWrongDestination, and
// a header without one (older servers) is checked as addressed to self.
func VerifyRequest(x XMatrix, pub ed25519.PublicKey, self, method, uri string, content []byte) error {
	if x.Destination != "" && x.Destination != self {
		return fmt.Errorf("%w: %q", ErrWrongDestination, x.Destination)
	}
	obj, err := requestJSON(method, uri, x.Origin, self, content)
	if err != nil {
		return err
	}
	sig, _ := json.Marshal(map[string]map[string]string{x.Origin: {x.Key: x.Sig}})
	obj["signatures"] = sig
	raw, err := encodeObject(obj)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadJSON, err)
	}
	return VerifyJSON(raw, x.Origin, x.Key, pub)
}
