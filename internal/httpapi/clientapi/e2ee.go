package clientapi

import (
	"encoding/json"
	"net/http"

	"luxchat/internal/e2ee"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

func e2eeCaller(r *httputil.Request) e2ee.Caller {
	return e2ee.Caller{UserID: r.Session.UserID, DeviceID: r.Session.DeviceID}
}

// POST /keys/upload
func (a *API) keysUpload(r *httputil.Request) (any, error) {
	var req e2ee.UploadRequest
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	counts, err := a.E2EE.Upload(r.Context(), e2eeCaller(r), req)
	if err != nil {
		return nil, err
	}
	return map[string]any{"one_time_key_counts": counts}, nil
}

// POST /keys/query
func (a *API) keysQuery(r *httputil.Request) (any, error) {
	var req struct {
		DeviceKeys map[string][]string `json:"device_keys"`
		Timeout    *int64              `json:"timeout"`
	}
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	if req.DeviceKeys == nil {
		return nil, errcode.MissingParam("device_keys is required")
	}
	res, err := a.E2EE.Query(e2ee.WithRemoteTimeout(r.Context(), req.Timeout), r.Session.UserID, req.DeviceKeys)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(res.Encode()), nil
}

// POST /keys/claim
func (a *API) keysClaim(r *httputil.Request) (any, error) {
	var req struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
		Timeout     *int64                       `json:"timeout"`
	}
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	if req.OneTimeKeys == nil {
		return nil, errcode.MissingParam("one_time_keys is required")
	}
	return a.E2EE.Claim(e2ee.WithRemoteTimeout(r.Context(), req.Timeout), req.OneTimeKeys)
}

// GET /keys/changes
func (a *API) keysChanges(r *httputil.Request) (any, error) {
	changed, left, err := a.E2EE.Changes(r.Context(), r.Session.UserID, r.Query("from"), r.Query("to"))
	if err != nil {
		return nil, err
	}
	if changed == nil {
		changed = []string{}
	}
	if left == nil {
		left = []string{}
	}
	return map[string][]string{"changed": changed, "left": left}, nil
}

// POST /keys/device_signing/upload
func (a *API) deviceSigningUpload(r *httputil.Request) (any, error) {
	var req e2ee.SigningKeysRequest
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	return withUIA(struct{}{}, a.E2EE.UploadSigningKeys(r.Context(), e2eeCaller(r), req))
}

// POST /keys/signatures/upload
func (a *API) signaturesUpload(r *httputil.Request) (any, error) {
	var req map[string]map[string]json.RawMessage
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	failures, err := a.E2EE.UploadSignatures(r.Context(), e2eeCaller(r), req)
	if err != nil {
		return nil, err
	}
	return map[string]any{"failures": failures}, nil
}

// PUT /sendToDevice/{eventType}/{txnId}
func (a *API) sendToDevice(r *httputil.Request) (any, error) {
	var req struct {
		Messages map[string]map[string]json.RawMessage `json:"messages"`
	}
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	if req.Messages == nil {
		return nil, errcode.MissingParam("messages is required")
	}
	return struct{}{}, a.E2EE.SendToDevice(r.Context(), e2eeCaller(r), r.Var("eventType"), r.Var("txnId"), req.Messages)
}

type backupConfig struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Version   string          `json:"version"`
}

// POST /room_keys/version
func (a *API) createBackup(r *httputil.Request) (any, error) {
	var req backupConfig
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	v, err := a.E2EE.CreateBackup(r.Context(), r.Session.UserID, req.Algorithm, req.AuthData)
	if err != nil {
		return nil, err
	}
	return map[string]string{"version": v}, nil
}

// GET /room_keys/version[/{version}]
func (a *API) getBackup(r *httputil.Request) (any, error) {
	return a.E2EE.GetBackup(r.Context(), r.Session.UserID, r.Var("version"))
}

// PUT /room_keys/version/{version}
func (a *API) updateBackup(r *httputil.Request) (any, error) {
	var req backupConfig
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	return struct{}{}, a.E2EE.UpdateBackup(r.Context(), r.Session.UserID, r.Var("version"), req.Algorithm, req.AuthData, req.Version)
}

