package e2ee

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	gosync "sync"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/store"
)

// Remote asks other servers for their users' keys (the Server-Server
// API's /user/keys/query and /user/keys/claim); the server wiring
// provides it. Answers about users of another server are ignored.
type Remote interface {
	QueryKeys(ctx context.Context, server string, devices map[string][]string) (*QueryResult, error)
	ClaimKeys(ctx context.Context, server string, want map[string]map[string]string) (*ClaimResult, error)
}

// keptListTTL bounds how long a kept remote device list is trusted
// without news: a safety net for updates lost while no room was shared.
const keptListTTL = 24 * time.Hour

type timeoutKey struct{}

// defaultRemoteTimeout bounds a query of other servers when the request
// gives no timeout (the spec's default for /keys/query and /keys/claim).
const defaultRemoteTimeout = 10 * time.Second

// WithRemoteTimeout returns ctx carrying how long /keys/query or
// /keys/claim may wait for other servers (ms; nil: the default).
func WithRemoteTimeout(ctx context.Context, ms *int64) context.Context {
	if ms == nil {
		return ctx
	}
	d := time.Duration(*ms) * time.Millisecond
	return context.WithValue(ctx, timeoutKey{}, min(max(d, 0), time.Minute))
}

func remoteTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Value(timeoutKey{}).(time.Duration); ok {
		return d
	}
	return defaultRemoteTimeout
}

// failure is a "failures" entry of a server that did not answer.
func failure(err error) map[string]any {
	if errors.Is(err, context.DeadlineExceeded) {
		return map[string]any{"status": 504, "message": "timed out"}
	}
	return map[string]any{"status": 503, "message": "server unreachable"}
}

// byServer groups user ids by their server.
func byServer[T any](m map[string]T) map[string]map[string]T {
	out := map[string]map[string]T{}
	for u, v := range m {
		parsed, err := id.ParseUserID(u)
		if err != nil {
			continue
		}
		srv := string(parsed.Server())
		if out[srv] == nil {
			out[srv] = map[string]T{}
		}
		out[srv][u] = v
	}
	return out
}

