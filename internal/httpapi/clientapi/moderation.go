package clientapi

import (
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/search"
)

// POST /_matrix/client/v3/search
func (a *API) search(r *httputil.Request) (any, error) {
	var body struct {
		SearchCategories *struct {
			RoomEvents *search.Criteria `json:"room_events"`
		} `json:"search_categories"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.SearchCategories == nil {
		return nil, errcode.MissingParam("search_categories is required")
	}
	out := map[string]any{}
	if c := body.SearchCategories.RoomEvents; c != nil {
		res, err := a.Search.Search(r.Context(), search.Request{
			UserID: r.Session.UserID, DeviceID: r.Session.DeviceID, NextBatch: r.Query("next_batch"), Criteria: *c,
		})
		if err != nil {
			return nil, err
		}
		out["room_events"] = res
	}
	return map[string]any{"search_categories": out}, nil
}

// POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}
func (a *API) reportEvent(r *httputil.Request) (any, error) {
	var body struct {
		Reason *string `json:"reason"`
		Score  *int    `json:"score"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	reason := ""
	if body.Reason != nil {
		reason = *body.Reason
	}
	if err := eventIDToWrite(r.Var("eventId"), "eventId"); err != nil {
		return nil, err
	}
	if err := a.Reports.ReportEvent(r.Context(), r.Session.UserID, r.Var("roomId"), r.Var("eventId"), reason, body.Score); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// reportReason reads the required reason of room and user reports.
func reportReason(r *httputil.Request) (string, error) {
	var body struct {
		Reason *string `json:"reason"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return "", err
	}
	if body.Reason == nil {
		return "", errcode.MissingParam("reason is required (it may be blank)")
	}
	return *body.Reason, nil
}

// POST /_matrix/client/v3/rooms/{roomId}/report
func (a *API) reportRoom(r *httputil.Request) (any, error) {
	reason, err := reportReason(r)
	if err != nil {
		return nil, err
	}
	if err := a.Reports.ReportRoom(r.Context(), r.Session.UserID, r.Var("roomId"), reason); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// POST /_matrix/client/v3/users/{userId}/report
func (a *API) reportUser(r *httputil.Request) (any, error) {
	reason, err := reportReason(r)
	if err != nil {
		return nil, err
	}
	if err := a.Reports.ReportUser(r.Context(), r.Session.UserID, r.Var("userId"), reason); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
