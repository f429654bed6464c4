package fedapi

import (
	"bytes"
	"encoding/json"
	"time"

	"luxchat/internal/federation"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// Transaction limits ("Transactions": at most 50 PDUs and 100 EDUs).
const (
	maxTxnPDUs = 50
	maxTxnEDUs = 100
)

// transaction is the body of PUT /send/{txnId}.
type transaction struct {
	Origin         string            `json:"origin"`
	OriginServerTS int64             `json:"origin_server_ts"`
	PDUs           []json.RawMessage `json:"pdus"`
	EDUs           []federation.EDU  `json:"edus"`
}

// parseTransaction decodes and checks a transaction body: an object with
// an origin, at most 50 PDUs that are objects and at most 100 EDUs with a
// type.
func parseTransaction(body []byte) (*transaction, error) {
	var t transaction
	if err := httputil.DecodeJSON(body, &t); err != nil {
		return nil, err
	}
	if t.Origin == "" {
		return nil, errcode.BadJSON("origin is required")
	}
	if t.PDUs == nil {
		return nil, errcode.BadJSON("pdus is required")
	}
	if len(t.PDUs) > maxTxnPDUs || len(t.EDUs) > maxTxnEDUs {
		return nil, errcode.BadJSON("a transaction holds at most %d PDUs and %d EDUs", maxTxnPDUs, maxTxnEDUs)
	}
	for _, p := range t.PDUs {
		if p = bytes.TrimSpace(p); len(p) == 0 || p[0] != '{' {
			return nil, errcode.BadJSON("every PDU must be an object")
		}
	}
	for _, e := range t.EDUs {
		if e.Type == "" {
			return nil, errcode.BadJSON("every EDU needs an edu_type")
		}
	}
	return &t, nil
}

// PUT /_matrix/federation/v1/send/{txnId}
func (a *API) sendTransaction(r *httputil.Request) (any, error) {
	// The router authenticated r.Origin before the body is read.
	origin := r.Origin
	if a.Exchange == nil {
		return nil, errcode.Unrecognized("rooms are not served over federation here")
	}
	body, err := r.Body()
	if err != nil {
		return nil, err
	}
	t, err := parseTransaction(body)
	if err != nil {
		return nil, err
	}
	if t.Origin != origin {
		return nil, errcode.Forbidden("transaction origin %q is not the authenticated server", t.Origin)
	}
	resp, dropped, err := a.Exchange.ReceiveTransaction(r.Context(), origin, r.Var("txnId"), t.PDUs, t.EDUs)
	for _, err := range dropped {
		httputil.Logger(r.Context()).Info("federation: PDU dropped", "origin", origin, "err", err)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// nowMS is the origin_server_ts of our answers.
func nowMS() int64 { return time.Now().UnixMilli() }
