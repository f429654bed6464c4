package e2ee

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/matrix/signing"
	"luxchat/internal/store"
	"luxchat/internal/streamtoken"
)

// UploadRequest is the body of /keys/upload.
type UploadRequest struct {
	DeviceKeys   json.RawMessage            `json:"device_keys"`
	OneTimeKeys  map[string]json.RawMessage `json:"one_time_keys"`
	FallbackKeys map[string]json.RawMessage `json:"fallback_keys"`
}

// parsedUpload is an UploadRequest that passed every check.
type parsedUpload struct {
	userID, deviceID string
	deviceKeys       string // canonical; "" when none
	ed25519          string // the device's key from deviceKeys
	oneTime          []keyItem
	fallback         []keyItem
}

type keyItem struct {
	algorithm, keyID, json string
}

// parseUpload checks an upload for userID's device deviceID. knownKey is
// the device's stored ed25519 key ("" when none), which signs its one-time
// keys when the upload carries no device keys.
func parseUpload(userID, deviceID string, req UploadRequest, knownKey string) (*parsedUpload, error) {
	p := &parsedUpload{userID: userID, deviceID: deviceID}
	signer := knownKey
	if present(req.DeviceKeys) {
		dk, pub, err := parseDeviceKeys(req.DeviceKeys, userID, deviceID)
		if err != nil {
			return nil, err
		}
		p.deviceKeys, p.ed25519, signer = dk, pub, pub
	}
	if len(req.OneTimeKeys) > maxKeysPerUpload {
		return nil, errcode.TooLarge("at most %d one-time keys per upload", maxKeysPerUpload)
	}
	var err error
	if p.oneTime, err = parseKeys(req.OneTimeKeys, userID, deviceID, signer, "one_time_keys"); err != nil {
		return nil, err
	}
	if len(req.FallbackKeys) > 16 {
		return nil, errcode.TooLarge("too many fallback keys")
	}
	if p.fallback, err = parseKeys(req.FallbackKeys, userID, deviceID, signer, "fallback_keys"); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, k := range p.fallback {
		if seen[k.algorithm] {
			return nil, errcode.InvalidParam("fallback_keys holds more than one %s key", k.algorithm)
		}
		seen[k.algorithm] = true
	}
	return p, nil
}

