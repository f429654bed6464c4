package alertbot

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"

	"luxchat/internal/media"
	"luxchat/internal/store"
)

// The kinds of the bot's rows (store.AlertBotValue.Kind).
const (
	kindKey     = "key"     // the data key, wrapped by the media master key
	kindAccount = "account" // the Olm account and device id (name "device")
	kindOlm     = "olm"     // an Olm session, by the other device's curve25519 key
	kindMegolm  = "megolm"  // a room's outbound Megolm session, by room id
)

// dataKeyName is the data key's row; the key is wrapped bound to
// store.AlertBotKeyPrefix + dataKeyName.
const dataKeyName = "data"

// vault keeps the bot's state in the database, each value sealed with
// AES-256-GCM under the bot's data key and bound to its kind and name (a
// value copied to another row does not open). The data key is random,
// made at the first start, and stored wrapped by the media master key
// (media.Keyring), so it is never in the database in clear and `luxchat
// media rotate-key` re-wraps it. The data key is also the pickle key of
// the Olm and Megolm pickles inside the values.
type vault struct {
	st   *store.Store
	key  []byte
	aead cipher.AEAD
}

func openVault(ctx context.Context, st *store.Store, keys *media.Keyring) (*vault, error) {
	row, err := st.AlertBotGet(ctx, kindKey, dataKeyName)
	if errors.Is(err, store.ErrNotFound) {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		wrapped, keyID, err := keys.WrapKey(k, store.AlertBotKeyPrefix+dataKeyName)
		if err != nil {
			return nil, fmt.Errorf("alert bot: wrap data key: %w", err)
		}
		row, err = st.AlertBotInsert(ctx, store.AlertBotValue{Kind: kindKey, Name: dataKeyName, Value: wrapped, KeyID: keyID})
		if err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	key, err := keys.UnwrapKey(row.Value, row.KeyID, store.AlertBotKeyPrefix+dataKeyName)
	if err != nil {
		return nil, fmt.Errorf("alert bot: the data key does not open with the media key (media.key replaced?): %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &vault{st: st, key: key, aead: aead}, nil
}

func additional(kind, name string) []byte {
	return []byte("luxchat alertbot v1\x00" + kind + "\x00" + name)
}

// seal encrypts v's JSON for the row (kind, name).
func (v *vault) seal(kind, name string, val any) (store.AlertBotValue, error) {
	plain, err := json.Marshal(val)
	if err != nil {
		return store.AlertBotValue{}, err
	}
	nonce := make([]byte, v.aead.NonceSize(), v.aead.NonceSize()+len(plain)+v.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return store.AlertBotValue{}, err
	}
	out := v.aead.Seal(nonce, nonce, plain, additional(kind, name))
	return store.AlertBotValue{Kind: kind, Name: name, Value: base64.RawStdEncoding.EncodeToString(out)}, nil
}

// open decrypts a row into val.
func (v *vault) open(row store.AlertBotValue, val any) error {
	raw, err := base64.RawStdEncoding.DecodeString(row.Value)
	if err != nil || len(raw) < v.aead.NonceSize() {
		return fmt.Errorf("alert bot state %s/%s: damaged", row.Kind, row.Name)
	}
	plain, err := v.aead.Open(nil, raw[:v.aead.NonceSize()], raw[v.aead.NonceSize():], additional(row.Kind, row.Name))
	if err != nil {
		return fmt.Errorf("alert bot state %s/%s: does not authenticate", row.Kind, row.Name)
	}
	return json.Unmarshal(plain, val)
}

// get reads and opens one row; false when there is none.
func (v *vault) get(ctx context.Context, kind, name string, val any) (bool, error) {
	row, err := v.st.AlertBotGet(ctx, kind, name)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, v.open(row, val)
}

// sealed is a row to write: kind, name and the value to seal.
type sealed struct {
	kind, name string
	val        any
}

// put seals and writes rows in one transaction.
func (v *vault) put(ctx context.Context, rows ...sealed) error {
	out := make([]store.AlertBotValue, 0, len(rows))
	for _, r := range rows {
		s, err := v.seal(r.kind, r.name, r.val)
		if err != nil {
			return err
		}
		out = append(out, s)
	}
	return v.st.AlertBotPut(ctx, out...)
}
