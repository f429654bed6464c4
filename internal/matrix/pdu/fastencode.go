package pdu

import (
	"slices"

	"luxchat/internal/matrix/canonicaljson"
)

// encodeCanonical is encode for an object whose values are canonical JSON
// already (split from canonical JSON and not replaced since): the keys are
// sorted and escaped as canonical JSON does, the values copied, with no
// second parse of the whole. Parse, the reference hash and the content
// hash, which run for every received event, use it.
func (o object) encodeCanonical() []byte {
	b, _ := o.encodeCanonicalFinding("")
	return b
}

// encodeCanonicalFinding is encodeCanonical that also returns the value of
// member key as a slice of the result (nil when absent), so that a parsed
// event's content shares its canonical JSON instead of being a copy.
func (o object) encodeCanonicalFinding(key string) (b, value []byte) {
	keys := make([]string, 0, len(o))
	n := 2
	for k, v := range o {
		keys = append(keys, k)
		n += len(k) + len(v) + 4
	}
	slices.Sort(keys) // byte order: code point order for UTF-8, as canonical JSON sorts
	b = make([]byte, 0, n)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = canonicaljson.AppendString(b, k)
		b = append(b, ':')
		at := len(b)
		b = append(b, o[k]...)
		if k == key && key != "" {
			value = b[at:len(b):len(b)]
		}
	}
	// Should b have grown after value was taken, value still holds the same
	// bytes (in the older array): only the sharing is lost.
	return append(b, '}'), value
}
