package clientapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"luxchat/internal/delayed"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/rooms"
)

// Delayed events (MSC4140): scheduling through /send and /state with a
// delay query parameter or the MSC's own endpoint, and managing them.

const (
	msc4140 = "/_matrix/client/unstable/org.matrix.msc4140"
	// delayParam is the query parameter of /send and /state that makes
	// them schedule the event instead of sending it.
	delayParam = "org.matrix.msc4140.delay"
)

// delayedRoutes are the management endpoints. The per-action ones take
// the delay id as their credential: a caller without an access token
// (an SFU acting for a client that left, say) may use them; one with a
// token acts on its own events only.
func (a *API) delayedRoutes() []route {
	return []route{
		{"PUT " + msc4140 + "/rooms/{roomId}/delayed_event/{eventType}/{txnId}", user, a.putDelayedEvent, limited},
		{"GET " + msc4140 + "/delayed_events", user, a.listDelayedEvents, limited},
		{"GET " + msc4140 + "/delayed_events/{delayId}", user, a.getDelayedEvent, limited},
		{"POST " + msc4140 + "/delayed_events/{delayId}", optional, a.updateDelayedEvent, limited},
		{"POST " + msc4140 + "/delayed_events/{delayId}/cancel", optional, a.delayedAction(delayed.ActionCancel), limited},
		{"POST " + msc4140 + "/delayed_events/{delayId}/restart", optional, a.delayedAction(delayed.ActionRestart), limited},
		{"POST " + msc4140 + "/delayed_events/{delayId}/send", optional, a.delayedAction(delayed.ActionSend), limited},
	}
}

// delayOf returns the delay query parameter of /send or /state, if any.
func delayOf(r *httputil.Request) (string, bool) {
	q := r.URL.Query()
	return q.Get(delayParam), q.Has(delayParam)
}

// txnKeyOf names a client transaction by its endpoint and id, as
// rooms.Txn does.
func txnKeyOf(scope, txnID string) string {
	return strconv.Itoa(len(scope)) + ":" + scope + txnID
}

func checkRoomID(roomID string) error {
	if !strings.HasPrefix(roomID, "!") || len(roomID) > 255 {
		return errcode.InvalidParam("not a room id: %q", roomID)
	}
	return nil
}

// PUT /rooms/{roomId}/send/{eventType}/{txnId}?org.matrix.msc4140.delay=MS
func (a *API) sendDelayed(r *httputil.Request, delay string) (any, error) {
	ms, err := a.Delayed.ParseDelay(delay)
	if err != nil {
		return nil, err
	}
	roomID, typ := r.Var("roomId"), r.Var("eventType")
	key := txnKeyOf("send/"+roomID+"/"+typ, r.Var("txnId"))
	return a.scheduleDelayed(r, delayed.Request{RoomID: roomID, Type: typ, TxnKey: &key, DelayMS: ms}, nil)
}

// scheduleDelayed answers a repeated transaction with its first delay id,
// reads the content (unless given) and schedules the event.
func (a *API) scheduleDelayed(r *httputil.Request, req delayed.Request, content json.RawMessage) (any, error) {
	if err := checkRoomID(req.RoomID); err != nil {
		return nil, err
	}
	req.UserID, req.DeviceID, req.AppService = r.Session.UserID, r.Session.DeviceID, r.Session.AppService
	if req.TxnKey != nil {
		// Before the body: a retry may come without it.
		id, err := a.Delayed.LookupTxn(r.Context(), req.UserID, req.DeviceID, *req.TxnKey)
		if err != nil || id != "" {
			return map[string]string{"delay_id": id}, err
		}
	}
	if content == nil {
		var err error
		if content, err = readContent(r); err != nil {
			return nil, err
		}
	}
	req.Content = content
	id, err := a.Delayed.Schedule(r.Context(), req)
	if e, ok := errcode.As(err); ok && e.Status == http.StatusTooManyRequests {
		// The per-user limit: Retry-After says when the user's next
		// delayed event is due (seconds, rounded up), as the MSC asks.
		ms, _ := e.Extra["retry_after_ms"].(int64)
		return &httputil.Response{Status: e.Status, Body: e, Headers: http.Header{"Retry-After": {strconv.FormatInt((ms+999)/1000, 10)}}}, nil
	}
	if err != nil {
		return nil, err
	}
	return map[string]string{"delay_id": id}, nil
}

