package exchange

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"sort"
	"time"

	"luxchat/internal/federation"
	"luxchat/internal/store"
)

// outbound implements sync.Federation.
type outbound struct{ s *Service }

func edu(typ string, content any) federation.EDU {
	data, _ := json.Marshal(content)
	return federation.EDU{Type: typ, Content: data}
}

// Typing sends m.typing to the room's other servers; it is not persisted.
func (o outbound) Typing(_ context.Context, roomID, userID string, typing bool, timeout time.Duration, joined []string) {
	s := o.s
	if !s.isLocal(userID) {
		return
	}
	if dests := s.withPartial(roomID, s.servers(joined)); len(dests) > 0 {
		s.queue.AddEphemeralEDU(dests, edu("m.typing", map[string]any{"room_id": roomID, "user_id": userID, "typing": typing}))
	}
}

// Receipt sends an m.receipt to the room's other servers.
func (o outbound) Receipt(ctx context.Context, r store.Receipt) {
	s := o.s
	if !s.isLocal(r.UserID) {
		return
	}
	joined, err := s.rooms.JoinedUsers(ctx, r.RoomID)
	if err != nil {
		return
	}
	dests := s.withPartial(r.RoomID, s.servers(joined))
	if len(dests) == 0 {
		return
	}
	data := map[string]any{"ts": r.TS}
	if r.ThreadID != "" {
		data["thread_id"] = r.ThreadID
	}
	e := edu("m.receipt", map[string]any{
		r.RoomID: map[string]any{r.Type: map[string]any{r.UserID: map[string]any{"data": data, "event_ids": []string{r.EventID}}}},
	})
	// Stored before the client is answered, so an acknowledged receipt
	// reaches the other servers even if we stop right after.
	if err := s.queue.PersistEDUs(ctx, dests, []federation.EDU{e}, nil); err != nil {
		s.log.Warn("federation: queue receipt", "room", r.RoomID, "err", err)
		s.queue.AddEDU(dests, e)
	}
}

// withPartial adds, for a room joined with partial state, the servers the
// resident server listed (most members are not known yet).
func (s *Service) withPartial(roomID string, dests []string) []string {
	for _, srv := range s.rooms.PartialServers(roomID) {
		if srv != s.self && !slices.Contains(dests, srv) {
			dests = append(dests, srv)
		}
	}
	return dests
}

// Presence sends m.presence to the servers sharing a room with the user
// (not persisted).
func (o outbound) Presence(ctx context.Context, p store.Presence) {
	s := o.s
	if !s.isLocal(p.UserID) {
		return
	}
	dests := s.roommateServers(ctx, p.UserID)
	if len(dests) == 0 {
		return
	}
	item := map[string]any{
		"user_id":          p.UserID,
		"presence":         p.State,
		"last_active_ago":  max(time.Now().UnixMilli()-p.LastActiveTS, 0),
		"currently_active": p.State == "online",
	}
	if p.StatusMsg.Valid {
		item["status_msg"] = p.StatusMsg.String
	}
	// Presence is repeated while it matters: like typing, it is not worth
	// a row per destination.
	s.queue.AddEphemeralEDU(dests, edu("m.presence", map[string]any{"push": []any{item}}))
}

// SendToDevice sends to-device messages for users of other servers, one
// m.direct_to_device per server.
func (s *Service) SendToDevice(ctx context.Context, sender, evType string, messages map[string]map[string]json.RawMessage) {
	per := map[string]map[string]map[string]json.RawMessage{}
	for u, devs := range messages {
		srv := serverOf(u)
		if srv == "" || srv == s.self {
			continue
		}
		if per[srv] == nil {
			per[srv] = map[string]map[string]json.RawMessage{}
		}
		per[srv][u] = devs
	}
	for srv, msgs := range per {
		e := edu("m.direct_to_device", map[string]any{
			"sender": sender, "type": evType, "message_id": randomID(), "messages": msgs,
		})
		// Stored before the sender's request is answered: nothing else
		// keeps a message for a remote device.
		if err := s.queue.PersistEDUs(ctx, []string{srv}, []federation.EDU{e}, nil); err != nil {
			s.log.Warn("federation: queue to-device", "destination", srv, "err", err)
			s.queue.AddEDU([]string{srv}, e)
		}
	}
}

func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// DeviceListChanged is e2ee's OnDeviceListChange: announcing reads the
// user's keys, so it runs off the request's path.
func (s *Service) DeviceListChanged(users ...string) {
	s.announceInBackground(users, "federation: announce device list", s.announceDevices)
}

// announceInBackground runs announce for each user off the caller's
// goroutine (Close waits for it), logging failures with what.
func (s *Service) announceInBackground(users []string, what string, announce func(ctx context.Context, userID string) error) {
	s.devWG.Add(1)
	go func() {
		defer s.devWG.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, u := range users {
			if err := announce(ctx, u); err != nil {
				s.log.Warn(what, "user", u, "err", err)
			}
		}
	}()
}

