package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/signing"
	"luxchat/internal/store"
)

// SigningKeysRequest is the body of /keys/device_signing/upload.
type SigningKeysRequest struct {
	MasterKey      json.RawMessage `json:"master_key"`
	SelfSigningKey json.RawMessage `json:"self_signing_key"`
	UserSigningKey json.RawMessage `json:"user_signing_key"`
	Auth           json.RawMessage `json:"auth"`
}

// UIAActionSigningKeys names what a user-interactive auth session
// authorises here.
const UIAActionSigningKeys = "device_signing_upload"

// UploadSigningKeys publishes the caller's cross-signing keys. The
// self-signing and user-signing keys must be signed by the master key (the
// one uploaded with them, or the stored one). Replacing a stored key takes
// user-interactive auth; uploading the stored keys again does not.
func (s *Service) UploadSigningKeys(ctx context.Context, c Caller, req SigningKeysRequest) error {
	type upload struct {
		typ string
		key *signedKey
	}
	var ups []upload
	for _, x := range []struct {
		typ string
		raw json.RawMessage
	}{{"master", req.MasterKey}, {"self_signing", req.SelfSigningKey}, {"user_signing", req.UserSigningKey}} {
		if !present(x.raw) {
			continue
		}
		k, err := parseCrossSigningKey(x.raw, c.UserID, x.typ, x.typ+"_key")
		if err != nil {
			return err
		}
		ups = append(ups, upload{x.typ, k})
	}
	if len(ups) == 0 {
		return errcode.MissingParam("no key to upload")
	}
	var existing map[string]store.CrossSigningKey
	var deviceIDs []string
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if existing, err = tx.UserCrossSigningKeys(ctx, c.UserID); err != nil {
			return err
		}
		deviceIDs, err = tx.DeviceIDs(ctx, c.UserID)
		return err
	})
	if err != nil {
		return err
	}
	check := func(existing map[string]store.CrossSigningKey) (needAuth bool, err error) {
		var master *signedKey
		for _, u := range ups {
			if u.typ == "master" {
				master = u.key
			}
		}
		masterID, masterPub := "", []byte(nil)
		if master != nil {
			masterID, masterPub = master.keyID, master.pub
		} else if m, ok := existing["master"]; ok {
			masterID = m.KeyID
			if masterPub, err = publicKey(strings.TrimPrefix(m.KeyID, signing.AlgEd25519+":"), "stored master key"); err != nil {
				return false, err
			}
		} else {
			return false, errcode.MissingParam("no master key: upload one first")
		}
		for _, u := range ups {
			for _, d := range deviceIDs {
				if d == u.key.pubB64 {
					return false, errcode.Forbidden("the public key of the %s key is one of your device ids", u.typ)
				}
			}
			if u.typ != "master" {
				if err := verify(mustJSON(u.key.raw), c.UserID, masterID, masterPub, u.typ+"_key"); err != nil {
					return false, err
				}
			}
			// Once a master key exists, only a request holding no new key
			// goes without user-interactive auth (the spec; MSC3967): a
			// first upload is free, a repeated one idempotent.
			if old, ok := existing[u.typ]; !ok || old.KeyID != u.key.keyID {
				needAuth = true
			}
		}
		if _, ok := existing["master"]; !ok {
			needAuth = false // nothing to replace yet
		}
		return needAuth, nil
	}
	needAuth, err := check(existing)
	if err != nil {
		return err
	}
	if needAuth {
		if s.hooks.RequireUIA == nil {
			return errcode.Forbidden("replacing cross-signing keys is not possible on this server")
		}
		if err := s.hooks.RequireUIA(ctx, c.UserID, c.DeviceID, req.Auth, UIAActionSigningKeys); err != nil {
			return err
		}
	}
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		now, err := tx.UserCrossSigningKeys(ctx, c.UserID)
		if err != nil {
			return err
		}
		again, err := check(now)
		if err != nil {
			return err
		}
		if again && !needAuth {
			return errcode.Forbidden("your cross-signing keys changed meanwhile: upload again")
		}
		changed := false
		for _, u := range ups {
			old, had := now[u.typ]
			if had && old.KeyJSON == u.key.canonical {
				continue
			}
			changed = true
			if had && old.KeyID != u.key.keyID {
				// Signatures made by, or on, the replaced key mean nothing now.
				if err := tx.DeleteSignaturesBy(ctx, c.UserID, old.KeyID); err != nil {
					return err
				}
				if u.typ == "master" {
					if err := tx.DeleteSignaturesOn(ctx, c.UserID, strings.TrimPrefix(old.KeyID, signing.AlgEd25519+":")); err != nil {
						return err
					}
				}
			}
			if err := tx.PutCrossSigningKey(ctx, store.CrossSigningKey{UserID: c.UserID, Type: u.typ, KeyID: u.key.keyID, KeyJSON: u.key.canonical}); err != nil {
				return err
			}
		}
		if !changed {
			return nil
		}
		return tx.AddDeviceListChange(ctx, c.UserID, "")
	})
	if err != nil {
		return err
	}
	s.wakeRoommates(ctx, c.UserID)
	return nil
}

