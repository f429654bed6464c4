package alertbot

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"maunium.net/go/mautrix/crypto/goolm/account"
	"maunium.net/go/mautrix/crypto/goolm/session"
	"maunium.net/go/mautrix/crypto/olm"

	"luxchat/internal/matrix/canonicaljson"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/signing"
)

const (
	algOlm    = "m.olm.v1.curve25519-aes-sha2"
	algMegolm = "m.megolm.v1.aes-sha2"
	// otkTarget is how many one-time keys the server should hold for the
	// bot; fewer than half of it are topped up.
	otkTarget = 50
)

// accountState is the persisted account (kindAccount, "device").
type accountState struct {
	DeviceID string `json:"device_id"`
	Pickle   string `json:"pickle"`
	// Uploaded: the device keys are on the server.
	Uploaded bool `json:"uploaded"`
}

// olmState is a persisted Olm session (kindOlm, by curve25519 key).
type olmState struct {
	Pickle string `json:"pickle"`
}

// setup loads or makes the Olm account and the device, publishes the
// device keys and tops up the one-time keys, and loads the Olm sessions.
func (b *Bot) setup(ctx context.Context) error {
	if b.vault == nil {
		v, err := openVault(ctx, b.opts.Store, b.opts.Keys)
		if err != nil {
			return err
		}
		b.vault = v
	}
	var st accountState
	found, err := b.vault.get(ctx, kindAccount, "device", &st)
	if err != nil {
		return err
	}
	if !found {
		acct, err := account.NewAccount()
		if err != nil {
			return err
		}
		st.DeviceID = "ALERTS" + strings.ToUpper(randomToken()[:8])
		if st.Pickle, err = pickle(acct, b.vault.key); err != nil {
			return err
		}
		// Kept before anything is uploaded, so the device's keys never
		// change once the server has them.
		if err := b.vault.put(ctx, sealed{kindAccount, "device", st}); err != nil {
			return err
		}
	}
	acct, err := account.AccountFromPickled([]byte(st.Pickle), b.vault.key)
	if err != nil {
		return fmt.Errorf("alert bot: account: %w", err)
	}
	ed, curve, _ := acct.IdentityKeys()
	b.mu.Lock()
	b.acct, b.ed25519, b.curve = acct, string(ed), string(curve)
	b.mu.Unlock()
	// MSC4190: the service creates its user's device, once: a device
	// set up before is only checked (a rename would announce a device
	// list change to the bot's rooms at every start).
	b.deviceID = st.DeviceID
	b.callDevice.Store(st.DeviceID)
	withDevice := !st.Uploaded
	if st.Uploaded {
		err := b.upload(ctx, false, -1, false)
		if e, ok := errcode.As(err); ok && e.Code == "M_UNKNOWN_DEVICE" {
			b.log.Warn("the bot's device was deleted: made again", "device", st.DeviceID)
			withDevice = true
		} else if err != nil {
			return err
		}
	}
	if withDevice {
		b.callDevice.Store("")
		err = b.call(ctx, http.MethodPut, "/_matrix/client/v3/devices/"+url.PathEscape(st.DeviceID), map[string]string{"display_name": "luxchat alerts"}, nil)
		if err != nil {
			return fmt.Errorf("alert bot: create device: %w", err)
		}
		b.callDevice.Store(st.DeviceID)
	}
	rows, err := b.opts.Store.AlertBotList(ctx, kindOlm)
	if err != nil {
		return err
	}
	sessions := map[string]olm.Session{}
	for _, row := range rows {
		var os olmState
		if err := b.vault.open(row, &os); err != nil {
			b.log.Warn("olm session dropped", "err", err)
			continue
		}
		s, err := session.OlmSessionFromPickled([]byte(os.Pickle), b.vault.key)
		if err != nil {
			b.log.Warn("olm session dropped", "err", err)
			continue
		}
		sessions[row.Name] = s
	}
	b.mu.Lock()
	b.sessions = sessions
	b.mu.Unlock()
	if withDevice {
		return b.upload(ctx, true, -1, false)
	}
	return nil
}