// parseDeviceKeys checks a device keys object: it is the caller's device's,
// has every member the spec requires and names its ed25519 key. The
// device's own signature is checked when the object carries one; clients
// verify device keys themselves, so an object without it (as Synapse
// accepts, and test suites upload) is stored as given. It returns the
// canonical JSON and the ed25519 key.
func parseDeviceKeys(raw json.RawMessage, userID, deviceID string) (string, string, error) {
	if len(raw) > maxKeyObjectBytes {
		return "", "", errcode.TooLarge("device_keys is too large")
	}
	m, err := object(raw, "device_keys")
	if err != nil {
		return "", "", err
	}
	var dk struct {
		UserID     string                       `json:"user_id"`
		DeviceID   string                       `json:"device_id"`
		Algorithms []string                     `json:"algorithms"`
		Keys       map[string]string            `json:"keys"`
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(raw, &dk); err != nil {
		return "", "", errcode.BadJSON("device_keys: %v", err)
	}
	switch {
	case dk.UserID == "" || dk.DeviceID == "":
		return "", "", errcode.BadJSON("device_keys.user_id and device_keys.device_id are required")
	case dk.UserID != userID || dk.DeviceID != deviceID:
		return "", "", errcode.InvalidParam("device_keys are for %s's device %s, not for your device %s", truncate(dk.UserID), truncate(dk.DeviceID), deviceID)
	case dk.Algorithms == nil:
		return "", "", errcode.BadJSON("device_keys.algorithms is required")
	case len(dk.Keys) == 0:
		return "", "", errcode.BadJSON("device_keys.keys is required")
	case dk.Signatures == nil:
		return "", "", errcode.BadJSON("device_keys.signatures is required")
	}
	for _, a := range dk.Algorithms {
		if err := validID(a, "algorithm"); err != nil {
			return "", "", err
		}
	}
	for keyID, v := range dk.Keys {
		alg, _, err := splitKeyID(keyID)
		if err != nil {
			return "", "", err
		}
		if alg == signing.AlgEd25519 || alg == "curve25519" {
			if _, err := publicKey(v, "device_keys.keys."+keyID); err != nil {
				return "", "", err
			}
		}
	}
	signKeyID := signing.AlgEd25519 + ":" + deviceID
	pubB64, ok := dk.Keys[signKeyID]
	if !ok {
		return "", "", errcode.BadJSON("device_keys.keys must hold %s", signKeyID)
	}
	if _, signed := dk.Signatures[userID][signKeyID]; signed {
		pub, _ := publicKey(pubB64, "device_keys.keys."+signKeyID)
		if err := verify(raw, userID, signKeyID, pub, "device_keys"); err != nil {
			return "", "", err
		}
	}
	c, err := canonical(m)
	if err != nil {
		return "", "", err
	}
	return c, pubB64, nil
}

// parseKeys checks one-time or fallback keys. A signed key (an object)
// must carry the device's signature when the device's key is known.
func parseKeys(keys map[string]json.RawMessage, userID, deviceID, signer, what string) ([]keyItem, error) {
	var pub ed25519.PublicKey
	if signer != "" {
		pub, _ = publicKey(signer, "device key")
	}
	out := make([]keyItem, 0, len(keys))
	for keyID, raw := range keys {
		alg, _, err := splitKeyID(keyID)
		if err != nil {
			return nil, err
		}
		if len(raw) > maxKeyObjectBytes {
			return nil, errcode.TooLarge("%s.%s is too large", what, truncate(keyID))
		}
		field := what + "." + keyID
		var c string
		switch t := strings.TrimSpace(string(raw)); {
		case strings.HasPrefix(t, `"`):
			var v string
			if err := decodeField(raw, &v, field); err != nil {
				return nil, err
			}
			if _, err := publicKey(v, field); err != nil {
				return nil, err
			}
			c = t
		case strings.HasPrefix(t, "{"):
			m, err := object(raw, field)
			if err != nil {
				return nil, err
			}
			var v string
			if err := decodeField(m["key"], &v, field+".key"); err != nil || v == "" {
				return nil, errcode.MissingParam("%s.key is required", field)
			}
			if _, err := publicKey(v, field+".key"); err != nil {
				return nil, err
			}
			if strings.HasPrefix(alg, "signed_") {
				if !present(m["signatures"]) {
					return nil, errcode.MissingParam("%s.signatures is required", field)
				}
				if pub != nil {
					if err := verify(raw, userID, signing.AlgEd25519+":"+deviceID, pub, field); err != nil {
						return nil, err
					}
				}
			}
			if c, err = canonical(m); err != nil {
				return nil, err
			}
		default:
			return nil, errcode.BadJSON("%s must be a string or an object", field)
		}
		out = append(out, keyItem{algorithm: alg, keyID: keyID, json: c})
	}
	// A stable order: keys of one upload are equivalent, but claims should
	// not depend on map iteration.
	sort.Slice(out, func(i, j int) bool { return out[i].keyID < out[j].keyID })
	return out, nil
}

// apply stores a parsed upload in tx. It reports whether the device keys
// changed (a device list change to announce).
func (p *parsedUpload) apply(ctx context.Context, tx *store.Tx) (bool, error) {
	changed := false
	if p.deviceKeys != "" {
		var err error
		if changed, err = tx.PutDeviceKeys(ctx, p.userID, p.deviceID, p.deviceKeys, p.ed25519); err != nil {
			return false, err
		}
		if changed {
			if err := tx.AddDeviceListChange(ctx, p.userID, ""); err != nil {
				return false, err
			}
		}
	}
	for _, k := range p.oneTime {
		existing, err := tx.AddOneTimeKey(ctx, p.userID, p.deviceID, k.algorithm, k.keyID, k.json)
		if err != nil {
			return false, err
		}
		if existing != "" && existing != k.json {
			return false, errcode.InvalidParam("one-time key %s was already uploaded with different content", truncate(k.keyID))
		}
	}
	for _, k := range p.fallback {
		if err := tx.PutFallbackKey(ctx, p.userID, p.deviceID, k.algorithm, k.keyID, k.json); err != nil {
			return false, err
		}
	}
	return changed, nil
}

// Upload publishes the caller's device keys, one-time keys and fallback
// keys, all or nothing, and returns the device's one-time key counts.
func (s *Service) Upload(ctx context.Context, c Caller, req UploadRequest) (map[string]int, error) {
	known := ""
	if !present(req.DeviceKeys) && len(req.OneTimeKeys)+len(req.FallbackKeys) > 0 {
		dk, err := s.store.GetDeviceKeys(ctx, c.UserID, c.DeviceID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if dk != nil {
			known = dk.Ed25519
		}
	}
	p, err := parseUpload(c.UserID, c.DeviceID, req, known)
	if err != nil {
		return nil, err
	}
	var changed bool
	if p.deviceKeys != "" || len(p.oneTime)+len(p.fallback) > 0 {
		err = s.store.InTx(ctx, func(tx *store.Tx) error {
			tx.OnCommit(func() { s.counts.invalidate(c.UserID, c.DeviceID) })
			changed, err = p.apply(ctx, tx)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	if changed {
		s.wakeRoommates(ctx, c.UserID)
	}
	counts, _, err := s.KeyCounts(ctx, c.UserID, c.DeviceID)
	if err != nil {
		return nil, err
	}
	return counts, nil
}

// QueryResult is the answer of /keys/query.
type QueryResult struct {
	Failures        map[string]any                        `json:"failures"`
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
	UserSigningKeys map[string]json.RawMessage            `json:"user_signing_keys"`
}

// Encode renders the result as JSON. It is what the client API sends: the
// stored keys are valid JSON already, and encoding/json would scan every
// one of them again.
func (r *QueryResult) Encode() []byte {
	b := make([]byte, 0, 1024*(1+len(r.DeviceKeys)))
	b = append(b, `{"device_keys":{`...)
	first := true
	for u, devs := range r.DeviceKeys {
		b = appendKey(b, u, &first)
		b = append(b, '{')
		firstDev := true
		for d, raw := range devs {
			b = appendKey(b, d, &firstDev)
			b = append(b, raw...)
		}
		b = append(b, '}')
	}
	b = append(b, `},"failures":`...)
	failures, _ := json.Marshal(r.Failures)
	b = append(b, failures...)
	for _, m := range []struct {
		name string
		keys map[string]json.RawMessage
	}{{"master_keys", r.MasterKeys}, {"self_signing_keys", r.SelfSigningKeys}, {"user_signing_keys", r.UserSigningKeys}} {
		b = append(b, `,"`+m.name+`":{`...)
		first := true
		for u, raw := range m.keys {
			b = appendKey(b, u, &first)
			b = append(b, raw...)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendKey appends `"key":`, preceded by a comma unless it is the first.
func appendKey(b []byte, key string, first *bool) []byte {
	if !*first {
		b = append(b, ',')
	}
	*first = false
	k, _ := json.Marshal(key)
	b = append(b, k...)
	return append(b, ':')
}

// maxQueryUsers bounds the users of one /keys/query or /keys/claim.
const maxQueryUsers = 10000

// Query returns the device and cross-signing keys of local users; devices
// maps a user to the devices wanted (empty: all). Signatures uploaded by
// the key's owner or by the requester are merged in.
func (s *Service) Query(ctx context.Context, requester string, devices map[string][]string) (*QueryResult, error) {
	if len(devices) > maxQueryUsers {
		return nil, errcode.TooLarge("at most %d users per query", maxQueryUsers)
	}
	res := &QueryResult{
		Failures:        map[string]any{},
		DeviceKeys:      map[string]map[string]json.RawMessage{},
		MasterKeys:      map[string]json.RawMessage{},
		SelfSigningKeys: map[string]json.RawMessage{},
		UserSigningKeys: map[string]json.RawMessage{},
	}
	users := make([]string, 0, len(devices))
	remote := map[string][]string{}
	for u := range devices {
		parsed, err := id.ParseUserID(u)
		if err != nil {
			return nil, errcode.InvalidParam("%q is not a user id", truncate(u))
		}
		if parsed.Server() != s.serverName {
			remote[u] = devices[u]
			continue
		}
		users = append(users, u)
		res.DeviceKeys[u] = map[string]json.RawMessage{}
	}
	if err := s.queryRemote(ctx, remote, res); err != nil {
		return nil, err
	}
	if err := s.addRequesterSignatures(ctx, requester, res); err != nil {
		return nil, err
	}
	if len(users) == 0 {
		return res, nil
	}
	sort.Strings(users)
	keys, err := s.store.QueryDeviceKeys(ctx, users)
	if err != nil {
		return nil, err
	}
	sigs, err := s.store.Signatures(ctx, users)
	if err != nil {
		return nil, err
	}
	cross, err := s.store.CrossSigningKeys(ctx, users)
	if err != nil {
		return nil, err
	}
	// Visible extra signatures by target: the owner's, and the requester's.
	extra := map[[2]string][]store.Signature{}
	for _, sg := range sigs {
		if sg.SignerUser == sg.TargetUser || sg.SignerUser == requester {
			k := [2]string{sg.TargetUser, sg.TargetKey}
			extra[k] = append(extra[k], sg)
		}
	}
	for _, k := range keys {
		if want := devices[k.UserID]; len(want) > 0 && !slices.Contains(want, k.DeviceID) {
			continue
		}
		out, err := withSignatures(k.KeyJSON, extra[[2]string{k.UserID, k.DeviceID}])
		if err != nil {
			return nil, fmt.Errorf("device keys of %s %s: %w", k.UserID, k.DeviceID, err)
		}
		unsigned := `{}`
		if k.DisplayName.Valid {
			name, _ := json.Marshal(k.DisplayName.String)
			unsigned = `{"device_display_name":` + string(name) + `}`
		}
		res.DeviceKeys[k.UserID][k.DeviceID] = addMember(out, "unsigned", unsigned)
	}
	for _, k := range cross {
		switch k.Type {
		case "master":
			out, err := withSignatures(k.KeyJSON, extra[[2]string{k.UserID, strings.TrimPrefix(k.KeyID, signing.AlgEd25519+":")}])
			if err != nil {
				return nil, fmt.Errorf("master key of %s: %w", k.UserID, err)
			}
			res.MasterKeys[k.UserID] = json.RawMessage(out)
		case "self_signing":
			res.SelfSigningKeys[k.UserID] = json.RawMessage(k.KeyJSON)
		case "user_signing":
			if k.UserID == requester {
				res.UserSigningKeys[k.UserID] = json.RawMessage(k.KeyJSON)
			}
		}
	}
	return res, nil
}

// withSignatures merges extra signatures into a stored signed object.
func withSignatures(stored string, extra []store.Signature) (string, error) {
	if len(extra) == 0 {
		return stored, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(stored), &m); err != nil {
		return "", err
	}
	sigs := map[string]map[string]string{}
	if raw, ok := m["signatures"]; ok {
		if err := json.Unmarshal(raw, &sigs); err != nil {
			return "", err
		}
	}
	for _, sg := range extra {
		if sigs[sg.SignerUser] == nil {
			sigs[sg.SignerUser] = map[string]string{}
		}
		sigs[sg.SignerUser][sg.SignerKey] = sg.Signature
	}
	var err error
	if m["signatures"], err = json.Marshal(sigs); err != nil {
		return "", err
	}
	b, err := json.Marshal(m)
	return string(b), err
}

// addMember appends "name": value to a JSON object that lacks name.
func addMember(obj, name, value string) json.RawMessage {
	body := strings.TrimSpace(obj)
	body = strings.TrimSuffix(body, "}")
	sep := ","
	if strings.TrimSpace(body) == "{" {
		sep = ""
	}
	return json.RawMessage(body + sep + `"` + name + `":` + value + "}")
}

// ClaimResult is the answer of /keys/claim.
type ClaimResult struct {
	Failures    map[string]any                                   `json:"failures"`
	OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
}

// Claim hands out one key per requested device and algorithm: the oldest
// one-time key, or the fallback key (then marked used) when none is left.
// Each one-time key is handed out once. Devices with neither are left out.
func (s *Service) Claim(ctx context.Context, want map[string]map[string]string) (*ClaimResult, error) {
	res := &ClaimResult{Failures: map[string]any{}, OneTimeKeys: map[string]map[string]map[string]json.RawMessage{}}
	type target struct{ user, device, alg string }
	var targets []target
	remote := map[string]map[string]string{}
	for u, devs := range want {
		parsed, err := id.ParseUserID(u)
		if err != nil {
			return nil, errcode.InvalidParam("%q is not a user id", truncate(u))
		}
		if parsed.Server() != s.serverName {
			remote[u] = devs
			continue
		}
		for d, alg := range devs {
			if err := validID(d, "device id"); err != nil {
				return nil, err
			}
			if err := validID(alg, "algorithm"); err != nil {
				return nil, err
			}
			targets = append(targets, target{u, d, alg})
		}
	}
	if len(targets) > maxQueryUsers {
		return nil, errcode.TooLarge("at most %d devices per claim", maxQueryUsers)
	}
	s.claimRemote(ctx, remote, res)
	if len(targets) == 0 {
		return res, nil
	}
	// One order for every claim, so that claims never wait on each other
	// in a cycle.
	sort.Slice(targets, func(i, j int) bool {
		a, b := targets[i], targets[j]
		if a.user != b.user {
			return a.user < b.user
		}
		return a.device < b.device
	})
	type claimed struct {
		target
		keyID, json string
	}
	var got []claimed
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		got = got[:0]
		for _, t := range targets {
			keyID, keyJSON, err := tx.ClaimOneTimeKey(ctx, t.user, t.device, t.alg)
			if errors.Is(err, store.ErrNotFound) {
				keyID, keyJSON, err = tx.ClaimFallbackKey(ctx, t.user, t.device, t.alg)
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
			}
			if err != nil {
				return err
			}
			tx.OnCommit(func() { s.counts.invalidate(t.user, t.device) })
			got = append(got, claimed{t, keyID, keyJSON})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, c := range got {
		if res.OneTimeKeys[c.user] == nil {
			res.OneTimeKeys[c.user] = map[string]map[string]json.RawMessage{}
		}
		res.OneTimeKeys[c.user][c.device] = map[string]json.RawMessage{c.keyID: json.RawMessage(c.json)}
	}
	return res, nil
}

// Changes answers /keys/changes: the users whose keys changed between two
// sync tokens, and those who no longer share a room with userID.
func (s *Service) Changes(ctx context.Context, userID, from, to string) (changed, left []string, err error) {
	if from == "" || to == "" {
		return nil, nil, errcode.MissingParam("from and to are required")
	}
	f, err := streamtoken.Parse(from)
	if err != nil {
		return nil, nil, errcode.InvalidParam("invalid from token")
	}
	t, err := streamtoken.Parse(to)
	if err != nil {
		return nil, nil, errcode.InvalidParam("invalid to token")
	}
	return s.DeviceListChanges(ctx, userID, &f, t)
}