func mustJSON(m map[string]json.RawMessage) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// SignatureFailures maps a user to a key id to why its signatures were
// refused.
type SignatureFailures map[string]map[string]*errcode.Error

func (f SignatureFailures) add(user, key string, e *errcode.Error) {
	if f[user] == nil {
		f[user] = map[string]*errcode.Error{}
	}
	f[user][key] = e
}

// UploadSignatures stores signatures of keys: the caller's devices signed
// by their self-signing key, the caller's master key signed by one of
// their devices, and other users' master keys signed by the caller's
// user-signing key. The signed object must be the stored key (signatures
// aside). Signatures that do not verify are reported per key and not
// stored; the others are.
func (s *Service) UploadSignatures(ctx context.Context, c Caller, body map[string]map[string]json.RawMessage) (SignatureFailures, error) {
	failures := SignatureFailures{}
	var accepted []store.Signature
	ownChanged := false
	var others []string
	users := make([]string, 0, len(body))
	for u := range body {
		users = append(users, u)
	}
	sort.Strings(users)
	if len(users) > 0 {
		all := append([]string{c.UserID}, users...)
		cross, err := s.store.CrossSigningKeys(ctx, all)
		if err != nil {
			return nil, err
		}
		keysOf := map[string]map[string]store.CrossSigningKey{}
		for _, k := range cross {
			if keysOf[k.UserID] == nil {
				keysOf[k.UserID] = map[string]store.CrossSigningKey{}
			}
			keysOf[k.UserID][k.Type] = k
		}
		for _, target := range users {
			keyIDs := make([]string, 0, len(body[target]))
			for k := range body[target] {
				keyIDs = append(keyIDs, k)
			}
			sort.Strings(keyIDs)
			for _, keyID := range keyIDs {
				sigs, e, err := s.checkSignature(ctx, c, target, keyID, body[target][keyID], keysOf)
				if err != nil {
					return nil, err
				}
				if e != nil {
					failures.add(target, keyID, e)
					continue
				}
				if len(sigs) == 0 {
					continue
				}
				accepted = append(accepted, sigs...)
				if target == c.UserID {
					ownChanged = true
				} else {
					others = append(others, target)
				}
			}
		}
	}
	if len(accepted) == 0 {
		return failures, nil
	}
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		for _, sg := range accepted {
			if err := tx.PutSignature(ctx, sg); err != nil {
				return err
			}
		}
		if ownChanged {
			if err := tx.AddDeviceListChange(ctx, c.UserID, ""); err != nil {
				return err
			}
		}
		for _, o := range others {
			// Only the signer cares that they signed someone's key.
			if err := tx.AddDeviceListChange(ctx, o, c.UserID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if ownChanged {
		s.wakeRoommates(ctx, c.UserID)
	} else {
		s.wake(c.UserID)
	}
	return failures, nil
}

// checkSignature checks the new signatures on one object. It returns the
// signatures to store, or a client error for this key, or a server error.
func (s *Service) checkSignature(ctx context.Context, c Caller, target, keyID string, raw json.RawMessage,
	keysOf map[string]map[string]store.CrossSigningKey) ([]store.Signature, *errcode.Error, error) {
	fail := func(err error) ([]store.Signature, *errcode.Error, error) {
		if e, ok := errcode.As(err); ok {
			return nil, e, nil
		}
		return nil, nil, err
	}
	if len(raw) > maxKeyObjectBytes {
		return fail(errcode.TooLarge("signed object too large"))
	}
	obj, err := object(raw, "signed object")
	if err != nil {
		return fail(err)
	}
	// A remote user's master key may be signed once its keys are kept here.
	if _, kept := keysOf[target]["master"]; !s.isLocal(target) && !kept {
		return fail(errcode.NotFound("unknown user %s", truncate(target)))
	}
	uploaded, err := signedPart(obj)
	if err != nil {
		return fail(err)
	}
	var sigs map[string]map[string]string
	if err := decodeField(obj["signatures"], &sigs, "signatures"); err != nil || len(sigs[c.UserID]) == 0 {
		return fail(errcode.MissingParam("no signature of yours on %s", truncate(keyID)))
	}
	// What is signed, with whose keys the caller may sign it.
	var stored string
	var targetKey string
	signers := map[string]string{} // key id → base64 public key
	own := keysOf[c.UserID]
	master, hasMaster := keysOf[target]["master"]
	masterPub := strings.TrimPrefix(master.KeyID, signing.AlgEd25519+":")
	switch {
	case target == c.UserID && (!hasMaster || keyID != masterPub):
		dk, err := s.store.GetDeviceKeys(ctx, target, keyID)
		if errors.Is(err, store.ErrNotFound) {
			return fail(errcode.NotFound("unknown device %s", truncate(keyID)))
		} else if err != nil {
			return nil, nil, err
		}
		stored, targetKey = dk.KeyJSON, keyID
		if ss, ok := own["self_signing"]; ok {
			signers[ss.KeyID] = strings.TrimPrefix(ss.KeyID, signing.AlgEd25519+":")
		}
	case target == c.UserID:
		stored, targetKey = master.KeyJSON, masterPub
		dks, err := s.store.QueryDeviceKeys(ctx, []string{target})
		if err != nil {
			return nil, nil, err
		}
		for _, dk := range dks {
			signers[signing.AlgEd25519+":"+dk.DeviceID] = dk.Ed25519
		}
	default:
		if !hasMaster || keyID != masterPub {
			return fail(errcode.NotFound("unknown key %s of %s", truncate(keyID), truncate(target)))
		}
		stored, targetKey = master.KeyJSON, masterPub
		if us, ok := own["user_signing"]; ok {
			signers[us.KeyID] = strings.TrimPrefix(us.KeyID, signing.AlgEd25519+":")
		}
	}
	storedObj, err := object(json.RawMessage(stored), "stored key")
	if err != nil {
		return nil, nil, err
	}
	want, err := signedPart(storedObj)
	if err != nil {
		return nil, nil, err
	}
	if want != uploaded {
		return fail(errcode.InvalidParam("the signed object is not the stored key %s", truncate(keyID)))
	}
	var storedSigs map[string]map[string]string
	_ = json.Unmarshal(storedObj["signatures"], &storedSigs)
	var out []store.Signature
	signerIDs := make([]string, 0, len(sigs[c.UserID]))
	for k := range sigs[c.UserID] {
		signerIDs = append(signerIDs, k)
	}
	sort.Strings(signerIDs)
	for _, signerKey := range signerIDs {
		if storedSigs[c.UserID][signerKey] == sigs[c.UserID][signerKey] {
			continue // already part of the stored key
		}
		pubB64, ok := signers[signerKey]
		if !ok {
			return fail(invalidSignature("%s cannot sign %s", truncate(signerKey), truncate(keyID)))
		}
		pub, err := publicKey(pubB64, "signing key")
		if err != nil {
			return nil, nil, err
		}
		if err := verify(raw, c.UserID, signerKey, pub, keyID); err != nil {
			return fail(err)
		}
		out = append(out, store.Signature{TargetUser: target, TargetKey: targetKey, SignerUser: c.UserID, SignerKey: signerKey, Signature: sigs[c.UserID][signerKey]})
	}
	return out, nil, nil // none new: a repeated upload
}
