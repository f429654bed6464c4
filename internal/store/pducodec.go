package store

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// How a PDU is kept in events.pdu (migration 25).
//
// A PDU is mostly keys that every event repeats, the room id and the
// sender (both also columns of its row), ids and hashes. Before it is
// compressed the row's room id, sender and sender's server name are
// replaced by the bytes 1, 2 and 3, which canonical JSON never holds
// unescaped; then zstd compresses it against a dictionary of typical
// events (pduDict), so that a ~700-byte message takes ~400. Reading
// reverses both steps with the same row's columns. A PDU that holds those
// bytes, or that compression would not shrink, is kept as it is: a stored
// value that does not start with the zstd magic number is plain JSON
// (every row before migration 25 was).
//
// The dictionary must never change: rows written with it are read with
// it. A better one would get another id, and both would be kept.

// pduDictID identifies pduDict in each compressed frame; pduDictSHA256
// is its hash, which a test checks (see above).
const (
	pduDictID     = 1
	pduDictSHA256 = "631cddcdc3a62e56b98fc3adafb9cccebcd71ae27c373fb43e76a8e5f7f320f6"
)

// pduDict is the zstd dictionary of stored PDUs: canonical JSON skeletons
// of common events, with the substitutions above; the most common last,
// where matches are cheapest.
const pduDict = `{"auth_events":["$","$","$"],"content":{"creator":"` + "\x02" + `","room_version":"10"},"depth":1,"hashes":{"sha256":""},"origin_server_ts":17,"prev_events":[],"room_id":"` + "\x01" + `","sender":"` + "\x02" + `","signatures":{"` + "\x03" + `":{"ed25519:":""}},"state_key":"","type":"m.room.create"}` +
	`{"auth_events":["$","$","$"],"content":{"ban":50,"events":{"m.room.avatar":50,"m.room.canonical_alias":50,"m.room.encryption":100,"m.room.history_visibility":100,"m.room.name":50,"m.room.power_levels":100,"m.room.server_acl":100,"m.room.tombstone":100},"events_default":0,"invite":0,"kick":50,"notifications":{"room":50},"redact":50,"state_default":50,"users":{"` + "\x02" + `":100},"users_default":0},"depth":3,"hashes":{"sha256":""},"origin_server_ts":17,"prev_events":["$"],"room_id":"` + "\x01" + `","sender":"` + "\x02" + `","signatures":{"` + "\x03" + `":{"ed25519:":""}},"state_key":"","type":"m.room.power_levels"}` +
	`{"auth_events":["$","$","$"],"content":{"join_rule":"invite"},"depth":4,"hashes":{"sha256":""},"origin_server_ts":17,"prev_events":["$"],"room_id":"` + "\x01" + `","sender":"` + "\x02" + `","signatures":{"` + "\x03" + `":{"ed25519:":""}},"state_key":"","type":"m.room.join_rules"}` +
	`{"auth_events":["$","$","$"],"content":{"history_visibility":"shared"},"depth":5,"hashes":{"sha256":""},"origin_server_ts":17,"prev_events":["$"],"room_id":"` + "\x01" + `","sender":"` + "\x02" + `","signatures":{"` + "\x03" + `":{"ed25519:":""}},"state_key":"","type":"m.room.history_visibility"}` +
	`{"auth_events":["$","$","$"],"content":{"algorithm":"m.megolm.v1.aes-sha2"},"depth":6,"hashes":{"sha256":""},"origin_server_ts":17,"prev_events":["$"],"room_id":"` + "\x01" + `","sender":"` + "\x02" + `","signatures":{"` + "\x03" + `":{"ed25519:":""}},"state_key":"","type":"m.room.encryption"}` +
	`{"auth_events":["$","$","$"],"content":{"name":""},"depth":7,"hashes":{"sha256":""},"origin_server_ts":17,"prev_events":["$"],"room_id":"` + "\x01" + `","sender":"` + "\x02" + `","signatures":{"` + "\x03" + `":{"ed25519:":""}},"state_key":"","type":"m.room.name"}` +
	`{"auth_events":["$","$","$"],"content":{"topic":""},"depth":8,"hashes":{"sha256":""},"origin_server_ts":17,"prev_events":["$"],"room_id":"` + "\x01" + `","sender":"` + "\x02" + `","signatures":{"` + "\x03" + `":{"ed25519:":""}},"state_key":"","type":"m.room.topic"}` +
	`{"auth_events":["$","$","$"],"content":{"redacts":"$"},"depth":9,"hashes":{"sha256":""},"origin_server_ts":17,"prev_events":["$"],"redacts":"$","room_id":"` + "\x01" + `","sender":"` + "\x02" + `","signatures":{"` + "\x03" + `":{"ed25519:":""}},"type":"m.room.redaction"}` +
	`{"auth_events":["$","$","$"],"content":{"m.relates_to":{"event_id":"$","key":"👍","rel_type":"m.annotation"}},"depth":10,"hashes":{"sha256":""},"origin_server_ts":17,"prev_events":["$"],"room_id":"` + "\x01" + `","sender":"` + "\x02" + `","signatures":{"` + "\x03" + `":{"ed25519:":""}},"type":"m.reaction"}` +
	`{"auth_events":["$","$","$"],"content":{"avatar_url":"mxc://` + "\x03" + `/","displayname":"","membership":"join"},"depth":11,"hashes":{"sha256":""},"origin_server_ts":17,"prev_events":["$"],"room_id":"` + "\x01" + `","sender":"` + "\x02" + `","signatures":{"` + "\x03" + `":{"ed25519:":""}},"state_key":"` + "\x02" + `","type":"m.room.member"}` +
	`{"auth_events":["$","$","$"],"content":{"body":"","format":"org.matrix.custom.html","formatted_body":"","m.mentions":{"user_ids":["@` + "\x03" + `"]},"m.relates_to":{"m.in_reply_to":{"event_id":"$"}},"msgtype":"m.text"},"depth":12,"hashes":{"sha256":""},"origin_server_ts":17,"prev_events":["$"],"room_id":"` + "\x01" + `","sender":"` + "\x02" + `","signatures":{"` + "\x03" + `":{"ed25519:":""}},"type":"m.room.message"}` +
	`{"auth_events":["$","$","$"],"content":{"body":"","info":{"h":,"mimetype":"image/jpeg","size":,"w":},"msgtype":"m.image","url":"mxc://` + "\x03" + `/"},"depth":13,"hashes":{"sha256":""},"origin_server_ts":17,"prev_events":["$"],"room_id":"` + "\x01" + `","sender":"` + "\x02" + `","signatures":{"` + "\x03" + `":{"ed25519:":""}},"type":"m.room.message"}` +
	`{"auth_events":["$","$","$"],"content":{"algorithm":"m.megolm.v1.aes-sha2","ciphertext":"","device_id":"","sender_key":"","session_id":""},"depth":14,"hashes":{"sha256":""},"origin_server_ts":17,"prev_events":["$"],"room_id":"` + "\x01" + `","sender":"` + "\x02" + `","signatures":{"` + "\x03" + `":{"ed25519:":""}},"type":"m.room.encrypted"}` +
	`{"auth_events":["$","$","$"],"content":{"body":"","m.mentions":{},"msgtype":"m.text"},"depth":15,"hashes":{"sha256":""},"origin_server_ts":17,"prev_events":["$"],"room_id":"` + "\x01" + `","sender":"` + "\x02" + `","signatures":{"` + "\x03" + `":{"ed25519:":""}},"type":"m.room.message"}`

