package alertbot

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"maunium.net/go/mautrix/crypto/goolm/session"
	"maunium.net/go/mautrix/crypto/olm"
	"maunium.net/go/mautrix/id"

	"luxchat/internal/matrix/signing"
)

// Defaults of m.room.encryption's rotation settings (the spec's).
const (
	defaultRotationMs   = 7 * 24 * 3600 * 1000
	defaultRotationMsgs = 100
)

// encryptionContent is a room's m.room.encryption.
type encryptionContent struct {
	Algorithm          string `json:"algorithm"`
	RotationPeriodMs   int64  `json:"rotation_period_ms,omitempty"`
	RotationPeriodMsgs int64  `json:"rotation_period_msgs,omitempty"`
}

// encryption returns the room's m.room.encryption, or nil when the room
// is not encrypted.
func (b *Bot) encryption(ctx context.Context, roomID string) (*encryptionContent, error) {
	var enc encryptionContent
	err := b.call(ctx, http.MethodGet, pathRoom(roomID)+"/state/m.room.encryption/", nil, &enc)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if enc.Algorithm == "" {
		return nil, nil // emptied: not an encryption event any more
	}
	return &enc, nil
}

// recipients are the users whose devices get the room key: the joined
// members, and the invited ones unless history is visible to joined
// members only.
func (b *Bot) recipients(ctx context.Context, roomID string) ([]string, error) {
	var vis struct {
		HistoryVisibility string `json:"history_visibility"`
	}
	err := b.call(ctx, http.MethodGet, pathRoom(roomID)+"/state/m.room.history_visibility/", nil, &vis)
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	var members struct {
		Chunk []struct {
			StateKey string `json:"state_key"`
			Content  struct {
				Membership string `json:"membership"`
			} `json:"content"`
		} `json:"chunk"`
	}
	if err := b.call(ctx, http.MethodGet, pathRoom(roomID)+"/members?not_membership=leave", nil, &members); err != nil {
		return nil, err
	}
	var out []string
	for _, m := range members.Chunk {
		switch m.Content.Membership {
		case "join":
			out = append(out, m.StateKey)
		case "invite":
			if vis.HistoryVisibility != "joined" {
				out = append(out, m.StateKey)
			}
		}
	}
	return out, nil
}

// roomState is the bot's Megolm state in one room; mu serialises the
// room's posts.
type roomState struct {
	mu     sync.Mutex
	loaded bool
	out    *outbound
}

func (b *Bot) room(roomID string) *roomState {
	b.roomsMu.Lock()
	defer b.roomsMu.Unlock()
	r := b.rooms[roomID]
	if r == nil {
		r = &roomState{}
		b.rooms[roomID] = r
	}
	return r
}

// outbound is a room's outbound Megolm session as persisted (kindMegolm,
// by room id).
type outbound struct {
	Pickle       string `json:"pickle"`
	SessionID    string `json:"session_id"`
	CreatedMs    int64  `json:"created_ms"`
	Messages     int64  `json:"messages"`
	RotationMs   int64  `json:"rotation_ms"`
	RotationMsgs int64  `json:"rotation_msgs"`
	// Shared are the devices that were sent the session: "user|device" →
	// their curve25519 key.
	Shared map[string]string `json:"shared"`

	s *session.MegolmOutboundSession
	// reserved is the message index the stored session starts at: the
	// session is stored ratcheted reserveAhead messages ahead, so a post
	// writes it once in reserveAhead and a crash never makes the bot use
	// a message index twice (it skips the rest of the reservation).
	reserved uint32
}

// reserveAhead is how many message indexes one stored session covers.
const reserveAhead = 32

func deviceKey(d device) string { return d.UserID + "|" + d.DeviceID }

// usable reports whether the session may encrypt the next message for
// devs: not past the room's rotation period or message count, and never
// shared with a device that is not among devs (a member who left, a
// device logged out or with new keys must not read what follows).
func (o *outbound) usable(now time.Time, devs []device, enc *encryptionContent) bool {
	if o == nil || o.s == nil {
		return false
	}
	if now.UnixMilli()-o.CreatedMs >= o.RotationMs || o.Messages >= o.RotationMsgs {
		return false
	}
	if ms, msgs := rotation(enc); ms < o.RotationMs || msgs < o.RotationMsgs {
		return false // the room asks for sooner rotation now
	}
	current := make(map[string]string, len(devs))
	for _, d := range devs {
		current[deviceKey(d)] = d.Curve
	}
	for k, curve := range o.Shared {
		if current[k] != curve {
			return false
		}
	}
	return true
}

