package fedapi

import (
	"encoding/json"
	"sort"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
)

// localUser checks that userID is a valid id of this server.
func (a *API) localUser(userID string) error {
	u, err := id.ParseUserID(userID)
	if err != nil {
		return errcode.InvalidParam("invalid user id")
	}
	if string(u.Server()) != a.Config.ServerName {
		return errcode.InvalidParam("user is not local to this server")
	}
	return nil
}

// GET /_matrix/federation/v1/user/devices/{userId}
func (a *API) userDevices(r *httputil.Request) (any, error) {
	userID := r.PathValue("userId")
	if err := a.localUser(userID); err != nil {
		return nil, err
	}
	res, err := a.E2EE.QueryLocal(r.Context(), map[string][]string{userID: {}})
	if err != nil {
		return nil, err
	}
	var stream int64
	if a.DeviceStreamID != nil {
		if stream, err = a.DeviceStreamID(r.Context(), userID); err != nil {
			return nil, err
		}
	}
	type device struct {
		DeviceID    string          `json:"device_id"`
		Keys        json.RawMessage `json:"keys"`
		DisplayName string          `json:"device_display_name,omitempty"`
	}
	devices := []device{}
	for d, raw := range res.DeviceKeys[userID] {
		var k struct {
			Unsigned struct {
				Name string `json:"device_display_name"`
			} `json:"unsigned"`
		}
		_ = json.Unmarshal(raw, &k)
		devices = append(devices, device{DeviceID: d, Keys: raw, DisplayName: k.Unsigned.Name})
	}
	sort.Slice(devices, func(i, j int) bool { return devices[i].DeviceID < devices[j].DeviceID })
	out := map[string]any{"user_id": userID, "stream_id": stream, "devices": devices}
	if k, ok := res.MasterKeys[userID]; ok {
		out["master_key"] = k
	}
	if k, ok := res.SelfSigningKeys[userID]; ok {
		out["self_signing_key"] = k
	}
	return out, nil
}

// POST /_matrix/federation/v1/user/keys/query
func (a *API) userKeysQuery(r *httputil.Request) (any, error) {
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	if req.DeviceKeys == nil {
		return nil, errcode.MissingParam("device_keys is required")
	}
	res, err := a.E2EE.QueryLocal(r.Context(), req.DeviceKeys)
	if err != nil {
		return nil, err
	}
	return map[string]any{"device_keys": res.DeviceKeys, "master_keys": res.MasterKeys, "self_signing_keys": res.SelfSigningKeys}, nil
}

// POST /_matrix/federation/v1/user/keys/claim
func (a *API) userKeysClaim(r *httputil.Request) (any, error) {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	if req.OneTimeKeys == nil {
		return nil, errcode.MissingParam("one_time_keys is required")
	}
	res, err := a.E2EE.ClaimLocal(r.Context(), req.OneTimeKeys)
	if err != nil {
		return nil, err
	}
	return map[string]any{"one_time_keys": res.OneTimeKeys}, nil
}
