package canonicaljson

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxDepth bounds nesting so that hostile input cannot exhaust the stack.
const MaxDepth = 128

// maxSafeInt is 2**53-1, the largest integer canonical JSON allows.
const maxSafeInt = 1<<53 - 1

// ErrInvalid wraps every parse or range failure.
var ErrInvalid = errors.New("invalid canonical json input")

// Canonicalize parses raw JSON and returns its canonical encoding. Numbers
// must be integers in [-(2**53)+1, (2**53)-1]; duplicate object keys and
// invalid UTF-8 are rejected.
func Canonicalize(raw []byte) ([]byte, error) {
	return canonicalize(raw, true)
}

// CanonicalizeLenient is Canonicalize for events of room versions 1–5, which
// may carry integers outside the safe range or floats: numbers are kept as
// written (normalised only when they are plain integers).
func CanonicalizeLenient(raw []byte) ([]byte, error) {
	return canonicalize(raw, false)
}

// Marshal encodes v with encoding/json and canonicalizes the result.
func Marshal(v any) ([]byte, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return Canonicalize(raw)
}

func canonicalize(raw []byte, strict bool) ([]byte, error) {
	p := parser{in: raw, strict: strict, out: make([]byte, 0, len(raw))}
	p.skipSpace()
	if err := p.value(0); err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.in) {
		return nil, p.errf("trailing data")
	}
	return p.out, nil
}

type parser struct {
	in     []byte
	pos    int
	out    []byte
	strict bool
}

func (p *parser) errf(format string, args ...any) error {
	return fmt.Errorf("%w: %s at offset %d", ErrInvalid, fmt.Sprintf(format, args...), p.pos)
}

func (p *parser) skipSpace() {
	for p.pos < len(p.in) {
		switch p.in[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) value(depth int) error {
	if depth > MaxDepth {
		return p.errf("nesting deeper than %d", MaxDepth)
	}
	if p.pos >= len(p.in) {
		return p.errf("unexpected end")
	}
	switch c := p.in[p.pos]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return err
		}
		p.out = appendString(p.out, s)
		return nil
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		return p.errf("unexpected character %q", c)
	}
}

func (p *parser) literal(word string) error {
	if !strings.HasPrefix(string(p.in[p.pos:min(len(p.in), p.pos+len(word))]), word) {
		return p.errf("invalid literal")
	}
	p.pos += len(word)
	p.out = append(p.out, word...)
	return nil
}

type member struct {
	key string
	val []byte
}

func (p *parser) object(depth int) error {
	p.pos++ // {
	var members []member
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == '}' {
		p.pos++
		p.out = append(p.out, "{}"...)
		return nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.in) || p.in[p.pos] != '"' {
			return p.errf("expected object key")
		}
		key, err := p.str()
		if err != nil {
			return err
		}
		p.skipSpace()
		if p.pos >= len(p.in) || p.in[p.pos] != ':' {
			return p.errf("expected ':'")
		}
		p.pos++
		p.skipSpace()
		// Encode the value into a scratch region at the end of out, then
		// move it aside so that members can be sorted.
		start := len(p.out)
		if err := p.value(depth + 1); err != nil {
			return err
		}
		val := slices.Clone(p.out[start:])
		p.out = p.out[:start]
		members = append(members, member{key, val})
		p.skipSpace()
		if p.pos >= len(p.in) {
			return p.errf("unterminated object")
		}
		if p.in[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.in[p.pos] == '}' {
			p.pos++
			break
		}
		return p.errf("expected ',' or '}'")
	}
	// Go compares strings bytewise; for valid UTF-8 that is code point order.
	slices.SortFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
	p.out = append(p.out, '{')
	for i, m := range members {
		if i > 0 {
			if members[i-1].key == m.key {
				return p.errf("duplicate key %q", m.key)
			}
			p.out = append(p.out, ',')
		}
		p.out = appendString(p.out, m.key)
		p.out = append(p.out, ':')
		p.out = append(p.out, m.val...)
	}
	p.out = append(p.out, '}')
	return nil
}

