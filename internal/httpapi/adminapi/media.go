package adminapi

import (
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/media"
	"luxchat/internal/roomadmin"
)

func (a *API) media() (*media.Service, error) {
	if a.Media == nil {
		return nil, errcode.Unrecognized("media is not available")
	}
	return a.Media, nil
}

// quarantine serves POST /_synapse/admin/v1/media/quarantine/{serverName}/{mediaId}
// (by the caller) and .../unquarantine/... (release).
func (a *API) quarantine(release bool) httputil.Handler {
	return func(r *httputil.Request) (any, error) {
		m, err := a.media()
		if err != nil {
			return nil, err
		}
		by := r.Session.UserID
		if release {
			by = ""
		}
		if err := m.SetQuarantined(r.Context(), r.Var("serverName"), r.Var("mediaId"), by); err != nil {
			return nil, err
		}
		return struct{}{}, nil
	}
}

// POST /_synapse/admin/v1/room/{roomId}/media/quarantine
func (a *API) quarantineRoomMedia(r *httputil.Request) (any, error) {
	m, err := a.media()
	if err != nil {
		return nil, err
	}
	if err := roomadmin.CheckRoomID(r.Var("roomId")); err != nil {
		return nil, err
	}
	n, err := m.QuarantineRoom(r.Context(), r.Var("roomId"), r.Session.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]int64{"num_quarantined": n}, nil
}

// POST /_synapse/admin/v1/user/{userId}/media/quarantine
func (a *API) quarantineUserMedia(r *httputil.Request) (any, error) {
	m, err := a.media()
	if err != nil {
		return nil, err
	}
	n, err := m.QuarantineUser(r.Context(), r.Var("userId"), r.Session.UserID)
	if err != nil {
		return nil, err
	}
	return map[string]int64{"num_quarantined": n}, nil
}

// DELETE /_synapse/admin/v1/media/{serverName}/{mediaId}
func (a *API) deleteMedia(r *httputil.Request) (any, error) {
	m, err := a.media()
	if err != nil {
		return nil, err
	}
	if err := m.DeleteLocal(r.Context(), r.Var("serverName"), r.Var("mediaId")); err != nil {
		return nil, err
	}
	return map[string]any{"deleted_media": []string{r.Var("mediaId")}, "total": 1}, nil
}

// POST /_synapse/admin/v1/purge_media_cache?before_ts=
func (a *API) purgeMediaCache(r *httputil.Request) (any, error) {
	m, err := a.media()
	if err != nil {
		return nil, err
	}
	if r.Query("before_ts") == "" {
		return nil, errcode.MissingParam("before_ts is required")
	}
	before, err := r.QueryInt("before_ts", 0)
	if err != nil {
		return nil, err
	}
	n, err := m.PurgeRemoteBefore(r.Context(), before)
	if err != nil {
		return nil, err
	}
	return map[string]int64{"deleted": n}, nil
}

// userMediaStat is one user's line of the media statistics.
type userMediaStat struct {
	DisplayName string `json:"displayname"`
	MediaCount  int64  `json:"media_count"`
	MediaLength int64  `json:"media_length"`
	UserID      string `json:"user_id"`
}

// GET /_synapse/admin/v1/statistics/users/media
func (a *API) userMediaStats(r *httputil.Request) (any, error) {
	m, err := a.media()
	if err != nil {
		return nil, err
	}
	from, limit, backward, err := pageParams(r, 100, "f")
	if err != nil {
		return nil, err
	}
	order := r.Query("order_by")
	switch order {
	case "":
		order = "user_id"
	case "user_id", "displayname", "media_length", "media_count":
	default:
		return nil, errcode.InvalidParam("unknown order_by %q", order)
	}
	fromTS, err := r.QueryInt("from_ts", 0)
	if err != nil {
		return nil, err
	}
	untilTS, err := r.QueryInt("until_ts", 0)
	if err != nil {
		return nil, err
	}
	if untilTS > 0 && untilTS < fromTS {
		return nil, errcode.InvalidParam("until_ts must not be before from_ts")
	}
	stats, total, err := m.UserMediaStats(r.Context(), media.UserMediaStatsQuery{From: from, Limit: limit, OrderBy: order,
		Backward: backward, FromTS: fromTS, UntilTS: untilTS, Search: r.Query("search_term")})
	if err != nil {
		return nil, err
	}
	users := make([]userMediaStat, len(stats))
	for i, s := range stats {
		users[i] = userMediaStat{DisplayName: s.DisplayName, MediaCount: s.Count, MediaLength: s.Length, UserID: s.UserID}
	}
	out := map[string]any{"users": users, "total": total}
	if int64(from+len(stats)) < total && len(stats) > 0 {
		out["next_token"] = from + len(stats)
	}
	return out, nil
}