// queryRemote adds the keys of remote users to res: from the kept device
// lists when fresh, else from their servers, in parallel, within the
// request's timeout; a server that does not answer is listed in failures.
func (s *Service) queryRemote(ctx context.Context, devices map[string][]string, res *QueryResult) error {
	if len(devices) == 0 {
		return nil
	}
	users := make([]string, 0, len(devices))
	for u := range devices {
		users = append(users, u)
	}
	sort.Strings(users)
	fresh, err := s.store.FreshRemoteDeviceLists(ctx, users, time.Now().Add(-keptListTTL).UnixMilli())
	if err != nil {
		return err
	}
	var kept []string
	ask := map[string][]string{}
	for _, u := range users {
		if fresh[u] {
			kept = append(kept, u)
		} else {
			ask[u] = devices[u]
		}
	}
	if err := s.keptKeys(ctx, kept, devices, res); err != nil {
		return err
	}
	if len(ask) == 0 {
		return nil
	}
	if s.hooks.Remote == nil {
		for srv := range byServer(ask) {
			res.Failures[srv] = map[string]any{"status": 503, "message": "federation is not available"}
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, remoteTimeout(ctx))
	defer cancel()
	var mu gosync.Mutex
	var wg gosync.WaitGroup
	for srv, want := range byServer(ask) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.hooks.Remote.QueryKeys(ctx, srv, want)
			if err == nil {
				// Full lists of users we share a room with are kept, and
				// refreshed when their server announces a change.
				for u, devs := range want {
					if len(devs) == 0 {
						s.keepRemoteKeys(ctx, u, got)
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.log.Info("e2ee: remote key query failed", "server", srv, "err", err)
				res.Failures[srv] = failure(err)
				return
			}
			for u := range want {
				res.DeviceKeys[u] = map[string]json.RawMessage{}
			}
			for u, devs := range got.DeviceKeys {
				if _, asked := want[u]; asked {
					res.DeviceKeys[u] = devs
				}
			}
			for _, m := range []struct{ dst, src map[string]json.RawMessage }{
				{res.MasterKeys, got.MasterKeys}, {res.SelfSigningKeys, got.SelfSigningKeys},
			} {
				for u, k := range m.src {
					if _, asked := want[u]; asked {
						m.dst[u] = k
					}
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// keptKeys answers from the kept device lists of remote users.
func (s *Service) keptKeys(ctx context.Context, users []string, devices map[string][]string, res *QueryResult) error {
	if len(users) == 0 {
		return nil
	}
	keys, err := s.store.RemoteDeviceKeys(ctx, users)
	if err != nil {
		return err
	}
	cross, err := s.store.CrossSigningKeys(ctx, users)
	if err != nil {
		return err
	}
	for _, u := range users {
		res.DeviceKeys[u] = map[string]json.RawMessage{}
	}
	for _, k := range keys {
		if want := devices[k.UserID]; len(want) > 0 && !slices.Contains(want, k.DeviceID) {
			continue
		}
		res.DeviceKeys[k.UserID][k.DeviceID] = json.RawMessage(k.KeyJSON)
	}
	for _, k := range cross {
		switch k.Type {
		case "master":
			res.MasterKeys[k.UserID] = json.RawMessage(k.KeyJSON)
		case "self_signing":
			res.SelfSigningKeys[k.UserID] = json.RawMessage(k.KeyJSON)
		}
	}
	return nil
}

// keepRemoteKeys stores the complete key list of a remote user who shares
// a room with a local user; others are not kept, as no change of theirs
// would reach us. Keys that fail the checks of local uploads are left out.
func (s *Service) keepRemoteKeys(ctx context.Context, userID string, got *QueryResult) {
	mates, err := s.store.Roommates(ctx, userID)
	if err != nil || !slices.ContainsFunc(mates, s.isLocal) {
		return
	}
	var devices []store.RemoteDevice
	for d, raw := range got.DeviceKeys[userID] {
		canonical, ed, err := parseDeviceKeys(stripUnsigned(raw), userID, d)
		if err != nil {
			s.log.Info("e2ee: remote device keys refused", "user", userID, "device", d, "err", err)
			continue
		}
		devices = append(devices, store.RemoteDevice{DeviceID: d, KeyJSON: canonical, Ed25519: ed})
	}
	var cross []store.CrossSigningKey
	for _, x := range []struct {
		typ string
		raw json.RawMessage
	}{{"master", got.MasterKeys[userID]}, {"self_signing", got.SelfSigningKeys[userID]}} {
		if !present(x.raw) {
			continue
		}
		k, err := parseCrossSigningKey(x.raw, userID, x.typ, x.typ+"_key")
		if err != nil {
			s.log.Info("e2ee: remote cross-signing key refused", "user", userID, "type", x.typ, "err", err)
			continue
		}
		cross = append(cross, store.CrossSigningKey{UserID: userID, Type: x.typ, KeyID: k.keyID, KeyJSON: k.canonical})
	}
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.ReplaceRemoteDeviceList(ctx, userID, devices, cross, time.Now().UnixMilli())
		return err
	})
	if err != nil {
		s.log.Warn("e2ee: keep remote keys", "user", userID, "err", err)
	}
}

// stripUnsigned drops the "unsigned" member a server adds to device keys.
func stripUnsigned(raw json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	if _, ok := m["unsigned"]; !ok {
		return raw
	}
	delete(m, "unsigned")
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}

// claimRemote claims keys of remote users from their servers, in
// parallel, within the request's timeout.
func (s *Service) claimRemote(ctx context.Context, want map[string]map[string]string, res *ClaimResult) {
	if len(want) == 0 {
		return
	}
	if s.hooks.Remote == nil {
		for srv := range byServer(want) {
			res.Failures[srv] = map[string]any{"status": 503, "message": "federation is not available"}
		}
		return
	}
	ctx, cancel := context.WithTimeout(ctx, remoteTimeout(ctx))
	defer cancel()
	var mu gosync.Mutex
	var wg gosync.WaitGroup
	for srv, w := range byServer(want) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.hooks.Remote.ClaimKeys(ctx, srv, w)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				s.log.Info("e2ee: remote key claim failed", "server", srv, "err", err)
				res.Failures[srv] = failure(err)
				return
			}
			for u, devs := range got.OneTimeKeys {
				if _, asked := w[u]; asked {
					res.OneTimeKeys[u] = devs
				}
			}
		}()
	}
	wg.Wait()
}

// QueryLocal answers another server's /user/keys/query: the keys of this
// server's users only, without user-signing keys nor signatures made by
// anyone but the key's owner.
func (s *Service) QueryLocal(ctx context.Context, devices map[string][]string) (*QueryResult, error) {
	local := map[string][]string{}
	for u, d := range devices {
		if s.isLocal(u) {
			local[u] = d
		}
	}
	return s.Query(ctx, "", local)
}

// ClaimLocal answers another server's /user/keys/claim for this server's
// users only.
func (s *Service) ClaimLocal(ctx context.Context, want map[string]map[string]string) (*ClaimResult, error) {
	local := map[string]map[string]string{}
	for u, d := range want {
		if s.isLocal(u) {
			local[u] = d
		}
	}
	return s.Claim(ctx, local)
}

// RemoteDeviceListChanged records that a remote user's devices or
// cross-signing keys changed (a device list or signing key update from
// its server): the kept list is stale, and local users sharing a room
// see the user in device_lists.changed.
//
// An update that comes while the user's join is still news (nobody here
// fetched their keys since) tells local users nothing new: the join put
// the user in their device_lists.changed already. This is what a server
// sends when one of its users joins a room with us.
func (s *Service) RemoteDeviceListChanged(ctx context.Context, userID string) error {
	announce := false
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		unfetched, err := tx.RemoteJoinUnfetched(ctx, userID)
		if err != nil {
			return err
		}
		if announce = !unfetched; !announce {
			return nil
		}
		if _, err := tx.MarkRemoteDeviceListStale(ctx, userID); err != nil {
			return err
		}
		return tx.AddDeviceListChange(ctx, userID, "")
	})
	if err != nil {
		return fmt.Errorf("remote device list change: %w", err)
	}
	if announce {
		s.wakeRoommates(ctx, userID)
	}
	return nil
}

