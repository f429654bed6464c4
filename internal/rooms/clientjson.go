package rooms

import (
	"encoding/json"
)

// fastClientJSON is ClientJSON for a stored PDU, which is canonical JSON:
// the members the client format shows are copied from it as they are
// instead of decoding the whole event and encoding them again (an
// initial sync renders thousands of events). The output is the bytes
// json.Marshal gives for the same fields, HTML escaping included. It
// reports false for anything it does not expect (a redaction, whose
// redacts may live in its content; a member of another type), which
// ClientJSON then renders the slow way.
func fastClientJSON(pduJSON []byte, eventID, roomID string, unsigned map[string]json.RawMessage) (json.RawMessage, bool) {
	var content, ts, sender, stateKey, typ []byte
	ok := eachMember(pduJSON, func(key, val []byte) bool {
		switch string(key) {
		case "content":
			if val[0] != '{' {
				return false
			}
			content = val
		case "origin_server_ts":
			ts = val
		case "sender":
			sender = val
		case "state_key":
			stateKey = val
		case "type":
			typ = val
		case "redacts":
			return false
		}
		return true
	})
	if !ok || !isString(sender) || !isString(typ) || !isInteger(ts) || (stateKey != nil && !isString(stateKey)) {
		return nil, false
	}
	if string(typ) == `"m.room.redaction"` {
		return nil, false
	}
	n := len(content) + len(sender) + len(typ) + len(stateKey) + len(eventID) + len(roomID) + 128
	out := make([]byte, 0, n)
	out = append(out, `{"content":`...)
	if content == nil {
		out = append(out, "{}"...)
	} else {
		out = appendHTMLEscaped(out, content)
	}
	out = append(out, `,"event_id":`...)
	out = appendGoString(out, eventID)
	out = append(out, `,"origin_server_ts":`...)
	out = append(out, ts...)
	if roomID != "" {
		out = append(out, `,"room_id":`...)
		out = appendGoString(out, roomID)
	}
	out = append(out, `,"sender":`...)
	out = appendHTMLEscaped(out, sender)
	if stateKey != nil {
		out = append(out, `,"state_key":`...)
		out = appendHTMLEscaped(out, stateKey)
	}
	out = append(out, `,"type":`...)
	out = appendHTMLEscaped(out, typ)
	if len(unsigned) > 0 {
		u, err := json.Marshal(unsigned)
		if err != nil {
			return nil, false
		}
		out = append(out, `,"unsigned":`...)
		out = append(out, u...)
	}
	return append(out, '}'), true
}

// eachMember calls f with each top-level member of a JSON object (key
// without its quotes, value as it is), stopping when f returns false. It
// expects compact JSON and reports false for anything else.
func eachMember(b []byte, f func(key, val []byte) bool) bool {
	if len(b) < 2 || b[0] != '{' {
		return false
	}
	i := 1
	if b[i] == '}' {
		return i == len(b)-1
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return false
		}
		end := skipString(b, i)
		if end < 0 || end >= len(b) || b[end] != ':' {
			return false
		}
		key := b[i+1 : end-1]
		start := end + 1
		i = skipValue(b, start)
		if i < 0 || i >= len(b) || !f(key, b[start:i]) {
			return false
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return i == len(b)-1
		default:
			return false
		}
	}
}

// skipString returns the index after the string starting at b[i], or -1.
func skipString(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// skipValue returns the index after the value starting at b[i], or -1.
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				if j = skipString(b, j); j < 0 {
					return -1
				}
				j--
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	default:
		j := i
		for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
			j++
		}
		if j == i {
			return -1
		}
		return j
	}
}

func isString(v []byte) bool { return len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' }

func isInteger(v []byte) bool {
	if len(v) > 0 && v[0] == '-' {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > 18 {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// appendHTMLEscaped appends JSON with <, >, & and U+2028/U+2029 escaped,
// as json.Marshal writes them.
func appendHTMLEscaped(out, v []byte) []byte {
	const hex = "0123456789abcdef"
	start := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '<' || c == '>' || c == '&':
			out = append(out, v[start:i]...)
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			start = i + 1
		case c == 0xE2 && i+2 < len(v) && v[i+1] == 0x80 && v[i+2]&^1 == 0xA8:
			out = append(out, v[start:i]...)
			out = append(out, '\\', 'u', '2', '0', '2', hex[v[i+2]&0xF])
			i += 2
			start = i + 1
		}
	}
	return append(out, v[start:]...)
}

// appendGoString appends s as json.Marshal encodes a string.
func appendGoString(out []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(out, b...)
		}
	}
	out = append(out, '"')
	out = append(out, s...)
	return append(out, '"')
}
