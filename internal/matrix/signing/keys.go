package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
)

// AlgEd25519 is the only signing algorithm Matrix defines.
const AlgEd25519 = "ed25519"

// ErrBadKey wraps every malformed key, key id or key file.
var ErrBadKey = errors.New("invalid signing key")

// KeyPair is a server's ed25519 signing key with its key id. It is an
// immutable value, safe to share. Its String and GoString never print the
// private key.
type KeyPair struct {
	id   string
	priv ed25519.PrivateKey
}

// NewKeyPair builds a key pair from a key version (the part after
// "ed25519:") and a 32-byte seed.
func NewKeyPair(version string, seed []byte) (KeyPair, error) {
	if err := validKeyVersion(version); err != nil {
		return KeyPair{}, err
	}
	if len(seed) != ed25519.SeedSize {
		return KeyPair{}, fmt.Errorf("%w: seed is %d bytes, want %d", ErrBadKey, len(seed), ed25519.SeedSize)
	}
	return KeyPair{id: AlgEd25519 + ":" + version, priv: ed25519.NewKeyFromSeed(seed)}, nil
}

// GenerateKeyPair makes a new random key with a version like "a_AbCd".
func GenerateKeyPair() (KeyPair, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return KeyPair{}, err
	}
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return KeyPair{}, err
	}
	for i, b := range suffix {
		suffix[i] = letters[int(b)%len(letters)]
	}
	return NewKeyPair("a_"+string(suffix), seed)
}

// ID returns the key id, e.g. "ed25519:a_AbCd".
func (k KeyPair) ID() string { return k.id }

// Version returns the key id without the algorithm.
func (k KeyPair) Version() string { return strings.TrimPrefix(k.id, AlgEd25519+":") }

// Public returns the public key.
func (k KeyPair) Public() ed25519.PublicKey {
	if k.priv == nil {
		return nil
	}
	return k.priv.Public().(ed25519.PublicKey)
}

// PublicBase64 returns the public key as published in verify_keys.
func (k KeyPair) PublicBase64() string { return EncodeBase64(k.Public()) }

// Seed returns the 32-byte private seed; keep it secret.
func (k KeyPair) Seed() []byte {
	if k.priv == nil {
		return nil
	}
	return k.priv.Seed()
}

// Sign returns the ed25519 signature of msg.
func (k KeyPair) Sign(msg []byte) []byte { return ed25519.Sign(k.priv, msg) }

func (k KeyPair) String() string   { return k.id + " " + k.PublicBase64() }
func (k KeyPair) GoString() string { return "signing.KeyPair{" + k.String() + "}" }

// ValidKeyID checks "algorithm:version" where the version is made of
// [a-zA-Z0-9_] as the server keys API requires.
func ValidKeyID(keyID string) error {
	alg, version, ok := strings.Cut(keyID, ":")
	if !ok || alg == "" {
		return fmt.Errorf("%w: key id %q", ErrBadKey, keyID)
	}
	return validKeyVersion(version)
}

func validKeyVersion(v string) error {
	if v == "" {
		return fmt.Errorf("%w: empty key version", ErrBadKey)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return fmt.Errorf("%w: key version %q", ErrBadKey, v)
		}
	}
	return nil
}

// EncodeKeyFile writes keys one per line as "ed25519 <version> <seed>", the
// signing.key format Synapse uses, so keys can move between servers.
func EncodeKeyFile(keys ...KeyPair) []byte {
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %s %s\n", AlgEd25519, k.Version(), EncodeBase64(k.Seed()))
	}
	return b.Bytes()
}

// DecodeKeyFile reads a key file written by EncodeKeyFile (or Synapse).
// Blank lines are skipped; any other malformed line is an error.
func DecodeKeyFile(data []byte) ([]KeyPair, error) {
	var keys []KeyPair
	for n, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 || fields[0] != AlgEd25519 {
			return nil, fmt.Errorf("%w: line %d: want %q", ErrBadKey, n+1, "ed25519 <version> <seed>")
		}
		seed, err := DecodeBase64(fields[2])
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadKey, n+1, err)
		}
		k, err := NewKeyPair(fields[1], seed)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no key in file", ErrBadKey)
	}
	return keys, nil
}
