package pdu

import (
	"encoding/json"
	"fmt"
	"strconv"

	"luxchat/internal/matrix/canonicaljson"
)

// object is a JSON object split into members whose values are canonical
// JSON. It is how this package edits events without losing bytes.
type object map[string]json.RawMessage

func canonicalize(raw []byte, strict bool) ([]byte, error) {
	if strict {
		return canonicaljson.Canonicalize(raw)
	}
	return canonicaljson.CanonicalizeLenient(raw)
}

// decodeObject canonicalises raw (so duplicate keys, bad UTF-8 and, when
// strict, non-canonical numbers are rejected) and splits it.
func decodeObject(raw []byte, strict bool) (object, error) {
	c, err := canonicalize(raw, strict)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return splitCanonical(c)
}

// splitCanonical splits JSON that is already canonical.
func splitCanonical(c []byte) (object, error) {
	if len(c) == 0 || c[0] != '{' {
		return nil, fmt.Errorf("%w: not a JSON object", ErrInvalid)
	}
	if o, ok := scanCanonical(c); ok {
		return o, nil
	}
	var o object
	if err := json.Unmarshal(c, &o); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return o, nil
}

// scanCanonical splits a canonical JSON object by scanning its bytes,
// several times faster than encoding/json, which loading a big room's
// state (a parse per event) spends most of its time in. Canonical JSON
// has no whitespace and no duplicate keys, so the scan needs only to
// find where each value ends. Anything else (a key with an escape,
// bytes that are not canonical JSON) is left to encoding/json: ok false.
// Values are copied, as encoding/json copies them.
func scanCanonical(c []byte) (o object, ok bool) {
	o = object{}
	i := 1
	if len(c) == 2 && c[1] == '}' {
		return o, true
	}
	for {
		if i >= len(c) || c[i] != '"' {
			return nil, false
		}
		start := i + 1
		j := start
		for j < len(c) && c[j] != '"' && c[j] != '\\' {
			j++
		}
		if j >= len(c) || c[j] != '"' || j+1 >= len(c) || c[j+1] != ':' {
			return nil, false
		}
		key := string(c[start:j])
		end, ok := skipValue(c, j+2)
		if !ok {
			return nil, false
		}
		if _, dup := o[key]; dup {
			return nil, false
		}
		o[key] = json.RawMessage(append([]byte(nil), c[j+2:end]...))
		if end >= len(c) {
			return nil, false
		}
		switch c[end] {
		case ',':
			i = end + 1
		case '}':
			return o, end == len(c)-1
		default:
			return nil, false
		}
	}
}

// skipValue returns where the JSON value at c[i:] ends; ok false when it
// does not end or does not start like a value.
func skipValue(c []byte, i int) (end int, ok bool) {
	if i >= len(c) {
		return 0, false
	}
	switch c[i] {
	case '"':
		return skipString(c, i)
	case '{', '[':
		depth := 0
		for i < len(c) {
			switch c[i] {
			case '"':
				e, ok := skipString(c, i)
				if !ok {
					return 0, false
				}
				i = e
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return 0, false
	default: // number, true, false, null
		j := i
		for j < len(c) && c[j] != ',' && c[j] != '}' && c[j] != ']' && c[j] != '"' && c[j] != '{' && c[j] != '[' {
			j++
		}
		return j, j > i
	}
}

// skipString returns the index after the JSON string starting at c[i].
func skipString(c []byte, i int) (end int, ok bool) {
	for j := i + 1; j < len(c); j++ {
		switch c[j] {
		case '\\':
			j++
		case '"':
			return j + 1, true
		}
	}
	return 0, false
}

// encode returns the canonical JSON of o.
func (o object) encode(strict bool) ([]byte, error) {
	b, err := json.Marshal(map[string]json.RawMessage(o))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return canonicalize(b, strict)
}

// without returns a shallow copy of o lacking the given keys.
func (o object) without(keys ...string) object {
	out := make(object, len(o))
	for k, v := range o {
		out[k] = v
	}
	for _, k := range keys {
		delete(out, k)
	}
	return out
}

// str returns the string member key; present is false when it is absent.
func (o object) str(key string) (s string, present bool, err error) {
	v, ok := o[key]
	if !ok {
		return "", false, nil
	}
	if s, ok = asString(v); !ok {
		return "", true, fmt.Errorf("%w: %q must be a string", ErrInvalid, key)
	}
	return s, true, nil
}

// integer returns the integer member key, which must be present.
func (o object) integer(key string) (int64, error) {
	v, ok := o[key]
	if !ok {
		return 0, fmt.Errorf("%w: missing %q", ErrInvalid, key)
	}
	// Canonicalisation leaves only plain integers without '.', 'e' or a
	// leading '+', so ParseInt accepts exactly the JSON integers that fit.
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q must be an integer", ErrInvalid, key)
	}
	return n, nil
}

// sub returns the member key as an object; present is false when absent.
func (o object) sub(key string) (sub object, present bool, err error) {
	v, ok := o[key]
	if !ok {
		return nil, false, nil
	}
	if sub, err = splitCanonical(v); err != nil {
		return nil, true, fmt.Errorf("%w: %q must be an object", ErrInvalid, key)
	}
	return sub, true, nil
}

func asString(v json.RawMessage) (string, bool) {
	var s string
	if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with strings, string slices and maps of them
	}
	return b
}
