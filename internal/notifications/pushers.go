package notifications

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// PusherRequest is the body of POST /pushers/set.
type PusherRequest struct {
	Kind              *string         `json:"kind"`
	AppID             string          `json:"app_id"`
	Pushkey           string          `json:"pushkey"`
	AppDisplayName    string          `json:"app_display_name"`
	DeviceDisplayName string          `json:"device_display_name"`
	ProfileTag        string          `json:"profile_tag"`
	Lang              string          `json:"lang"`
	Data              json.RawMessage `json:"data"`
	Append            bool            `json:"append"`
}

// gatewayPath is the only path a push gateway URL may have.
const gatewayPath = "/_matrix/push/v1/notify"

// SetPusher creates, updates or (kind null) deletes a pusher of the
// caller's device.
func (s *Service) SetPusher(ctx context.Context, userID, deviceID string, req PusherRequest, kindPresent bool) error {
	if !kindPresent {
		return errcode.MissingParam("kind is required")
	}
	if req.AppID == "" || req.Pushkey == "" {
		return errcode.MissingParam("app_id and pushkey are required")
	}
	if len(req.AppID) > 64 {
		return errcode.InvalidParam("app_id is longer than 64 characters")
	}
	if len(req.Pushkey) > 512 {
		return errcode.InvalidParam("pushkey is longer than 512 bytes")
	}
	if req.Kind == nil {
		if err := s.store.DeletePusher(ctx, userID, req.AppID, req.Pushkey); err != nil {
			return err
		}
		return s.reloadPushers(ctx)
	}
	var missing []string
	if req.AppDisplayName == "" {
		missing = append(missing, "app_display_name")
	}
	if req.DeviceDisplayName == "" {
		missing = append(missing, "device_display_name")
	}
	if req.Lang == "" {
		missing = append(missing, "lang")
	}
	if req.Data == nil || string(req.Data) == "null" {
		missing = append(missing, "data")
	}
	if len(missing) > 0 {
		return errcode.MissingParam("missing parameters: %s", strings.Join(missing, ", "))
	}
	var data map[string]json.RawMessage
	if err := json.Unmarshal(req.Data, &data); err != nil || data == nil {
		return errcode.BadJSON("data must be an object")
	}
	switch *req.Kind {
	case "http":
		var u string
		if err := json.Unmarshal(data["url"], &u); err != nil || u == "" {
			return errcode.MissingParam("data.url is required for http pushers")
		}
		if err := validGatewayURL(u); err != nil {
			return err
		}
		if f, ok := data["format"]; ok {
			var format string
			if json.Unmarshal(f, &format) != nil || format != "event_id_only" {
				return errcode.InvalidParam("data.format must be event_id_only")
			}
		}
	default:
		// Email pushers need a mailer the server does not have.
		return errcode.InvalidParam("unsupported pusher kind %q", *req.Kind)
	}
	p := store.Pusher{
		UserID: userID, AppID: req.AppID, Pushkey: req.Pushkey, DeviceID: deviceID, Kind: *req.Kind,
		AppDisplayName: req.AppDisplayName, DeviceDisplayName: req.DeviceDisplayName, ProfileTag: req.ProfileTag,
		Lang: req.Lang, Data: req.Data, PushkeyTS: time.Now().Unix(),
	}
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.PutPusher(ctx, p, !req.Append)
		return err
	})
	if err != nil {
		return err
	}
	return s.reloadPushers(ctx)
}

func validGatewayURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		return errcode.InvalidParam("data.url must be an http(s) URL")
	}
	if u.Path != gatewayPath || u.RawQuery != "" || u.Fragment != "" {
		return errcode.InvalidParam("data.url must have the path %s", gatewayPath)
	}
	return nil
}

// Pusher is a pusher as GET /pushers shows it.
type Pusher struct {
	AppDisplayName    string          `json:"app_display_name"`
	AppID             string          `json:"app_id"`
	Data              json.RawMessage `json:"data"`
	DeviceDisplayName string          `json:"device_display_name"`
	Kind              string          `json:"kind"`
	Lang              string          `json:"lang"`
	ProfileTag        string          `json:"profile_tag,omitempty"`
	Pushkey           string          `json:"pushkey"`
}

// Pushers lists a user's pushers.
func (s *Service) Pushers(ctx context.Context, userID string) ([]Pusher, error) {
	ps, err := s.store.Pushers(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := make([]Pusher, 0, len(ps))
	for _, p := range ps {
		out = append(out, Pusher{
			AppDisplayName: p.AppDisplayName, AppID: p.AppID, Data: p.Data, DeviceDisplayName: p.DeviceDisplayName,
			Kind: p.Kind, Lang: p.Lang, ProfileTag: p.ProfileTag, Pushkey: p.Pushkey,
		})
	}
	return out, nil
}

// DevicesDeleted deletes the pushers the deleted devices set (logout,
// device deletion). It fits accounts.Hooks.OnDevicesDeleted.
func (s *Service) DevicesDeleted(ctx context.Context, userID string, deviceIDs []string) error {
	if err := s.deleteLocalSettings(ctx, userID, deviceIDs); err != nil {
		return err
	}
	found, err := s.store.DeletePushersOfDevices(ctx, userID, deviceIDs)
	if err != nil || !found {
		return err
	}
	return s.reloadPushers(ctx)
}

// localSettingsPrefix starts the account data type of a device's local
// notification settings (MSC3890), followed by the device id.
const localSettingsPrefix = "org.matrix.msc3890.local_notification_settings."

// deleteLocalSettings deletes the local notification settings of deleted
// devices: nothing would ever read them again.
func (s *Service) deleteLocalSettings(ctx context.Context, userID string, deviceIDs []string) error {
	deleted := false
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		deleted = false
		for _, d := range deviceIDs {
			ok, err := tx.DeleteAccountData(ctx, userID, "", localSettingsPrefix+d)
			if err != nil {
				return err
			}
			deleted = deleted || ok
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete local notification settings: %w", err)
	}
	if deleted && s.wakeSyncs != nil {
		s.wakeSyncs(userID)
	}
	return nil
}

// reloadPushers reloads who has HTTP pushers. Pushers change rarely; the
// list is read for every notifying event.
func (s *Service) reloadPushers(ctx context.Context) error {
	keys, err := s.store.AllPusherKeys(ctx)
	if err != nil {
		return err
	}
	m := map[string][]store.PusherKey{}
	for _, k := range keys {
		m[k.UserID] = append(m[k.UserID], k)
	}
	s.pushersMu.Lock()
	s.pushers = m
	s.pushersMu.Unlock()
	return nil
}

func (s *Service) pushersOf(userID string) []store.PusherKey {
	s.pushersMu.RLock()
	defer s.pushersMu.RUnlock()
	return s.pushers[userID] // never modified: reloads replace the map
}

func (s *Service) hasPushers() bool {
	s.pushersMu.RLock()
	defer s.pushersMu.RUnlock()
	return len(s.pushers) > 0
}
