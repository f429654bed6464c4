package adminapi

import (
	"encoding/json"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/rooms"
)

// POST /_synapse/admin/v1/send_server_notice
func (a *API) sendServerNotice(r *httputil.Request) (any, error) {
	return a.serverNotice(r, "")
}

// PUT /_synapse/admin/v1/send_server_notice/{txnId}: POST's twin,
// idempotent per transaction id.
func (a *API) putServerNotice(r *httputil.Request) (any, error) {
	return a.serverNotice(r, r.Var("txnId"))
}

// serverNotice sends the notice of the request; a non-empty txnID makes
// a repeat of the request return the first notice.
func (a *API) serverNotice(r *httputil.Request, txnID string) (any, error) {
	if a.Notices == nil {
		return nil, errcode.Unrecognized("server notices are not enabled")
	}
	var body struct {
		UserID  string          `json:"user_id"`
		Content json.RawMessage `json:"content"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	SetTarget(r, body.UserID)
	if body.UserID == "" {
		return nil, errcode.MissingParam("user_id is required")
	}
	if len(body.Content) == 0 {
		return nil, errcode.MissingParam("content is required")
	}
	var txn *rooms.Txn
	if txnID != "" {
		// Scoped to the administrator and the recipient, as a client's
		// transaction is to its room.
		txn = &rooms.Txn{DeviceID: r.Session.DeviceID, ID: txnID, Scope: "send_server_notice " + r.Session.UserID + " " + body.UserID}
	}
	id, err := a.Notices.Send(r.Context(), body.UserID, body.Content, txn)
	if err != nil {
		return nil, err
	}
	return map[string]string{"event_id": id}, nil
}
