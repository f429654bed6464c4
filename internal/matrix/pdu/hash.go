package pdu

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"

	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/matrix/signing"
)

// ErrContentHash reports an event whose content hash does not match: the
// spec has receivers keep only its redacted form.
var ErrContentHash = errors.New("content hash mismatch")

// ContentHash computes the sha256 content hash of a PDU: the canonical JSON
// of the whole event without "unsigned", "signatures" and "hashes".
func ContentHash(raw []byte) ([sha256.Size]byte, error) {
	// Lenient parsing gives the strict result for every strictly valid input.
	obj, err := decodeObject(raw, false)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return contentHashOf(obj), nil
}

func contentHashOf(obj object) [sha256.Size]byte {
	return sha256.Sum256(obj.without("unsigned", "signatures", "hashes").encodeCanonical())
}

// ReferenceHash computes the sha256 reference hash of a PDU: the canonical
// JSON of its redacted form without "signatures" and "unsigned".
//
// From room version 3 on "event_id" is not part of the event format; a copy
// left in raw is ignored so that it cannot change the event id.
func ReferenceHash(raw []byte, v *roomversion.Version) ([sha256.Size]byte, error) {
	c, err := referenceBytes(raw, v)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(c), nil
}

// referenceBytes is what the reference hash hashes.
func referenceBytes(raw []byte, v *roomversion.Version) ([]byte, error) {
	obj, err := decodeObject(raw, v.StrictCanonicalJSON)
	if err != nil {
		return nil, err
	}
	return referenceBytesOf(obj, v)
}

// referenceBytesOf is referenceBytes for a PDU already split.
func referenceBytesOf(obj object, v *roomversion.Version) ([]byte, error) {
	redacted, err := redactObject(obj, v)
	if err != nil {
		return nil, err
	}
	drop := []string{"signatures", "unsigned"}
	if v.EventFormat != roomversion.FormatV1 {
		drop = append(drop, "event_id")
	}
	return redacted.without(drop...).encodeCanonical(), nil
}

// CheckContentHash compares the "hashes.sha256" of a PDU with its content
// hash; a mismatch is ErrContentHash.
func CheckContentHash(raw []byte) error {
	obj, err := decodeObject(raw, false)
	if err != nil {
		return err
	}
	hashes, ok, err := obj.sub("hashes")
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: no hashes", ErrContentHash)
	}
	claimed, ok, err := hashes.str("sha256")
	if err != nil || !ok {
		return fmt.Errorf("%w: no sha256 hash", ErrContentHash)
	}
	want, err := signing.DecodeBase64(claimed)
	if err != nil {
		return fmt.Errorf("%w: sha256 hash is not base64", ErrContentHash)
	}
	got := contentHashOf(obj) // raw decoded once
	if !bytes.Equal(got[:], want) {
		return ErrContentHash
	}
	return nil
}

// VerifyHashes checks the content hash of a parsed event. On ErrContentHash
// federation must carry on with RedactEvent(ev) instead of ev.
func VerifyHashes(ev *Event) error { return CheckContentHash(ev.raw) }

// ReferenceHash returns the event's reference hash, which room versions 1
// and 2 put next to event ids in prev_events and auth_events.
func (e *Event) ReferenceHash() [sha256.Size]byte {
	h, err := ReferenceHash(e.raw, e.Version)
	if err != nil {
		panic("pdu: reference hash of a parsed event: " + err.Error())
	}
	return h
}

// eventIDFromHash formats a reference hash as the version's event id.
func eventIDFromHash(h [sha256.Size]byte, v *roomversion.Version) string {
	if v.EventIDs == roomversion.EventIDBase64 {
		return "$" + signing.EncodeBase64(h[:])
	}
	return "$" + signing.EncodeURLBase64(h[:])
}