func pickle(p interface{ Pickle([]byte) ([]byte, error) }, key []byte) (string, error) {
	out, err := p.Pickle(key)
	return string(out), err
}

// upload publishes what the server lacks: the device keys when
// withDevice, one-time keys up to otkTarget (count is the server's count,
// -1 to ask it), a new fallback key when newFallback or there is none.
// The account is stored before the upload (with the new keys unpublished)
// and after it.
func (b *Bot) upload(ctx context.Context, withDevice bool, count int, newFallback bool) error {
	b.keysMu.Lock()
	defer b.keysMu.Unlock()
	type counts struct {
		OneTimeKeyCounts map[string]int `json:"one_time_key_counts"`
	}
	if count < 0 && !withDevice {
		var c counts
		if err := b.call(ctx, http.MethodPost, "/_matrix/client/v3/keys/upload", map[string]any{}, &c); err != nil {
			return fmt.Errorf("alert bot: key counts: %w", err)
		}
		count = c.OneTimeKeyCounts["signed_curve25519"]
	}
	if count < 0 {
		count = 0
	}
	b.mu.Lock()
	if count < otkTarget/2 {
		if err := b.acct.GenOneTimeKeys(uint(otkTarget - count)); err != nil {
			b.mu.Unlock()
			return err
		}
	}
	if withDevice || newFallback || len(b.acct.FallbackKey()) == 0 {
		if err := b.acct.GenFallbackKey(); err != nil {
			b.mu.Unlock()
			return err
		}
	}
	body := map[string]any{}
	if withDevice {
		dk := map[string]any{
			"user_id": b.userID, "device_id": b.deviceID, "algorithms": []string{algOlm, algMegolm},
			"keys": map[string]string{"ed25519:" + b.deviceID: b.ed25519, "curve25519:" + b.deviceID: b.curve},
		}
		if err := b.signLocked(dk); err != nil {
			b.mu.Unlock()
			return err
		}
		body["device_keys"] = dk
	}
	otks, _ := b.acct.OneTimeKeys()
	if len(otks) > 0 {
		m := map[string]any{}
		for kid, k := range otks {
			key := map[string]any{"key": string(k)}
			if err := b.signLocked(key); err != nil {
				b.mu.Unlock()
				return err
			}
			m["signed_curve25519:"+kid] = key
		}
		body["one_time_keys"] = m
	}
	if fb := b.acct.FallbackKeyUnpublished(); len(fb) > 0 {
		m := map[string]any{}
		for kid, k := range fb {
			key := map[string]any{"key": string(k), "fallback": true}
			if err := b.signLocked(key); err != nil {
				b.mu.Unlock()
				return err
			}
			m["signed_curve25519:"+kid] = key
		}
		body["fallback_keys"] = m
	}
	st := accountState{DeviceID: b.deviceID, Uploaded: !withDevice}
	p, err := pickle(b.acct, b.vault.key)
	b.mu.Unlock()
	if err != nil {
		return err
	}
	if len(body) == 0 {
		return nil
	}
	st.Pickle = p
	if err := b.vault.put(ctx, sealed{kindAccount, "device", st}); err != nil {
		return err
	}
	if err := b.call(ctx, http.MethodPost, "/_matrix/client/v3/keys/upload", body, nil); err != nil {
		return fmt.Errorf("alert bot: upload keys: %w", err)
	}
	b.mu.Lock()
	b.acct.MarkKeysAsPublished()
	p, err = pickle(b.acct, b.vault.key)
	b.mu.Unlock()
	if err != nil {
		return err
	}
	st.Pickle, st.Uploaded = p, true
	return b.vault.put(ctx, sealed{kindAccount, "device", st})
}

// signLocked adds the device's signature to a JSON object (without its
// signatures and unsigned). b.mu is held.
func (b *Bot) signLocked(obj map[string]any) error {
	msg, err := canonicaljson.Marshal(obj)
	if err != nil {
		return err
	}
	sig, err := b.acct.Sign(msg)
	if err != nil {
		return err
	}
	obj["signatures"] = map[string]map[string]string{b.userID: {"ed25519:" + b.deviceID: string(sig)}}
	return nil
}