// DELETE /room_keys/version/{version}
func (a *API) deleteBackup(r *httputil.Request) (any, error) {
	return struct{}{}, a.E2EE.DeleteBackup(r.Context(), r.Session.UserID, r.Var("version"))
}

// GET /room_keys/keys[/{roomId}[/{sessionId}]]
func (a *API) getBackupKeys(r *httputil.Request) (any, error) {
	return a.E2EE.GetBackupKeys(r.Context(), r.Session.UserID, r.Query("version"), r.Var("roomId"), r.Var("sessionId"))
}

// PUT /room_keys/keys[/{roomId}[/{sessionId}]]
func (a *API) putBackupKeys(r *httputil.Request) (any, error) {
	roomID, sessionID := r.Var("roomId"), r.Var("sessionId")
	var rooms map[string]map[string]e2ee.KeyBackupData
	switch {
	case sessionID != "":
		var d e2ee.KeyBackupData
		if err := r.ReadJSON(&d); err != nil {
			return nil, err
		}
		rooms = map[string]map[string]e2ee.KeyBackupData{roomID: {sessionID: d}}
	case roomID != "":
		var d e2ee.RoomKeyBackup
		if err := r.ReadJSON(&d); err != nil {
			return nil, err
		}
		if d.Sessions == nil {
			return nil, errcode.MissingParam("sessions is required")
		}
		rooms = map[string]map[string]e2ee.KeyBackupData{roomID: d.Sessions}
	default:
		var d struct {
			Rooms map[string]e2ee.RoomKeyBackup `json:"rooms"`
		}
		if err := r.ReadJSON(&d); err != nil {
			return nil, err
		}
		if d.Rooms == nil {
			return nil, errcode.MissingParam("rooms is required")
		}
		rooms = make(map[string]map[string]e2ee.KeyBackupData, len(d.Rooms))
		for id, rk := range d.Rooms {
			rooms[id] = rk.Sessions
		}
	}
	return a.E2EE.PutBackupKeys(r.Context(), r.Session.UserID, r.Query("version"), rooms)
}

// DELETE /room_keys/keys[/{roomId}[/{sessionId}]]
func (a *API) deleteBackupKeys(r *httputil.Request) (any, error) {
	return a.E2EE.DeleteBackupKeys(r.Context(), r.Session.UserID, r.Query("version"), r.Var("roomId"), r.Var("sessionId"))
}

// GET /unstable/org.matrix.msc3814.v1/dehydrated_device
func (a *API) getDehydratedDevice(r *httputil.Request) (any, error) {
	return a.E2EE.GetDehydratedDevice(r.Context(), r.Session.UserID)
}

// PUT /unstable/org.matrix.msc3814.v1/dehydrated_device
func (a *API) putDehydratedDevice(r *httputil.Request) (any, error) {
	var req e2ee.DehydratedDeviceRequest
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	id, err := a.E2EE.PutDehydratedDevice(r.Context(), r.Session.UserID, req)
	if err != nil {
		return nil, err
	}
	return map[string]string{"device_id": id}, nil
}

// DELETE /unstable/org.matrix.msc3814.v1/dehydrated_device
func (a *API) deleteDehydratedDevice(r *httputil.Request) (any, error) {
	id, err := a.E2EE.DeleteDehydratedDevice(r.Context(), r.Session.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]string{"device_id": id}, nil
}

// POST (and GET, as matrix-js-sdk calls it) /unstable/org.matrix.msc3814.v1/dehydrated_device/{deviceId}/events
func (a *API) dehydratedDeviceEvents(r *httputil.Request) (any, error) {
	since := r.Query("from")
	if r.Method == http.MethodPost {
		var req struct {
			NextBatch string `json:"next_batch"`
		}
		if err := r.ReadJSON(&req); err != nil {
			return nil, err
		}
		since = req.NextBatch
	}
	return a.E2EE.DehydratedDeviceEvents(r.Context(), r.Session.UserID, r.Var("deviceId"), since)
}