func (p *parser) array(depth int) error {
	p.pos++ // [
	p.out = append(p.out, '[')
	p.skipSpace()
	if p.pos < len(p.in) && p.in[p.pos] == ']' {
		p.pos++
		p.out = append(p.out, ']')
		return nil
	}
	for first := true; ; first = false {
		if !first {
			p.out = append(p.out, ',')
		}
		p.skipSpace()
		if err := p.value(depth + 1); err != nil {
			return err
		}
		p.skipSpace()
		if p.pos >= len(p.in) {
			return p.errf("unterminated array")
		}
		if p.in[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.in[p.pos] == ']' {
			p.pos++
			p.out = append(p.out, ']')
			return nil
		}
		return p.errf("expected ',' or ']'")
	}
}

func (p *parser) number() error {
	start := p.pos
	if p.in[p.pos] == '-' {
		p.pos++
	}
	digits := p.pos
	for p.pos < len(p.in) && p.in[p.pos] >= '0' && p.in[p.pos] <= '9' {
		p.pos++
	}
	if p.pos == digits {
		return p.errf("invalid number")
	}
	if p.in[digits] == '0' && p.pos-digits > 1 {
		return p.errf("leading zero")
	}
	isInt := true
	if p.pos < len(p.in) && p.in[p.pos] == '.' {
		isInt = false
		p.pos++
		fd := p.pos
		for p.pos < len(p.in) && p.in[p.pos] >= '0' && p.in[p.pos] <= '9' {
			p.pos++
		}
		if p.pos == fd {
			return p.errf("invalid fraction")
		}
	}
	if p.pos < len(p.in) && (p.in[p.pos] == 'e' || p.in[p.pos] == 'E') {
		isInt = false
		p.pos++
		if p.pos < len(p.in) && (p.in[p.pos] == '+' || p.in[p.pos] == '-') {
			p.pos++
		}
		ed := p.pos
		for p.pos < len(p.in) && p.in[p.pos] >= '0' && p.in[p.pos] <= '9' {
			p.pos++
		}
		if p.pos == ed {
			return p.errf("invalid exponent")
		}
	}
	lit := string(p.in[start:p.pos])
	if isInt {
		n, err := strconv.ParseInt(lit, 10, 64)
		if err == nil && n >= -maxSafeInt && n <= maxSafeInt {
			p.out = strconv.AppendInt(p.out, n, 10)
			return nil
		}
		if p.strict {
			return p.errf("integer %s out of range", lit)
		}
		p.out = append(p.out, lit...)
		return nil
	}
	// A float that is an exact integer (e.g. 1.0 or 1e3) is accepted as
	// that integer, as other implementations do; real fractions are not.
	f, err := strconv.ParseFloat(lit, 64)
	if err == nil && f == math.Trunc(f) && math.Abs(f) <= maxSafeInt && !(f == 0 && math.Signbit(f)) {
		p.out = strconv.AppendInt(p.out, int64(f), 10)
		return nil
	}
	if p.strict {
		return p.errf("number %s is not an integer", lit)
	}
	p.out = append(p.out, lit...)
	return nil
}

// str parses a JSON string starting at the opening quote and returns its
// decoded value.
func (p *parser) str() (string, error) {
	p.pos++ // opening quote
	start := p.pos
	// Fast path: no escapes.
	for p.pos < len(p.in) {
		c := p.in[p.pos]
		if c == '"' {
			s := p.in[start:p.pos]
			if !utf8.Valid(s) {
				return "", p.errf("invalid UTF-8")
			}
			p.pos++
			return string(s), nil
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", p.errf("control character in string")
		}
		p.pos++
	}
	var b strings.Builder
	b.Write(p.in[start:p.pos])
	for p.pos < len(p.in) {
		c := p.in[p.pos]
		switch {
		case c == '"':
			p.pos++
			s := b.String()
			if !utf8.ValidString(s) {
				return "", p.errf("invalid UTF-8")
			}
			return s, nil
		case c < 0x20:
			return "", p.errf("control character in string")
		case c != '\\':
			b.WriteByte(c)
			p.pos++
			continue
		}
		p.pos++
		if p.pos >= len(p.in) {
			break
		}
		esc := p.in[p.pos]
		p.pos++
		switch esc {
		case '"', '\\', '/':
			b.WriteByte(esc)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return "", p.errf("invalid \\u escape")
			}
			if r >= 0xD800 && r < 0xDC00 {
				// High surrogate: must be followed by a low one.
				if p.pos+1 < len(p.in) && p.in[p.pos] == '\\' && p.in[p.pos+1] == 'u' {
					p.pos += 2
					r2, ok := p.hex4()
					if !ok || r2 < 0xDC00 || r2 >= 0xE000 {
						return "", p.errf("invalid surrogate pair")
					}
					r = 0x10000 + (r-0xD800)<<10 + (r2 - 0xDC00)
				} else {
					return "", p.errf("lone surrogate")
				}
			} else if r >= 0xDC00 && r < 0xE000 {
				return "", p.errf("lone surrogate")
			}
			b.WriteRune(r)
		default:
			return "", p.errf("invalid escape")
		}
	}
	return "", p.errf("unterminated string")
}

func (p *parser) hex4() (rune, bool) {
	if p.pos+4 > len(p.in) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p.in[p.pos:p.pos+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	p.pos += 4
	return rune(n), true
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a canonical JSON string: only '"', '\\' and
// control characters are escaped, everything else is raw UTF-8.
func appendString(out []byte, s string) []byte {
	out = append(out, '"')
	last := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		out = append(out, s[last:i]...)
		switch c {
		case '"':
			out = append(out, `\"`...)
		case '\\':
			out = append(out, `\\`...)
		case '\b':
			out = append(out, `\b`...)
		case '\f':
			out = append(out, `\f`...)
		case '\n':
			out = append(out, `\n`...)
		case '\r':
			out = append(out, `\r`...)
		case '\t':
			out = append(out, `\t`...)
		default:
			out = append(out, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		last = i + 1
	}
	out = append(out, s[last:]...)
	return append(out, '"')
}

// AppendString appends s as a canonical JSON string. s must be valid UTF-8.
func AppendString(dst []byte, s string) []byte { return appendString(dst, s) }