// device is another device the bot shares room keys with.
type device struct {
	UserID, DeviceID string
	Ed25519, Curve   string
}

// userDevices are the devices of one user as last queried; stale when
// the server said their list changed (MSC3202) since.
type userDevices struct {
	devices map[string]device
	stale   bool
}

// devicesOf returns the devices of users, querying the server for users
// not known or stale. A device whose keys are not signed by itself, or
// whose ed25519 key changed since the bot first saw it, is left out.
func (b *Bot) devicesOf(ctx context.Context, users []string) ([]device, error) {
	b.mu.Lock()
	var ask []string
	for _, u := range users {
		if d := b.devices[u]; d == nil || d.stale {
			ask = append(ask, u)
		}
	}
	b.mu.Unlock()
	if len(ask) > 0 {
		if err := b.queryKeys(ctx, ask); err != nil {
			return nil, err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []device
	for _, u := range users {
		if d := b.devices[u]; d != nil {
			for _, dev := range d.devices {
				if dev.UserID == b.userID && dev.DeviceID == b.deviceID {
					continue
				}
				out = append(out, dev)
			}
		}
	}
	return out, nil
}

// queryKeys asks the server for the device keys of users.
func (b *Bot) queryKeys(ctx context.Context, users []string) error {
	req := map[string]map[string][]string{"device_keys": {}}
	for _, u := range users {
		req["device_keys"][u] = []string{}
	}
	var resp struct {
		DeviceKeys map[string]map[string]json.RawMessage `json:"device_keys"`
		Failures   map[string]json.RawMessage            `json:"failures"`
	}
	body := map[string]any{"device_keys": req["device_keys"], "timeout": 10000}
	if err := b.call(ctx, http.MethodPost, "/_matrix/client/v3/keys/query", body, &resp); err != nil {
		return fmt.Errorf("alert bot: query keys: %w", err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, u := range users {
		got, ok := resp.DeviceKeys[u]
		if !ok {
			continue // its server did not answer: ask again next time
		}
		old := b.devices[u]
		fresh := &userDevices{devices: map[string]device{}}
		for devID, raw := range got {
			d, err := parseDeviceKeys(raw, u, devID)
			if err != nil {
				b.log.Debug("device keys refused", "user", u, "device", devID, "err", err)
				continue
			}
			if old != nil {
				if prev, seen := old.devices[devID]; seen && prev.Ed25519 != d.Ed25519 {
					b.log.Warn("device keys changed: device left out", "user", u, "device", devID)
					continue
				}
			}
			fresh.devices[devID] = d
		}
		b.devices[u] = fresh
	}
	return nil
}

// parseDeviceKeys checks a device's keys: its ids, and its own signature.
func parseDeviceKeys(raw json.RawMessage, userID, deviceID string) (device, error) {
	var k struct {
		UserID   string            `json:"user_id"`
		DeviceID string            `json:"device_id"`
		Keys     map[string]string `json:"keys"`
	}
	if err := json.Unmarshal(raw, &k); err != nil {
		return device{}, err
	}
	if k.UserID != userID || k.DeviceID != deviceID {
		return device{}, fmt.Errorf("keys of %s %s under %s %s", k.UserID, k.DeviceID, userID, deviceID)
	}
	d := device{UserID: userID, DeviceID: deviceID, Ed25519: k.Keys["ed25519:"+deviceID], Curve: k.Keys["curve25519:"+deviceID]}
	pub, err := signing.DecodeBase64(d.Ed25519)
	if err != nil || len(pub) != ed25519.PublicKeySize || d.Curve == "" {
		return device{}, fmt.Errorf("no usable ed25519 and curve25519 keys")
	}
	if err := signing.VerifyJSON(raw, userID, "ed25519:"+deviceID, pub); err != nil {
		return device{}, err
	}
	return d, nil
}

// staleDevices marks users' device lists as changed.
func (b *Bot) staleDevices(users []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, u := range users {
		if d := b.devices[u]; d != nil {
			d.stale = true
		}
	}
}

// forgetDevices drops users the bot shares no room with any more.
func (b *Bot) forgetDevices(users []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, u := range users {
		delete(b.devices, u)
	}
}