// snapshot maps "d:<device>" and "x:<key type>" to a hash of what was
// announced.
type snapshot map[string]string

func hash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// announceDevices compares a local user's devices and cross-signing keys
// with what was last announced and sends an m.device_list_update per
// changed or deleted device (stream ids counting up per user, each EDU's
// prev_id the one before) and an m.signing_key_update when the master or
// self-signing key changed, to the servers sharing a room with the user.
func (s *Service) announceDevices(ctx context.Context, userID string) error {
	dests := s.roommateServers(ctx, userID)
	if len(dests) == 0 {
		return nil // a server that joins later asks for the list itself
	}
	s.devMu.Lock()
	defer s.devMu.Unlock()
	// The keys as other servers would read them, with their owner's
	// signatures: a device signed by the self-signing key is a change.
	keys, err := s.e2ee.QueryLocal(ctx, map[string][]string{userID: {}})
	if err != nil {
		return err
	}
	prev, err := s.store.GetDeviceListOutbound(ctx, userID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	old := snapshot{}
	var stream int64
	if prev != nil {
		stream = prev.StreamID
		_ = json.Unmarshal([]byte(prev.Snapshot), &old)
	}
	now := snapshot{}
	var edus []federation.EDU
	next := func() (int64, []int64) {
		p := []int64{} // an array, never null
		if stream > 0 {
			p = []int64{stream}
		}
		stream++
		return stream, p
	}
	// Devices without keys are announced too (the update's keys are
	// optional): other servers list them, and see their renames.
	all, err := s.store.Devices(ctx, userID)
	if err != nil {
		return err
	}
	for _, d := range all { // sorted by device id
		c, h := deviceUpdate(userID, d, keys.DeviceKeys[userID][d.DeviceID])
		now["d:"+d.DeviceID] = h
		if old["d:"+d.DeviceID] == h {
			continue
		}
		c["stream_id"], c["prev_id"] = next()
		edus = append(edus, edu("m.device_list_update", c))
	}
	signing := map[string]any{"user_id": userID}
	// New or changed devices, then new cross-signing keys, then deleted
	// devices. The user-signing key is private to its owner: QueryLocal leaves it out.
	for typ, raw := range map[string]json.RawMessage{"master": keys.MasterKeys[userID], "self_signing": keys.SelfSigningKeys[userID]} {
		if raw == nil {
			continue
		}
		h := hash(string(raw))
		now["x:"+typ] = h
		if old["x:"+typ] != h {
			signing[typ+"_key"] = raw
		}
	}
	if len(signing) > 1 {
		edus = append(edus, edu("m.signing_key_update", signing))
	}
	var gone []string
	for key := range old {
		if len(key) > 2 && key[:2] == "d:" && now[key] == "" {
			gone = append(gone, key[2:])
		}
	}
	sort.Strings(gone)
	for _, d := range gone {
		id, p := next()
		edus = append(edus, edu("m.device_list_update", map[string]any{"user_id": userID, "device_id": d, "stream_id": id, "prev_id": p, "deleted": true}))
	}
	if len(edus) == 0 {
		return nil
	}
	snap, _ := json.Marshal(now)
	// The snapshot and the updates commit together: a crash cannot leave
	// a change recorded as announced but never sent.
	return s.queue.PersistEDUs(ctx, dests, edus, func(tx *store.Tx) error {
		return tx.PutDeviceListOutbound(ctx, userID, store.DeviceListOutbound{StreamID: stream, Snapshot: string(snap)})
	})
}

// DeviceListStreamID is the stream id of a local user's last announced
// device list update (0: none), for /user/devices.
func (s *Service) DeviceListStreamID(ctx context.Context, userID string) (int64, error) {
	d, err := s.store.GetDeviceListOutbound(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return d.StreamID, nil
}

// deviceUpdate is the content of a device's m.device_list_update, its
// stream ids aside, and a hash of what it announces: the keys (raw, nil
// for a device without keys) and the display name.
func deviceUpdate(userID string, d store.Device, raw json.RawMessage) (map[string]any, string) {
	c := map[string]any{"user_id": userID, "device_id": d.DeviceID, "deleted": false}
	keyJSON, name := json.RawMessage(nil), d.DisplayName.String
	if raw != nil {
		keyJSON, name = splitUnsigned(raw)
		c["keys"] = keyJSON
	}
	if name != "" {
		c["device_display_name"] = name
	}
	return c, hash(string(keyJSON), name)
}

// splitUnsigned returns device keys without their "unsigned" member, and
// the display name it held.
func splitUnsigned(raw json.RawMessage) (json.RawMessage, string) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw, ""
	}
	u, ok := m["unsigned"]
	if !ok {
		return raw, ""
	}
	var n struct {
		Name string `json:"device_display_name"`
	}
	_ = json.Unmarshal(u, &n)
	delete(m, "unsigned")
	out, err := json.Marshal(m)
	if err != nil {
		return raw, n.Name
	}
	return out, n.Name
}