// PUT /_matrix/client/unstable/org.matrix.msc4140/rooms/{roomId}/delayed_event/{eventType}/{txnId}
// (the MSC's own endpoint: the delay and state key in the body, and a
// delay above the maximum refused with M_FORBIDDEN).
func (a *API) putDelayedEvent(r *httputil.Request) (any, error) {
	roomID, typ := r.Var("roomId"), r.Var("eventType")
	key := txnKeyOf("delayed_event/"+roomID+"/"+typ, r.Var("txnId"))
	if id, err := a.Delayed.LookupTxn(r.Context(), r.Session.UserID, r.Session.DeviceID, key); err != nil || id != "" {
		return map[string]string{"delay_id": id}, err
	}
	raw, err := readObject(r, rooms.MaxEventBytes+1024)
	if err != nil {
		return nil, err
	}
	var body struct {
		DelayMS  json.RawMessage `json:"delay_ms"`
		StateKey *string         `json:"state_key"`
		Content  json.RawMessage `json:"content"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return nil, errcode.BadJSON("invalid body: %v", err)
	}
	if body.DelayMS == nil || body.Content == nil {
		return nil, errcode.MissingParam("delay_ms and content are required")
	}
	// A bare integer: not a string, a fraction nor an exponent.
	ms, perr := strconv.ParseInt(string(body.DelayMS), 10, 64)
	if perr != nil || ms <= 0 {
		return nil, errcode.InvalidParam("delay_ms must be a positive integer")
	}
	if err := a.Delayed.CheckDelay(ms); err != nil {
		if e, ok := errcode.As(err); ok && e.Code == "M_MAX_DELAY_EXCEEDED" {
			return nil, errcode.Forbidden("%s", e.Message).With("max_delay_ms", a.Delayed.Limits().MaxDelay.Milliseconds())
		}
		return nil, err
	}
	if len(body.Content) == 0 || body.Content[0] != '{' || len(body.Content) > rooms.MaxEventBytes {
		return nil, errcode.BadJSON("content must be a JSON object of at most %d bytes", rooms.MaxEventBytes)
	}
	if err := checkStateEvent(typ, body.StateKey); err != nil {
		return nil, err
	}
	return a.scheduleDelayed(r, delayed.Request{RoomID: roomID, Type: typ, StateKey: body.StateKey, TxnKey: &key, DelayMS: ms}, body.Content)
}

// checkStateEvent refuses, at scheduling, what PUT /state refuses.
func checkStateEvent(typ string, key *string) error {
	if key == nil {
		return nil
	}
	if typ == "m.room.create" {
		return errcode.BadJSON("a room's m.room.create event cannot be replaced")
	}
	if typ == "m.room.member" && !strings.HasPrefix(*key, "@") {
		return errcode.BadJSON("m.room.member state key must be a user id")
	}
	return nil
}

// delayedEventJSON is a delayed event as the MSC lists it, with the
// older field names (delay, running_since) beside the current ones for
// clients written against them.
func delayedEventJSON(e *delayed.Event, finalised bool) map[string]any {
	m := map[string]any{
		"delay_id":      e.DelayID,
		"room_id":       e.RoomID,
		"type":          e.Type,
		"delay_ms":      e.DelayMS,
		"scheduled_at":  e.ScheduledAt,
		"delay":         e.DelayMS,
		"running_since": e.ScheduledAt,
		"content":       e.Content,
	}
	if e.StateKey != nil {
		m["state_key"] = *e.StateKey
	}
	if finalised && e.FinalisedTS != 0 {
		m["finalised_ts"] = e.FinalisedTS
		m["origin_server_ts"] = e.FinalisedTS // the MSC's current name
		switch e.Outcome {
		case delayed.OutcomeSent:
			m["outcome"] = "send"
		case delayed.OutcomeFailed:
			m["outcome"], m["reason"] = "cancel", "error"
		default:
			m["outcome"] = "cancel"
		}
		if e.EventID != "" {
			m["event_id"] = e.EventID
		}
		if e.Error != nil {
			m["error"] = e.Error
		}
	}
	return m
}

// GET /_matrix/client/unstable/org.matrix.msc4140/delayed_events with
// MSC4486's filters and pagination (delayed.ParseListQuery): without
// parameters, the scheduled events, the soonest due first.
func (a *API) listDelayedEvents(r *httputil.Request) (any, error) {
	lq, err := delayed.ParseListQuery(r.URL.Query())
	if err != nil {
		return nil, err
	}
	rows, next, err := a.Delayed.List(r.Context(), r.Session.UserID, lq)
	if err != nil {
		return nil, err
	}
	out := make([]map[string]any, len(rows))
	for i := range rows {
		out[i] = delayedEventJSON(&rows[i], true)
	}
	resp := map[string]any{"delayed_events": out}
	if next != "" {
		resp["next_batch"] = next
		resp["org.matrix.msc4486.next_batch"] = next
	}
	return resp, nil
}

// GET /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId}
func (a *API) getDelayedEvent(r *httputil.Request) (any, error) {
	e, err := a.Delayed.Get(r.Context(), r.Session.UserID, r.Var("delayId"))
	if err != nil {
		return nil, err
	}
	return delayedEventJSON(e, true), nil
}

// POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId}
// with {"action": "cancel"|"restart"|"send"} (the MSC's earlier form).
func (a *API) updateDelayedEvent(r *httputil.Request) (any, error) {
	var body struct {
		Action *string `json:"action"`
	}
	raw, err := r.Body()
	if err != nil {
		return nil, err
	}
	if err := httputil.DecodeJSON(raw, &body); err != nil {
		return nil, err
	}
	if body.Action == nil {
		return nil, errcode.MissingParam("missing action")
	}
	switch *body.Action {
	case delayed.ActionCancel, delayed.ActionRestart, delayed.ActionSend:
	default:
		return nil, errcode.InvalidParam("action must be cancel, restart or send")
	}
	return a.act(r, *body.Action)
}

// POST /_matrix/client/unstable/org.matrix.msc4140/delayed_events/{delayId}/{cancel|restart|send}
func (a *API) delayedAction(action string) httputil.Handler {
	return func(r *httputil.Request) (any, error) { return a.act(r, action) }
}

func (a *API) act(r *httputil.Request, action string) (any, error) {
	caller := ""
	if r.Session != nil {
		caller = r.Session.UserID
	}
	if err := a.Delayed.Act(r.Context(), caller, r.Var("delayId"), action); err != nil {
		return nil, err
	}
	return map[string]any{}, nil
}