// zstdMagic starts every zstd frame; no JSON text starts with it.
var zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}

// The substitutes of a row's room id, sender and sender's server name.
var (
	subRoom   = []byte{1}
	subSender = []byte{2}
	subServer = []byte{3}
)

// pduWindow is the compression window: a PDU is at most 65,536 bytes.
const pduWindow = 1 << 16

var pduCodec = sync.OnceValues(func() (*zstd.Encoder, *zstd.Decoder) {
	// The fastest level costs ~15 µs per message and compresses these
	// small inputs about as well as the slower ones.
	// A PDU is at most 64 KiB: a window of that size serves every frame,
	// and the default (megabytes per concurrent coder) would add tens of
	// MiB to the server's resident memory for nothing.
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderCRC(false),
		zstd.WithLowerEncoderMem(true), zstd.WithWindowSize(pduWindow), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderDictRaw(pduDictID, []byte(pduDict)))
	if err != nil {
		panic(fmt.Sprintf("pdu encoder: %v", err))
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderDictRaw(pduDictID, []byte(pduDict)), zstd.WithDecoderMaxMemory(16<<20),
		zstd.WithDecoderLowmem(true), zstd.WithDecoderConcurrency(2), zstd.WithDecoderMaxWindow(pduWindow))
	if err != nil {
		panic(fmt.Sprintf("pdu decoder: %v", err))
	}
	return enc, dec
})

