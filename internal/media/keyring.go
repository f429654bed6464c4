package media

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// KeyEnv names the environment variable that, when set, holds the master
// keys (base64, comma-separated, the current one first) instead of the key
// file.
const KeyEnv = "LUXCHAT_MEDIA_KEY"

// KeyFileName is the key file in the data directory.
const KeyFileName = "media.key"

// Keyring holds the master keys that wrap per-file keys. The first key is
// the current one: new file keys are wrapped under it; the others only
// unwrap keys not yet re-wrapped by `luxchat media rotate-key`.
//
// A keyring read from a file notices when the file changes (rotate-key run
// while the server is up) and reloads it. It is safe for concurrent use.
type Keyring struct {
	path string // "" when the keys come from the environment

	mu    sync.Mutex
	keys  []masterKey
	mtime time.Time
}

type masterKey struct {
	id  string
	key []byte
}

func newMasterKey(k []byte) masterKey {
	sum := sha256.Sum256(k)
	return masterKey{id: hex.EncodeToString(sum[:8]), key: k}
}

// LoadKeyring reads the master keys from $LUXCHAT_MEDIA_KEY, or from
// dataDir/media.key, which it creates (mode 0600) with a fresh key when it
// does not exist.
func LoadKeyring(dataDir string) (*Keyring, error) {
	if v := os.Getenv(KeyEnv); v != "" {
		keys, err := parseKeys(strings.ReplaceAll(v, ",", "\n"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", KeyEnv, err)
		}
		return &Keyring{keys: keys}, nil
	}
	path := filepath.Join(dataDir, KeyFileName)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := writeKeyFile(path, []masterKey{newMasterKey(newFileKey())}); err != nil {
			return nil, err
		}
	}
	k := &Keyring{path: path}
	if err := k.reload(); err != nil {
		return nil, err
	}
	return k, nil
}

// NewKeyring returns a keyring over the given keys (tests).
func NewKeyring(keys ...[]byte) *Keyring {
	k := &Keyring{}
	for _, key := range keys {
		k.keys = append(k.keys, newMasterKey(key))
	}
	return k
}

func parseKeys(text string) ([]masterKey, error) {
	var keys []masterKey
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(k) != 32 {
			return nil, errors.New("a media master key must be 32 bytes in base64")
		}
		keys = append(keys, newMasterKey(k))
	}
	if len(keys) == 0 {
		return nil, errors.New("no media master key")
	}
	return keys, nil
}

func writeKeyFile(path string, keys []masterKey) error {
	var b strings.Builder
	b.WriteString("# luxchat media master keys (base64): the first wraps new files' keys.\n# Keep a copy apart from the database backups; without it the media is lost.\n")
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k.key))
		b.WriteByte('\n')
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write media key: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write media key: %w", err)
	}
	return nil
}

func (k *Keyring) reload() error {
	fi, err := os.Stat(k.path)
	if err != nil {
		return fmt.Errorf("media key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("media key %s is readable by others (mode %v): chmod 600 it", k.path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(k.path)
	if err != nil {
		return fmt.Errorf("media key: %w", err)
	}
	keys, err := parseKeys(string(data))
	if err != nil {
		return fmt.Errorf("media key %s: %w", k.path, err)
	}
	k.mu.Lock()
	k.keys, k.mtime = keys, fi.ModTime()
	k.mu.Unlock()
	return nil
}

// refresh reloads a key file that changed since it was read.
func (k *Keyring) refresh() {
	if k.path == "" {
		return
	}
	fi, err := os.Stat(k.path)
	if err != nil {
		return
	}
	k.mu.Lock()
	changed := !fi.ModTime().Equal(k.mtime)
	k.mu.Unlock()
	if changed {
		_ = k.reload()
	}
}

// CurrentID returns the id of the key that wraps new file keys.
func (k *Keyring) CurrentID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.keys[0].id
}

// wrap seals a file key under the current master key, bound to the blob's
// name so that a wrapped key copied to another row does not open.
func (k *Keyring) wrap(fileKey []byte, blob string) (wrapped, keyID string, err error) {
	k.refresh()
	k.mu.Lock()
	mk := k.keys[0]
	k.mu.Unlock()
	return wrapWith(mk, fileKey, blob)
}

func wrapWith(mk masterKey, fileKey []byte, blob string) (string, string, error) {
	aead, err := newGCM(mk.key)
	if err != nil {
		return "", "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", "", err
	}
	out := aead.Seal(nonce, nonce, fileKey, []byte("luxchat media key v1\x00"+blob))
	return base64.RawStdEncoding.EncodeToString(out), mk.id, nil
}

// WrapKey seals a 32-byte key of another component under the current
// master key, bound to name (which must not be a blob's: see
// store.AlertBotKeyPrefix). A key whose row WrappedKeysNotUnder lists is
// re-wrapped by RotateKey with the file keys.
func (k *Keyring) WrapKey(key []byte, name string) (wrapped, keyID string, err error) {
	if len(key) != fileKeySize {
		return "", "", fmt.Errorf("media: a wrapped key must be %d bytes", fileKeySize)
	}
	return k.wrap(key, name)
}

// UnwrapKey opens a key sealed by WrapKey.
func (k *Keyring) UnwrapKey(wrapped, keyID, name string) ([]byte, error) {
	return k.unwrap(wrapped, keyID, name)
}

// unwrap opens a wrapped file key.
func (k *Keyring) unwrap(wrapped, keyID, blob string) ([]byte, error) {
	mk, ok := k.find(keyID)
	if !ok {
		k.refresh()
		if mk, ok = k.find(keyID); !ok {
			return nil, fmt.Errorf("media: master key %s is not in the keyring: %w", keyID, ErrTampered)
		}
	}
	raw, err := base64.RawStdEncoding.DecodeString(wrapped)
	if err != nil {
		return nil, ErrTampered
	}
	aead, err := newGCM(mk.key)
	if err != nil {
		return nil, err
	}
	if len(raw) < aead.NonceSize() {
		return nil, ErrTampered
	}
	key, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte("luxchat media key v1\x00"+blob))
	if err != nil || len(key) != fileKeySize {
		return nil, ErrTampered
	}
	return key, nil
}

func (k *Keyring) find(id string) (masterKey, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, mk := range k.keys {
		if mk.id == id {
			return mk, true
		}
	}
	return masterKey{}, false
}
