package e2ee

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"unicode/utf8"

	"luxchat/internal/matrix/canonicaljson"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/signing"
)

// Limits on what clients publish.
const (
	maxKeyObjectBytes  = 16 << 10 // one device key, cross-signing key or one-time key object
	maxIDBytes         = 255      // key ids, device ids, algorithm names, event types
	maxKeysPerUpload   = 1000     // one-time keys in one /keys/upload
	maxToDeviceContent = 64 << 10 // one to-device message's content
	maxToDeviceTargets = 10000    // devices addressed by one /sendToDevice
	maxBackupData      = 64 << 10 // auth_data of a backup, session_data of one key
)

// object decodes a JSON object into its members; M_BAD_JSON otherwise.
func object(raw json.RawMessage, what string) (map[string]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errcode.BadJSON("%s must be an object", what)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, errcode.BadJSON("%s: %v", what, err)
	}
	return m, nil
}

// present reports whether a raw member was given and is not null.
func present(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

// decodeField decodes one member into dst with M_BAD_JSON on a type error.
func decodeField(raw json.RawMessage, dst any, what string) error {
	if err := json.Unmarshal(raw, dst); err != nil {
		return errcode.BadJSON("%s has the wrong type", what)
	}
	return nil
}

// canonical returns the canonical JSON of an object without "unsigned",
// which the server never stores from clients.
func canonical(m map[string]json.RawMessage) (string, error) {
	c := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		if k != "unsigned" {
			c[k] = v
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", errcode.BadJSON("invalid object")
	}
	out, err := canonicaljson.CanonicalizeLenient(b)
	if err != nil {
		return "", errcode.BadJSON("invalid object: %v", err)
	}
	return string(out), nil
}

// signedPart is the canonical JSON a signature covers: the object without
// "signatures" and "unsigned". Two uploads of the same key compare equal
// on it whatever signatures they carry.
func signedPart(m map[string]json.RawMessage) (string, error) {
	c := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		if k != "signatures" {
			c[k] = v
		}
	}
	return canonical(c)
}

// validID checks an identifier a client chose (device id, key id part,
// algorithm, event type).
func validID(s, what string) error {
	if s == "" {
		return errcode.InvalidParam("%s must not be empty", what)
	}
	if len(s) > maxIDBytes || !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return errcode.InvalidParam("%s is not a valid identifier", what)
	}
	return nil
}

// splitKeyID splits "<algorithm>:<id>".
func splitKeyID(keyID string) (alg, rest string, err error) {
	alg, rest, ok := strings.Cut(keyID, ":")
	if !ok || alg == "" || rest == "" {
		return "", "", errcode.InvalidParam("key id %q must be <algorithm>:<id>", truncate(keyID))
	}
	if err := validID(keyID, "key id"); err != nil {
		return "", "", err
	}
	return alg, rest, nil
}

// publicKey decodes an unpadded base64 32-byte public key.
func publicKey(b64, what string) (ed25519.PublicKey, error) {
	b, err := signing.DecodeBase64(b64)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errcode.InvalidParam("%s is not a base64 32-byte public key", what)
	}
	return ed25519.PublicKey(b), nil
}

// verify checks signer's signature with keyID on a signed object.
func verify(raw []byte, signer, keyID string, pub ed25519.PublicKey, what string) error {
	err := signing.VerifyJSON(raw, signer, keyID, pub)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, signing.ErrNoSignature):
		return invalidSignature("%s is not signed by %s %s", what, signer, keyID)
	case errors.Is(err, signing.ErrBadJSON):
		return errcode.BadJSON("%s: malformed signed object", what)
	default:
		return invalidSignature("%s: the signature of %s %s does not verify", what, signer, keyID)
	}
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// signedKey is the parsed form of a cross-signing key.
type signedKey struct {
	raw       map[string]json.RawMessage
	canonical string // as stored
	userID    string
	usage     []string
	keyID     string // "ed25519:<pub>"
	pubB64    string
	pub       ed25519.PublicKey
}

// parseCrossSigningKey checks a cross-signing key object of userID meant
// for usage (master, self_signing, user_signing).
func parseCrossSigningKey(raw json.RawMessage, userID, usage, what string) (*signedKey, error) {
	if len(raw) > maxKeyObjectBytes {
		return nil, errcode.TooLarge("%s is too large", what)
	}
	m, err := object(raw, what)
	if err != nil {
		return nil, err
	}
	k := &signedKey{raw: m}
	if err := decodeField(m["user_id"], &k.userID, what+".user_id"); err != nil || k.userID == "" {
		return nil, errcode.MissingParam("%s.user_id is required", what)
	}
	if k.userID != userID {
		return nil, errcode.Forbidden("%s belongs to %s, not to you", what, truncate(k.userID))
	}
	if err := decodeField(m["usage"], &k.usage, what+".usage"); err != nil {
		return nil, err
	}
	if !contains(k.usage, usage) {
		return nil, errcode.InvalidParam("%s.usage must contain %q", what, usage)
	}
	var keys map[string]string
	if err := decodeField(m["keys"], &keys, what+".keys"); err != nil {
		return nil, err
	}
	if len(keys) != 1 {
		return nil, errcode.InvalidParam("%s.keys must hold exactly one key", what)
	}
	for keyID, pub := range keys {
		alg, rest, err := splitKeyID(keyID)
		if err != nil {
			return nil, err
		}
		if alg != signing.AlgEd25519 || rest != pub {
			return nil, errcode.InvalidParam("%s.keys must be {\"ed25519:<key>\": \"<key>\"}", what)
		}
		if k.pub, err = publicKey(pub, what); err != nil {
			return nil, err
		}
		k.keyID, k.pubB64 = keyID, pub
	}
	if _, ok := m["signatures"]; ok {
		var sigs map[string]map[string]string
		if err := decodeField(m["signatures"], &sigs, what+".signatures"); err != nil {
			return nil, err
		}
	}
	if k.canonical, err = canonical(m); err != nil {
		return nil, err
	}
	return k, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
