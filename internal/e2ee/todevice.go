package e2ee

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"sort"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/store"
)

// SendToDevice queues messages of one event type for devices: messages
// maps a user to device ids ("*": all of the user's devices) to content.
// A transaction id the caller's device used before sends nothing again.
// Messages for users of other servers go to SendRemote; those for local
// devices that do not exist are dropped.
func (s *Service) SendToDevice(ctx context.Context, c Caller, evType, txnID string, messages map[string]map[string]json.RawMessage) error {
	if err := validID(evType, "event type"); err != nil {
		return err
	}
	if err := validID(txnID, "transaction id"); err != nil {
		return err
	}
	type msg struct {
		user, device string
		content      string
	}
	var msgs []msg
	remote := map[string]map[string]json.RawMessage{} // users of other servers
	users := make([]string, 0, len(messages))
	for u := range messages {
		users = append(users, u)
	}
	sort.Strings(users)
	n := 0
	for _, u := range users {
		parsed, err := id.ParseUserID(u)
		if err != nil {
			return errcode.InvalidParam("%q is not a user id", truncate(u))
		}
		n += len(messages[u])
		if n > maxToDeviceTargets {
			return errcode.TooLarge("at most %d messages per request", maxToDeviceTargets)
		}
		devices := make([]string, 0, len(messages[u]))
		for d := range messages[u] {
			devices = append(devices, d)
		}
		sort.Strings(devices)
		for _, d := range devices {
			if err := validID(d, "device id"); err != nil {
				return err
			}
			content := bytes.TrimSpace(messages[u][d])
			if len(content) > maxToDeviceContent {
				return errcode.TooLarge("the message for %s %s is larger than %d bytes", truncate(u), truncate(d), maxToDeviceContent)
			}
			if len(content) == 0 || content[0] != '{' {
				return errcode.BadJSON("the message for %s %s must be an object", truncate(u), truncate(d))
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, content); err != nil {
				return errcode.BadJSON("the message for %s %s is not valid JSON", truncate(u), truncate(d))
			}
			if parsed.Server() != s.serverName {
				if remote[u] == nil {
					remote[u] = map[string]json.RawMessage{}
				}
				remote[u][d] = json.RawMessage(compact.String())
				continue
			}
			msgs = append(msgs, msg{u, d, compact.String()})
		}
	}
	s.sweepTxns(ctx)
	var woken []string
	sendRemote := false
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		woken = woken[:0]
		fresh, err := tx.PutToDeviceTxn(ctx, c.UserID, c.DeviceID, txnID)
		if err != nil || !fresh {
			return err
		}
		sendRemote = len(remote) > 0
		known := map[string][]string{} // user → device ids
		for _, m := range msgs {
			devs, ok := known[m.user]
			if !ok {
				if devs, err = tx.DeviceIDs(ctx, m.user); err != nil {
					return err
				}
				known[m.user] = devs
			}
			targets := []string{m.device}
			if m.device == "*" {
				targets = devs
			} else if !slices.Contains(devs, m.device) {
				continue
			}
			for _, d := range targets {
				if _, err := tx.InsertToDevice(ctx, store.ToDeviceMessage{UserID: m.user, DeviceID: d, Sender: c.UserID, Type: evType, Content: m.content}); err != nil {
					return err
				}
			}
			if len(targets) > 0 && (len(woken) == 0 || woken[len(woken)-1] != m.user) {
				woken = append(woken, m.user)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.wake(woken...)
	if sendRemote && s.hooks.SendRemote != nil {
		s.hooks.SendRemote(ctx, c.UserID, evType, remote)
	}
	return nil
}
