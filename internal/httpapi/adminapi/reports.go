package adminapi

import (
	"encoding/json"
	"strconv"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/reports"
)

// eventReport is an event report in Synapse's shape.
type eventReport struct {
	ID             int64           `json:"id"`
	ReceivedTS     int64           `json:"received_ts"`
	RoomID         string          `json:"room_id"`
	Name           *string         `json:"name"`
	EventID        string          `json:"event_id"`
	UserID         string          `json:"user_id"`
	Reason         *string         `json:"reason"`
	Score          *int64          `json:"score"`
	Sender         string          `json:"sender"`
	CanonicalAlias *string         `json:"canonical_alias"`
	EventJSON      json.RawMessage `json:"event_json,omitempty"`
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func eventReportOf(r *reports.EventReport) eventReport {
	out := eventReport{ID: r.ID, ReceivedTS: r.CreatedTS, RoomID: r.RoomID, Name: nullString(r.RoomName), EventID: r.EventID,
		UserID: r.Reporter, Reason: nullString(r.Reason), Sender: r.Sender, CanonicalAlias: nullString(r.CanonicalAlias)}
	if r.Score.Valid {
		out.Score = &r.Score.Int64
	}
	return out
}

func (a *API) reports() (*reports.Service, error) {
	if a.Reports == nil {
		return nil, errcode.Unrecognized("reports are not available")
	}
	return a.Reports, nil
}

// reportID reads the {reportId} path variable.
func reportID(r *httputil.Request) (int64, error) {
	id, err := strconv.ParseInt(r.Var("reportId"), 10, 64)
	if err != nil || id < 0 {
		return 0, errcode.InvalidParam("the report id must be a non-negative integer")
	}
	return id, nil
}

// GET /_synapse/admin/v1/event_reports
func (a *API) listEventReports(r *httputil.Request) (any, error) {
	rs, err := a.reports()
	if err != nil {
		return nil, err
	}
	from, limit, backward, err := pageParams(r, 100, "b")
	if err != nil {
		return nil, err
	}
	list, total, err := rs.EventReports(r.Context(), reports.EventReportsQuery{From: from, Limit: limit, Backward: backward,
		UserID: r.Query("user_id"), RoomID: r.Query("room_id"), Sender: r.Query("sender_user_id")})
	if err != nil {
		return nil, err
	}
	out := make([]eventReport, len(list))
	for i := range list {
		out[i] = eventReportOf(&list[i])
	}
	resp := map[string]any{"event_reports": out, "total": total}
	if int64(from+len(list)) < total && len(list) > 0 {
		resp["next_token"] = from + len(list)
	}
	return resp, nil
}

// GET /_synapse/admin/v1/event_reports/{reportId}
func (a *API) getEventReport(r *httputil.Request) (any, error) {
	rs, err := a.reports()
	if err != nil {
		return nil, err
	}
	id, err := reportID(r)
	if err != nil {
		return nil, err
	}
	rep, ev, err := rs.EventReport(r.Context(), id)
	if err != nil {
		return nil, err
	}
	out := eventReportOf(rep)
	out.EventJSON = ev
	if ev == nil {
		out.EventJSON = json.RawMessage("null")
	}
	return out, nil
}

// DELETE /_synapse/admin/v1/event_reports/{reportId}
func (a *API) deleteEventReport(r *httputil.Request) (any, error) {
	rs, err := a.reports()
	if err != nil {
		return nil, err
	}
	id, err := reportID(r)
	if err != nil {
		return nil, err
	}
	if err := rs.DeleteEventReport(r.Context(), id); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