// DeliverToDevice delivers to-device messages another server sent for
// local users (m.direct_to_device): messages maps a user to device ids
// ("*": every device) to content. Users of other servers and unknown
// devices are skipped.
func (s *Service) DeliverToDevice(ctx context.Context, sender, evType string, messages map[string]map[string]json.RawMessage) error {
	if err := validID(evType, "event type"); err != nil {
		return err
	}
	var woken []string
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		woken = woken[:0]
		n := 0
		for u, devs := range messages {
			if !s.isLocal(u) {
				continue
			}
			known, err := tx.DeviceIDs(ctx, u)
			if err != nil {
				return err
			}
			delivered := false
			for d, raw := range devs {
				var compact bytes.Buffer
				if len(raw) > maxToDeviceContent || json.Compact(&compact, raw) != nil || compact.Len() == 0 || compact.Bytes()[0] != '{' {
					continue
				}
				targets := []string{d}
				if d == "*" {
					targets = known
				} else if !slices.Contains(known, d) {
					continue
				}
				for _, t := range targets {
					if n++; n > maxToDeviceTargets {
						return errcode.TooLarge("too many to-device messages")
					}
					if _, err := tx.InsertToDevice(ctx, store.ToDeviceMessage{UserID: u, DeviceID: t, Sender: sender, Type: evType, Content: compact.String()}); err != nil {
						return err
					}
					delivered = true
				}
			}
			if delivered {
				woken = append(woken, u)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.wake(woken...)
	return nil
}
