package e2eetest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"

	"luxchat/internal/matrix/canonicaljson"
	"luxchat/internal/matrix/signing"
)

// Key is an ed25519 key pair.
type Key struct {
	Pub  ed25519.PublicKey
	Priv ed25519.PrivateKey
}

// NewKey makes a random key.
func NewKey() Key {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return Key{pub, priv}
}

// B64 is the unpadded base64 public key.
func (k Key) B64() string { return signing.EncodeBase64(k.Pub) }

// Sign adds signer's signature with keyID to obj (a JSON object) and
// returns the signed object.
func (k Key) Sign(obj map[string]any, signer, keyID string) map[string]any {
	rest := map[string]any{}
	for name, v := range obj {
		if name != "signatures" && name != "unsigned" {
			rest[name] = v
		}
	}
	raw, err := json.Marshal(rest)
	if err != nil {
		panic(err)
	}
	msg, err := canonicaljson.Canonicalize(raw)
	if err != nil {
		panic(err)
	}
	sigs, _ := obj["signatures"].(map[string]any)
	if sigs == nil {
		sigs = map[string]any{}
	}
	mine, _ := sigs[signer].(map[string]any)
	if mine == nil {
		mine = map[string]any{}
	}
	mine[keyID] = signing.EncodeBase64(ed25519.Sign(k.Priv, msg))
	sigs[signer] = mine
	out := map[string]any{}
	for name, v := range obj {
		out[name] = v
	}
	out["signatures"] = sigs
	return out
}

// Device is a client device.
type Device struct {
	UserID, DeviceID string
	Ed25519          Key
	Curve25519       Key // stands in for a curve25519 key: the server only checks the length
	next             int
}

// NewDevice makes a device with fresh keys.
func NewDevice(userID, deviceID string) *Device {
	return &Device{UserID: userID, DeviceID: deviceID, Ed25519: NewKey(), Curve25519: NewKey()}
}

// KeyID is "ed25519:<device id>".
func (d *Device) KeyID() string { return "ed25519:" + d.DeviceID }

// Sign signs obj with the device key.
func (d *Device) Sign(obj map[string]any) map[string]any {
	return d.Ed25519.Sign(obj, d.UserID, d.KeyID())
}

// Unsigned returns the device keys object without signatures.
func (d *Device) Unsigned() map[string]any {
	return map[string]any{
		"user_id":    d.UserID,
		"device_id":  d.DeviceID,
		"algorithms": []any{"m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"},
		"keys": map[string]any{
			"ed25519:" + d.DeviceID:    d.Ed25519.B64(),
			"curve25519:" + d.DeviceID: d.Curve25519.B64(),
		},
	}
}

// DeviceKeys returns the signed device keys object.
func (d *Device) DeviceKeys() map[string]any { return d.Sign(d.Unsigned()) }

// OneTimeKeys returns n new signed_curve25519 keys.
func (d *Device) OneTimeKeys(n int) map[string]any {
	out := map[string]any{}
	for range n {
		d.next++
		out[fmt.Sprintf("signed_curve25519:AAAA%04d", d.next)] = d.Sign(map[string]any{"key": NewKey().B64()})
	}
	return out
}

// FallbackKey returns a new signed fallback key.
func (d *Device) FallbackKey() map[string]any {
	d.next++
	return map[string]any{fmt.Sprintf("signed_curve25519:FB%04d", d.next): d.Sign(map[string]any{"key": NewKey().B64(), "fallback": true})}
}

// CrossSigning is a user's three cross-signing keys.
type CrossSigning struct {
	UserID                           string
	Master, SelfSigning, UserSigning Key
}

// NewCrossSigning makes fresh cross-signing keys.
func NewCrossSigning(userID string) *CrossSigning {
	return &CrossSigning{UserID: userID, Master: NewKey(), SelfSigning: NewKey(), UserSigning: NewKey()}
}

func keyObj(userID, usage string, k Key) map[string]any {
	return map[string]any{"user_id": userID, "usage": []any{usage}, "keys": map[string]any{"ed25519:" + k.B64(): k.B64()}}
}

// MasterKey is the master key object (unsigned).
func (c *CrossSigning) MasterKey() map[string]any { return keyObj(c.UserID, "master", c.Master) }

// SelfSigningKey is the self-signing key object, signed by the master key.
func (c *CrossSigning) SelfSigningKey() map[string]any {
	return c.Master.Sign(keyObj(c.UserID, "self_signing", c.SelfSigning), c.UserID, "ed25519:"+c.Master.B64())
}

// UserSigningKey is the user-signing key object, signed by the master key.
func (c *CrossSigning) UserSigningKey() map[string]any {
	return c.Master.Sign(keyObj(c.UserID, "user_signing", c.UserSigning), c.UserID, "ed25519:"+c.Master.B64())
}

// Upload is the body of /keys/device_signing/upload.
func (c *CrossSigning) Upload() map[string]any {
	return map[string]any{"master_key": c.MasterKey(), "self_signing_key": c.SelfSigningKey(), "user_signing_key": c.UserSigningKey()}
}

// SignDevice signs a device's keys with the self-signing key.
func (c *CrossSigning) SignDevice(d *Device) map[string]any {
	return c.SelfSigning.Sign(d.Unsigned(), c.UserID, "ed25519:"+c.SelfSigning.B64())
}

// SignMaster signs another user's master key object with the user-signing
// key.
func (c *CrossSigning) SignMaster(master map[string]any) map[string]any {
	return c.UserSigning.Sign(master, c.UserID, "ed25519:"+c.UserSigning.B64())
}
