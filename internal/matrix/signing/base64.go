package signing

import (
	"encoding/base64"
	"errors"
	"strings"
)

var errBase64 = errors.New("invalid base64")

// EncodeBase64 encodes b as unpadded standard base64.
func EncodeBase64(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }

// EncodeURLBase64 encodes b as unpadded URL-safe base64.
func EncodeURLBase64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// DecodeBase64 decodes standard base64, padded or not.
func DecodeBase64(s string) ([]byte, error) {
	return decode(s, base64.RawStdEncoding, base64.StdEncoding)
}

// DecodeURLBase64 decodes URL-safe base64, padded or not.
func DecodeURLBase64(s string) ([]byte, error) {
	return decode(s, base64.RawURLEncoding, base64.URLEncoding)
}

func decode(s string, raw, padded *base64.Encoding) ([]byte, error) {
	// encoding/base64 skips newlines; nothing we decode may contain them.
	if strings.ContainsAny(s, "\r\n") {
		return nil, errBase64
	}
	enc := raw
	if strings.HasSuffix(s, "=") {
		enc = padded
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return nil, errBase64
	}
	return b, nil
}
