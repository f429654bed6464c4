package adminapi

import (
	"luxchat/internal/accounts"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// deviceJSON is a device as the admin API shows it. luxchat does not
// keep user agents: last_seen_user_agent is null.
type deviceJSON struct {
	DeviceID          string  `json:"device_id"`
	DisplayName       *string `json:"display_name,omitempty"`
	LastSeenIP        *string `json:"last_seen_ip"`
	LastSeenUserAgent *string `json:"last_seen_user_agent"`
	LastSeenTS        *int64  `json:"last_seen_ts"`
	UserID            string  `json:"user_id"`
	Dehydrated        bool    `json:"dehydrated"`
}

func toDeviceJSON(userID string, d accounts.Device) deviceJSON {
	j := deviceJSON{DeviceID: d.DeviceID, UserID: userID}
	if d.DisplayName != "" {
		j.DisplayName = &d.DisplayName
	}
	if d.LastSeenIP != "" {
		j.LastSeenIP = &d.LastSeenIP
	}
	if d.LastSeenTS != 0 {
		j.LastSeenTS = &d.LastSeenTS
	}
	return j
}

// existingUser reads {userId}, a local account that exists (M_NOT_FOUND
// otherwise).
func (a *API) existingUser(r *httputil.Request) (string, error) {
	userID, err := a.localUser(r)
	if err != nil {
		return "", err
	}
	if _, err := a.Accounts.UserDetails(r.Context(), userID); err != nil {
		return "", err
	}
	return userID, nil
}

// GET /_synapse/admin/v2/users/{userId}/devices
func (a *API) listDevices(r *httputil.Request) (any, error) {
	userID, err := a.existingUser(r)
	if err != nil {
		return nil, err
	}
	devs, err := a.Accounts.Devices(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	out := make([]deviceJSON, 0, len(devs))
	for _, d := range devs {
		out = append(out, toDeviceJSON(userID, d))
	}
	return map[string]any{"devices": out, "total": len(out)}, nil
}

// GET /_synapse/admin/v2/users/{userId}/devices/{deviceId}
func (a *API) getDevice(r *httputil.Request) (any, error) {
	userID, err := a.existingUser(r)
	if err != nil {
		return nil, err
	}
	d, err := a.Accounts.Device(r.Context(), userID, r.Var("deviceId"))
	if err != nil {
		return nil, err
	}
	return toDeviceJSON(userID, *d), nil
}

// PUT /_synapse/admin/v2/users/{userId}/devices/{deviceId}
func (a *API) putDevice(r *httputil.Request) (any, error) {
	userID, err := a.existingUser(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		DisplayName *string `json:"display_name"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.DisplayName == nil {
		// Nothing to change, but the device must exist.
		if _, err := a.Accounts.Device(r.Context(), userID, r.Var("deviceId")); err != nil {
			return nil, err
		}
		return struct{}{}, nil
	}
	if err := a.Accounts.RenameDevice(r.Context(), userID, r.Var("deviceId"), *body.DisplayName); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// DELETE /_synapse/admin/v2/users/{userId}/devices/{deviceId}: deleting a
// device the user does not have succeeds, as Synapse's does.
func (a *API) deleteDevice(r *httputil.Request) (any, error) {
	userID, err := a.existingUser(r)
	if err != nil {
		return nil, err
	}
	if err := a.Accounts.DeleteDevicesNoAuth(r.Context(), userID, []string{r.Var("deviceId")}); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// POST /_synapse/admin/v2/users/{userId}/delete_devices
func (a *API) deleteDevices(r *httputil.Request) (any, error) {
	userID, err := a.existingUser(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Devices *[]string `json:"devices"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.Devices == nil {
		return nil, errcode.MissingParam("devices is required")
	}
	if len(*body.Devices) > 1000 {
		return nil, errcode.InvalidParam("at most 1000 devices at once")
	}
	if err := a.Accounts.DeleteDevicesNoAuth(r.Context(), userID, *body.Devices); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// GET /_synapse/admin/v1/whois/{userId} and the spec's
// GET /_matrix/client/v3/admin/whois/{userId}: the user's devices with
// where and when each was last seen. luxchat keeps one address per
// device and no user agent, so each device has one session with one
// connection (none when it was never seen).
func (a *API) whois(r *httputil.Request) (any, error) {
	userID, err := a.existingUser(r)
	if err != nil {
		return nil, err
	}
	devs, err := a.Accounts.Devices(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	type connection struct {
		IP        string  `json:"ip"`
		LastSeen  int64   `json:"last_seen"`
		UserAgent *string `json:"user_agent"`
	}
	type session struct {
		Connections []connection `json:"connections"`
	}
	type device struct {
		Sessions []session `json:"sessions"`
	}
	out := map[string]device{}
	for _, d := range devs {
		s := session{Connections: []connection{}}
		if d.LastSeenTS != 0 || d.LastSeenIP != "" {
			s.Connections = append(s.Connections, connection{IP: d.LastSeenIP, LastSeen: d.LastSeenTS})
		}
		out[d.DeviceID] = device{Sessions: []session{s}}
	}
	return map[string]any{"user_id": userID, "devices": out}, nil
}