func rotation(enc *encryptionContent) (ms, msgs int64) {
	ms, msgs = enc.RotationPeriodMs, enc.RotationPeriodMsgs
	if ms <= 0 {
		ms = defaultRotationMs
	}
	if msgs <= 0 {
		msgs = defaultRotationMsgs
	}
	return ms, msgs
}

// postEncrypted encrypts an event for the room's members' devices and
// sends it: the room's Megolm session (rotated when due), shared over Olm
// with the devices that do not have it yet, then the m.room.encrypted
// event.
func (b *Bot) postEncrypted(ctx context.Context, roomID, eventType string, content map[string]any, enc *encryptionContent) (string, error) {
	users, err := b.recipients(ctx, roomID)
	if err != nil {
		return "", err
	}
	devs, err := b.devicesOf(ctx, users)
	if err != nil {
		return "", err
	}
	rs := b.room(roomID)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if !rs.loaded {
		var o outbound
		found, err := b.vault.get(ctx, kindMegolm, roomID, &o)
		if err != nil {
			return "", err
		}
		if found {
			if o.s, err = session.MegolmOutboundSessionFromPickled([]byte(o.Pickle), b.vault.key); err != nil {
				b.log.Warn("megolm session dropped", "room", roomID, "err", err)
			} else {
				o.reserved = o.s.Ratchet.Counter
				rs.out = &o
			}
		}
		rs.loaded = true
	}
	if !rs.out.usable(time.Now(), devs, enc) {
		s, err := session.NewMegolmOutboundSession()
		if err != nil {
			return "", err
		}
		ms, msgs := rotation(enc)
		rs.out = &outbound{s: s, SessionID: string(s.ID()), CreatedMs: time.Now().UnixMilli(), RotationMs: ms, RotationMsgs: msgs, Shared: map[string]string{}}
	}
	out := rs.out
	var toShare []device
	for _, d := range devs {
		if out.Shared[deviceKey(d)] != d.Curve {
			toShare = append(toShare, d)
		}
	}
	if len(toShare) > 0 {
		if err := b.share(ctx, roomID, out, toShare); err != nil {
			return "", err
		}
		out.reserved = 0 // store the devices it went to
	}
	plain, err := json.Marshal(map[string]any{"type": eventType, "content": content, "room_id": roomID})
	if err != nil {
		return "", err
	}
	// The index is reserved in the store before the event goes: a
	// message index is never used twice, whatever happens to the send.
	if out.s.Ratchet.Counter >= out.reserved {
		if err := b.saveOutbound(ctx, roomID, out); err != nil {
			return "", err
		}
	}
	ciphertext, err := out.s.Encrypt(plain)
	if err != nil {
		return "", err
	}
	out.Messages++
	return b.send(ctx, roomID, "m.room.encrypted", map[string]any{
		"algorithm": algMegolm, "ciphertext": string(ciphertext), "session_id": out.SessionID,
		"sender_key": b.curve, "device_id": b.deviceID,
	})
}

// saveOutbound stores the room's session (with more rows, in one
// transaction) ratcheted reserveAhead messages ahead, and counted so.
func (b *Bot) saveOutbound(ctx context.Context, roomID string, out *outbound, more ...sealed) error {
	ahead := *out.s
	target := out.s.Ratchet.Counter + reserveAhead
	ahead.Ratchet.AdvanceTo(target)
	p, err := pickle(&ahead, b.vault.key)
	if err != nil {
		return err
	}
	stored := *out
	stored.Pickle, stored.Messages = p, out.Messages+reserveAhead
	if err := b.vault.put(ctx, append([]sealed{{kindMegolm, roomID, &stored}}, more...)...); err != nil {
		return err
	}
	out.reserved = target
	return nil
}

