package signing

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"luxchat/internal/matrix/canonicaljson"
)

var (
	// ErrNoSignature: the object has no signature from that server and key.
	ErrNoSignature = errors.New("signature missing")
	// ErrBadSignature: a signature is present but does not verify.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrBadJSON: the input is not a JSON object of the expected shape.
	ErrBadJSON = errors.New("invalid signed json")
)

// SignJSON signs a JSON object for serverName as the appendix "Signing JSON"
// describes: the signature covers the canonical object without "signatures"
// and "unsigned"; existing signatures and "unsigned" are kept. It returns the
// canonical JSON of the signed object.
//
// Numbers are canonicalised leniently (large integers and floats are kept as
// written) because federation carries events of room versions 1–5; strict
// checking is the caller's job where a room version requires it.
func SignJSON(raw []byte, serverName string, k KeyPair) ([]byte, error) {
	obj, err := decodeObject(raw)
	if err != nil {
		return nil, err
	}
	sigs, err := signaturesOf(obj)
	if err != nil {
		return nil, err
	}
	msg, err := signedBytes(obj)
	if err != nil {
		return nil, err
	}
	if sigs[serverName] == nil {
		sigs[serverName] = map[string]json.RawMessage{}
	}
	sig, _ := json.Marshal(EncodeBase64(k.Sign(msg)))
	sigs[serverName][k.ID()] = sig
	if obj["signatures"], err = json.Marshal(sigs); err != nil {
		return nil, err
	}
	return encodeObject(obj)
}

// VerifyJSON checks the signature of serverName with keyID on a JSON
// object (appendix "Checking for a Signature").
func VerifyJSON(raw []byte, serverName, keyID string, pub ed25519.PublicKey) error {
	if !strings.HasPrefix(keyID, AlgEd25519+":") {
		return fmt.Errorf("%w: unsupported key algorithm in %q", ErrBadKey, keyID)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key is %d bytes", ErrBadKey, len(pub))
	}
	obj, err := decodeObject(raw)
	if err != nil {
		return err
	}
	sigs, err := signaturesOf(obj)
	if err != nil {
		return err
	}
	sigJSON, ok := sigs[serverName][keyID]
	if !ok {
		return fmt.Errorf("%w: %s %s", ErrNoSignature, serverName, keyID)
	}
	var sigB64 string
	if err := json.Unmarshal(sigJSON, &sigB64); err != nil || sigJSON[0] != '"' {
		return fmt.Errorf("%w: signature is not a string", ErrBadJSON)
	}
	sig, err := DecodeBase64(sigB64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: %s %s: malformed", ErrBadSignature, serverName, keyID)
	}
	msg, err := signedBytes(obj)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, msg, sig) {
		return fmt.Errorf("%w: %s %s", ErrBadSignature, serverName, keyID)
	}
	return nil
}

// Signatures returns the "signatures" object: server name → key id →
// base64 signature. Entries whose value is not a string are skipped.
func Signatures(raw []byte) (map[string]map[string]string, error) {
	obj, err := decodeObject(raw)
	if err != nil {
		return nil, err
	}
	sigs, err := signaturesOf(obj)
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[string]string, len(sigs))
	for server, keys := range sigs {
		out[server] = make(map[string]string, len(keys))
		for keyID, v := range keys {
			var s string
			if v[0] == '"' && json.Unmarshal(v, &s) == nil {
				out[server][keyID] = s
			}
		}
	}
	return out, nil
}

// decodeObject canonicalises raw (rejecting duplicate keys and invalid
// UTF-8) and splits the top-level object.
func decodeObject(raw []byte) (map[string]json.RawMessage, error) {
	c, err := canonicaljson.CanonicalizeLenient(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadJSON, err)
	}
	if c[0] != '{' {
		return nil, fmt.Errorf("%w: not an object", ErrBadJSON)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(c, &obj); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadJSON, err)
	}
	return obj, nil
}

// encodeObject returns the canonical JSON of obj.
func encodeObject(obj map[string]json.RawMessage) ([]byte, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return canonicaljson.CanonicalizeLenient(b)
}

// signedBytes is what a signature covers: the object without "signatures"
// and "unsigned".
func signedBytes(obj map[string]json.RawMessage) ([]byte, error) {
	rest := make(map[string]json.RawMessage, len(obj))
	for k, v := range obj {
		if k != "signatures" && k != "unsigned" {
			rest[k] = v
		}
	}
	return encodeObject(rest)
}

// signaturesOf decodes the "signatures" member, which must be an object of
// objects when present.
func signaturesOf(obj map[string]json.RawMessage) (map[string]map[string]json.RawMessage, error) {
	sigs := map[string]map[string]json.RawMessage{}
	raw, ok := obj["signatures"]
	if !ok {
		return sigs, nil
	}
	if raw[0] != '{' || json.Unmarshal(raw, &sigs) != nil {
		return nil, fmt.Errorf("%w: signatures must be an object of objects", ErrBadJSON)
	}
	for server, keys := range sigs {
		if keys == nil { // "server": null
			return nil, fmt.Errorf("%w: signatures of %q must be an object", ErrBadJSON, server)
		}
	}
	return sigs, nil
}

// isJSON reports whether b is a single JSON value, ignoring whitespace.
func isJSON(b []byte) bool { return len(bytes.TrimSpace(b)) > 0 && json.Valid(b) }
