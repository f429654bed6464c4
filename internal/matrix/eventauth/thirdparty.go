package eventauth

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"luxchat/internal/matrix/canonicaljson"
	"luxchat/internal/matrix/roomversion"
)

// thirdPartySigned reports whether any ed25519 signature in a member
// event's third_party_invite.signed verifies, over the canonical JSON of
// signed without "signatures" and "unsigned", with any public key of the
// m.room.third_party_invite content ("public_key" and "public_keys").
func thirdPartySigned(signed map[string]json.RawMessage, tpiContent json.RawMessage, v *roomversion.Version) bool {
	keys := thirdPartyKeys(tpiContent)
	if len(keys) == 0 {
		return false
	}
	var sigs map[string]map[string]json.RawMessage
	if json.Unmarshal(signed["signatures"], &sigs) != nil {
		return false
	}
	body := maps.Clone(signed)
	delete(body, "signatures")
	delete(body, "unsigned")
	raw, err := json.Marshal(body)
	if err != nil {
		return false
	}
	canonicalize := canonicaljson.Canonicalize
	if !v.StrictCanonicalJSON {
		canonicalize = canonicaljson.CanonicalizeLenient
	}
	msg, err := canonicalize(raw)
	if err != nil {
		return false
	}
	for _, server := range slices.Sorted(maps.Keys(sigs)) {
		for keyID, rawSig := range sigs[server] {
			if !strings.HasPrefix(keyID, "ed25519:") {
				continue
			}
			sig, ok := decodeBase64(str(rawSig), false)
			if !ok || len(sig) != ed25519.SignatureSize {
				continue
			}
			for _, k := range keys {
				if ed25519.Verify(k, msg, sig) {
					return true
				}
			}
		}
	}
	return false
}

// thirdPartyKeys collects the valid ed25519 public keys of an
// m.room.third_party_invite content.
func thirdPartyKeys(content json.RawMessage) []ed25519.PublicKey {
	obj := object(content)
	encoded := []string{str(obj["public_key"])}
	var list []json.RawMessage
	_ = json.Unmarshal(obj["public_keys"], &list)
	for _, item := range list {
		encoded = append(encoded, str(object(item)["public_key"]))
	}
	var keys []ed25519.PublicKey
	for _, s := range encoded {
		if b, ok := decodeBase64(s, true); ok && len(b) == ed25519.PublicKeySize {
			keys = append(keys, ed25519.PublicKey(b))
		}
	}
	return keys
}

// decodeBase64 accepts unpadded base64 (padding is tolerated); keys may
// use the URL-safe alphabet too.
func decodeBase64(s string, urlSafeToo bool) ([]byte, bool) {
	if s == "" {
		return nil, false
	}
	encs := []*base64.Encoding{base64.RawStdEncoding, base64.StdEncoding}
	if urlSafeToo {
		encs = append(encs, base64.RawURLEncoding, base64.URLEncoding)
	}
	for _, enc := range encs {
		if b, err := enc.DecodeString(s); err == nil {
			return b, true
		}
	}
	return nil, false
}