// share sends the room key of out to devices over Olm (m.room_key in an
// m.room.encrypted to-device message), first making Olm sessions with
// one-time keys claimed for the devices that have none. A device without
// a one-time key (nor fallback key) is skipped and tried again at the
// next post.
func (b *Bot) share(ctx context.Context, roomID string, out *outbound, devs []device) error {
	b.mu.Lock()
	var need []device
	for _, d := range devs {
		if b.sessions[d.Curve] == nil {
			need = append(need, d)
		}
	}
	b.mu.Unlock()
	newSessions, err := b.claimSessions(ctx, need)
	if err != nil {
		return err
	}
	roomKey := map[string]any{"algorithm": algMegolm, "room_id": roomID, "session_id": out.SessionID, "session_key": out.s.Key()}
	messages := map[string]map[string]any{}
	var changed []sealed
	b.mu.Lock()
	for curve, s := range newSessions {
		b.sessions[curve] = s
	}
	var sent []device
	for _, d := range devs {
		s := b.sessions[d.Curve]
		if s == nil {
			continue
		}
		payload, err := json.Marshal(map[string]any{
			"type": "m.room_key", "content": roomKey,
			"sender": b.userID, "sender_device": b.deviceID, "keys": map[string]string{"ed25519": b.ed25519},
			"recipient": d.UserID, "recipient_keys": map[string]string{"ed25519": d.Ed25519},
		})
		if err != nil {
			b.mu.Unlock()
			return err
		}
		typ, body, err := s.Encrypt(payload)
		if err != nil {
			b.mu.Unlock()
			return fmt.Errorf("alert bot: olm encrypt: %w", err)
		}
		p, err := pickle(s, b.vault.key)
		if err != nil {
			b.mu.Unlock()
			return err
		}
		changed = append(changed, sealed{kindOlm, d.Curve, olmState{Pickle: p}})
		if messages[d.UserID] == nil {
			messages[d.UserID] = map[string]any{}
		}
		messages[d.UserID][d.DeviceID] = map[string]any{
			"algorithm": algOlm, "sender_key": b.curve,
			"ciphertext": map[string]any{d.Curve: map[string]any{"type": int(typ), "body": string(body)}},
		}
		sent = append(sent, d)
	}
	b.mu.Unlock()
	if len(sent) == 0 {
		return nil
	}
	// The Olm sessions moved on: kept before the messages go, with the
	// Megolm session the room key is of (not yet marked shared).
	if err := b.saveOutbound(ctx, roomID, out, changed...); err != nil {
		return err
	}
	err = b.call(ctx, http.MethodPut, "/_matrix/client/v3/sendToDevice/m.room.encrypted/"+url.PathEscape(b.txnID()),
		map[string]any{"messages": messages}, nil)
	if err != nil {
		return fmt.Errorf("alert bot: send room key: %w", err)
	}
	for _, d := range sent {
		out.Shared[deviceKey(d)] = d.Curve
	}
	return nil // out is saved with the encrypted message
}

// claimSessions claims a one-time key of each device and makes an Olm
// session with it, after checking the key's signature by the device.
func (b *Bot) claimSessions(ctx context.Context, devs []device) (map[string]olm.Session, error) {
	if len(devs) == 0 {
		return nil, nil
	}
	req := map[string]map[string]string{}
	byID := map[string]device{}
	for _, d := range devs {
		if req[d.UserID] == nil {
			req[d.UserID] = map[string]string{}
		}
		req[d.UserID][d.DeviceID] = "signed_curve25519"
		byID[deviceKey(d)] = d
	}
	var resp struct {
		OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
	}
	if err := b.call(ctx, http.MethodPost, "/_matrix/client/v3/keys/claim", map[string]any{"one_time_keys": req, "timeout": 10000}, &resp); err != nil {
		return nil, fmt.Errorf("alert bot: claim one-time keys: %w", err)
	}
	out := map[string]olm.Session{}
	users := make([]string, 0, len(resp.OneTimeKeys))
	for u := range resp.OneTimeKeys {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		for devID, keys := range resp.OneTimeKeys[u] {
			d, ok := byID[u+"|"+devID]
			if !ok {
				continue
			}
			for keyID, raw := range keys {
				if len(keyID) < len("signed_curve25519:") || keyID[:len("signed_curve25519:")] != "signed_curve25519:" {
					continue
				}
				var k struct {
					Key string `json:"key"`
				}
				if json.Unmarshal(raw, &k) != nil || k.Key == "" {
					continue
				}
				pub, _ := signing.DecodeBase64(d.Ed25519)
				if err := signing.VerifyJSON(raw, u, "ed25519:"+devID, pub); err != nil {
					b.log.Warn("one-time key refused", "user", u, "device", devID, "err", err)
					continue
				}
				b.mu.Lock()
				s, err := b.acct.NewOutboundSession(id.Curve25519(d.Curve), id.Curve25519(k.Key))
				b.mu.Unlock()
				if err != nil {
					b.log.Warn("olm session not made", "user", u, "device", devID, "err", err)
					continue
				}
				out[d.Curve] = s
				break
			}
		}
	}
	return out, nil
}
