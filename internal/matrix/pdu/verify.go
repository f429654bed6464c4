package pdu

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"strings"

	"luxchat/internal/matrix/signing"
)

// verifyParsed checks a signature against the bytes Parse kept: the
// canonical redacted event without signatures and unsigned is both the
// reference hash's input and what the origin signed, so a received event
// is redacted and canonicalised once, not once per check.
func verifyParsed(ev *Event, serverName, keyID string, pub ed25519.PublicKey) error {
	if !strings.HasPrefix(keyID, signing.AlgEd25519+":") {
		return fmt.Errorf("%w: unsupported key algorithm in %q", signing.ErrBadKey, keyID)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key is %d bytes", signing.ErrBadKey, len(pub))
	}
	b64, ok := ev.Signatures()[serverName][keyID]
	if !ok {
		return fmt.Errorf("%w: %s %s", signing.ErrNoSignature, serverName, keyID)
	}
	sig, err := signing.DecodeBase64(b64)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: %s %s: malformed", signing.ErrBadSignature, serverName, keyID)
	}
	if !ed25519.Verify(pub, ev.signed, sig) {
		return fmt.Errorf("%w: %s %s", signing.ErrBadSignature, serverName, keyID)
	}
	return nil
}

// parsedSignatures decodes the "signatures" member Parse kept (checked
// there to be an object of objects of strings).
func parsedSignatures(raw json.RawMessage) (map[string]map[string]string, error) {
	var out map[string]map[string]string
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	return out, nil
}