// serverOf returns the server name of a user id ("" when it has none).
func serverOf(userID string) string {
	_, server, _ := strings.Cut(userID, ":")
	return server
}

// encodePDU returns the stored form of a PDU of the row with roomID and
// sender (see above).
func encodePDU(pdu []byte, roomID, sender string) []byte {
	if len(pdu) == 0 || bytes.ContainsAny(pdu, "\x01\x02\x03") {
		return pdu
	}
	s := pdu
	for _, r := range []struct {
		from string
		to   []byte
	}{{roomID, subRoom}, {sender, subSender}, {serverOf(sender), subServer}} {
		if r.from != "" {
			s = bytes.ReplaceAll(s, []byte(r.from), r.to)
		}
	}
	enc, _ := pduCodec()
	out := enc.EncodeAll(s, make([]byte, 0, len(s)/2))
	if len(out) >= len(pdu) {
		return pdu
	}
	return out
}

// decodePDU returns the PDU of a stored value of the row with roomID and
// sender.
func decodePDU(stored []byte, roomID, sender string) ([]byte, error) {
	if !bytes.HasPrefix(stored, zstdMagic) {
		return stored, nil
	}
	_, dec := pduCodec()
	buf := decodeBufs.Get().(*[]byte)
	defer decodeBufs.Put(buf)
	s, err := dec.DecodeAll(stored, (*buf)[:0])
	if err != nil {
		return nil, fmt.Errorf("decode stored pdu: %w", err)
	}
	*buf = s
	return expand(s, [4]string{1: roomID, 2: sender, 3: serverOf(sender)}), nil
}

// decodeBufs hold decompressed PDUs until expand copies them.
var decodeBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

// expand undoes encodePDU's substitutions in one pass: each byte 1, 2 or 3
// becomes subs[byte]. Those strings hold none of these bytes when they
// occur in the PDU (encodePDU checked), so one pass is the reverse of its
// three.
func expand(s []byte, subs [4]string) []byte {
	n := len(s)
	for _, c := range s {
		if c >= 1 && c <= 3 {
			n += len(subs[c]) - 1
		}
	}
	out := make([]byte, 0, n)
	start := 0
	for i, c := range s {
		if c >= 1 && c <= 3 {
			out = append(append(out, s[start:i]...), subs[c]...)
			start = i + 1
		}
	}
	return append(out, s[start:]...)
}

// pduCols are the columns a PDU is read with from events (aliased e).
const pduCols = `e.room_id, e.sender, e.pdu`

// scanPDU scans dest and then pduCols, and returns the PDU.
func scanPDU(sc interface{ Scan(...any) error }, dest ...any) ([]byte, error) {
	var roomID, sender string
	var stored []byte
	if err := sc.Scan(append(dest, &roomID, &sender, &stored)...); err != nil {
		return nil, err
	}
	return decodePDU(stored, roomID, sender)
}

// txnKeyHash is what events.txn_key holds for a client transaction: a
// hash of who sent it and its key, 16 bytes where the three texts took
// ~100 in the row and again in the unique index.
func txnKeyHash(sender, device, key string) []byte {
	h := sha256.Sum256([]byte(sender + "\x00" + device + "\x00" + key))
	return h[:16]
}
