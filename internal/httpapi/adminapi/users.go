package adminapi

import (
	"net/http"
	"time"

	"luxchat/internal/accounts"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/media"
)

// userJSON is an account as the user list and GET /v2/users/{userId}
// show it (Synapse's field names; timestamps in milliseconds).
type userJSON struct {
	Name         string  `json:"name"`
	IsGuest      bool    `json:"is_guest"`
	Admin        bool    `json:"admin"`
	UserType     *string `json:"user_type"`
	Deactivated  bool    `json:"deactivated"`
	Erased       bool    `json:"erased"`
	ShadowBanned bool    `json:"shadow_banned"`
	DisplayName  *string `json:"displayname"`
	AvatarURL    *string `json:"avatar_url"`
	CreationTS   int64   `json:"creation_ts"`
	LastSeenTS   *int64  `json:"last_seen_ts"`
	Locked       bool    `json:"locked"`
	Suspended    bool    `json:"suspended"`
}

func toUserJSON(u accounts.AdminUser) userJSON {
	j := userJSON{Name: u.UserID, Admin: u.IsAdmin, Deactivated: u.Deactivated, Erased: u.Erased, ShadowBanned: u.ShadowBanned,
		CreationTS: u.CreatedTS, Locked: u.Locked, Suspended: u.Suspended}
	if u.UserType.Valid {
		j.UserType = &u.UserType.String
	}
	if u.DisplayName.Valid {
		j.DisplayName = &u.DisplayName.String
	}
	if u.AvatarURL.Valid {
		j.AvatarURL = &u.AvatarURL.String
	}
	if u.LastSeenTS.Valid {
		j.LastSeenTS = &u.LastSeenTS.Int64
	}
	return j
}

// GET /_synapse/admin/v2/users
func (a *API) listUsers(r *httputil.Request) (any, error) {
	from, limit, err := paging(r)
	if err != nil {
		return nil, err
	}
	desc, err := direction(r, "f")
	if err != nil {
		return nil, err
	}
	q := accounts.UserListQuery{From: from, Limit: limit, Desc: desc, UserIDContains: r.Query("user_id"), NameContains: r.Query("name"),
		OrderBy: r.Query("order_by"), NotUserTypes: r.URL.Query()["not_user_type"]}
	if q.OrderBy == "" {
		q.OrderBy = "name"
	}
	if _, ok := accounts.UserOrders[q.OrderBy]; !ok {
		return nil, errcode.InvalidParam("unknown order_by %q", q.OrderBy)
	}
	for _, f := range []struct {
		name string
		dst  *bool
	}{{"deactivated", &q.Deactivated}, {"locked", &q.Locked}} {
		v, err := queryBool(r, f.name)
		if err != nil {
			return nil, err
		}
		if v != nil {
			*f.dst = *v
		}
	}
	if q.Admins, err = queryBool(r, "admins"); err != nil {
		return nil, err
	}
	if _, err := queryBool(r, "guests"); err != nil {
		return nil, err // there are no guest accounts to include or leave out
	}
	users, total, err := a.Accounts.ListUsers(r.Context(), q)
	if err != nil {
		return nil, err
	}
	out := make([]userJSON, 0, len(users))
	for _, u := range users {
		out = append(out, toUserJSON(u))
	}
	body := map[string]any{"users": out, "total": total}
	if t := nextToken(from, len(users), total); t != nil {
		body["next_token"] = t
	}
	return body, nil
}

// localUser reads {userId}: a well-formed id of this server
// (M_INVALID_PARAM otherwise).
func (a *API) localUser(r *httputil.Request) (string, error) {
	userID := r.Var("userId")
	return userID, a.Accounts.CheckLocalUser(userID)
}

type threePIDJSON struct {
	Medium      string `json:"medium"`
	Address     string `json:"address"`
	AddedAt     int64  `json:"added_at"`
	ValidatedAt int64  `json:"validated_at"`
}

type externalIDJSON struct {
	AuthProvider string `json:"auth_provider"`
	ExternalID   string `json:"external_id"`
}

// userDetailsJSON is GET /v2/users/{userId}'s answer.
type userDetailsJSON struct {
	userJSON
	ThreePIDs               []threePIDJSON   `json:"threepids"`
	ExternalIDs             []externalIDJSON `json:"external_ids"`
	AppServiceID            *string          `json:"appservice_id"`
	ConsentServerNoticeSent *string          `json:"consent_server_notice_sent"`
	ConsentVersion          *string          `json:"consent_version"`
	ConsentTS               *int64           `json:"consent_ts"`
	// ValidUntilTS is when the account locks (account_validity); luxchat's
	// own field, absent when it never does.
	ValidUntilTS *int64 `json:"account_validity_ts,omitempty"`
}

func (a *API) userDetails(r *httputil.Request, userID string) (*userDetailsJSON, error) {
	d, err := a.Accounts.UserDetails(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	out := &userDetailsJSON{userJSON: toUserJSON(d.AdminUser), ThreePIDs: []threePIDJSON{}, ExternalIDs: []externalIDJSON{}}
	for _, p := range d.ThreePIDs {
		out.ThreePIDs = append(out.ThreePIDs, threePIDJSON{Medium: p.Medium, Address: p.Address, AddedAt: p.AddedTS, ValidatedAt: p.ValidatedTS})
	}
	for _, e := range d.ExternalIDs {
		out.ExternalIDs = append(out.ExternalIDs, externalIDJSON{AuthProvider: e.Provider, ExternalID: e.Subject})
	}
	if d.ValidUntilTS.Valid {
		out.ValidUntilTS = &d.ValidUntilTS.Int64
	}
	return out, nil
}

// GET /_synapse/admin/v2/users/{userId}
func (a *API) getUser(r *httputil.Request) (any, error) {
	userID, err := a.localUser(r)
	if err != nil {
		return nil, err
	}
	return a.userDetails(r, userID)
}

// PUT /_synapse/admin/v2/users/{userId}: 201 with the account when it was
// created, 200 when it was changed.
func (a *API) putUser(r *httputil.Request) (any, error) {
	userID, err := a.localUser(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Password      *string              `json:"password"`
		LogoutDevices *bool                `json:"logout_devices"`
		DisplayName   *string              `json:"displayname"`
		AvatarURL     *string              `json:"avatar_url"`
		ThreePIDs     *[]threePIDJSON      `json:"threepids"`
		ExternalIDs   *[]externalIDJSON    `json:"external_ids"`
		Admin         *bool                `json:"admin"`
		Deactivated   *bool                `json:"deactivated"`
		Locked        *bool                `json:"locked"`
		UserType      optionalNull[string] `json:"user_type"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if userID == r.Session.UserID {
		switch {
		case body.Admin != nil && !*body.Admin:
			return nil, errcode.Forbidden("you may not demote yourself")
		case body.Deactivated != nil && *body.Deactivated:
			return nil, errcode.Forbidden("you may not deactivate yourself")
		case body.Locked != nil && *body.Locked:
			return nil, errcode.Forbidden("you may not lock yourself")
		}
	}
	c := accounts.UserChange{Password: body.Password, LogoutDevices: body.LogoutDevices, DisplayName: body.DisplayName, AvatarURL: body.AvatarURL,
		Admin: body.Admin, Deactivated: body.Deactivated, Locked: body.Locked, SetUserType: body.UserType.Set}
	if body.UserType.Value != nil {
		c.UserType = *body.UserType.Value
	}
	if body.ThreePIDs != nil {
		pids := make([]accounts.ThreePID, 0, len(*body.ThreePIDs))
		for _, p := range *body.ThreePIDs {
			pids = append(pids, accounts.ThreePID{Medium: p.Medium, Address: p.Address})
		}
		c.ThreePIDs = &pids
	}
	if body.ExternalIDs != nil {
		ids := make([]accounts.ExternalID, 0, len(*body.ExternalIDs))
		for _, e := range *body.ExternalIDs {
			ids = append(ids, accounts.ExternalID{Provider: e.AuthProvider, Subject: e.ExternalID})
		}
		c.ExternalIDs = &ids
	}
	created, err := a.Accounts.PutUser(r.Context(), userID, c)
	if err != nil {
		return nil, err
	}
	out, err := a.userDetails(r, userID)
	if err != nil {
		return nil, err
	}
	if created {
		return &httputil.Response{Status: http.StatusCreated, Body: out}, nil
	}
	return out, nil
}

// POST /_synapse/admin/v1/deactivate/{userId}
func (a *API) deactivate(r *httputil.Request) (any, error) {
	userID, err := a.localUser(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Erase bool `json:"erase"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if userID == r.Session.UserID {
		return nil, errcode.Forbidden("you may not deactivate yourself")
	}
	if err := a.Accounts.DeactivateByAdmin(r.Context(), userID, body.Erase); err != nil {
		return nil, err
	}
	// Identity servers are not told of anything: luxchat binds no 3PIDs.
	return map[string]string{"id_server_unbind_result": "success"}, nil
}

// POST /_synapse/admin/v1/reset_password/{userId}
func (a *API) resetPassword(r *httputil.Request) (any, error) {
	userID, err := a.localUser(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		NewPassword   *string `json:"new_password"`
		LogoutDevices *bool   `json:"logout_devices"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.NewPassword == nil {
		return nil, errcode.MissingParam("new_password is required")
	}
	logout := body.LogoutDevices == nil || *body.LogoutDevices
	if err := a.Accounts.SetPassword(r.Context(), userID, *body.NewPassword, logout, ""); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// GET /_synapse/admin/v1/username_available: whether a localpart can be
// registered, even when registration is closed.
func (a *API) usernameAvailable(r *httputil.Request) (any, error) {
	username := r.Query("username")
	if username == "" {
		return nil, errcode.MissingParam("username is required")
	}
	if _, err := a.Accounts.CheckUsername(r.Context(), username); err != nil {
		return nil, err
	}
	return map[string]bool{"available": true}, nil
}

// GET /_synapse/admin/v1/users/{userId}/joined_rooms
func (a *API) joinedRooms(r *httputil.Request) (any, error) {
	userID, err := a.localUser(r)
	if err != nil {
		return nil, err
	}
	if _, err := a.Accounts.UserDetails(r.Context(), userID); err != nil {
		return nil, err
	}
	ms, err := a.Rooms.Memberships(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	ids := []string{}
	for _, m := range ms {
		if m.Membership == "join" {
			ids = append(ids, m.RoomID)
		}
	}
	return map[string]any{"joined_rooms": ids, "total": len(ids)}, nil
}

// GET /_synapse/admin/v1/users/{userId}/admin
func (a *API) getAdmin(r *httputil.Request) (any, error) {
	userID, err := a.localUser(r)
	if err != nil {
		return nil, err
	}
	d, err := a.Accounts.UserDetails(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"admin": d.IsAdmin}, nil
}

// PUT /_synapse/admin/v1/users/{userId}/admin
func (a *API) putAdmin(r *httputil.Request) (any, error) {
	userID, err := a.localUser(r)
	if err != nil {
		return nil, err
	}
	var body struct {
		Admin *bool `json:"admin"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.Admin == nil {
		return nil, errcode.MissingParam("admin is required")
	}
	if userID == r.Session.UserID && !*body.Admin {
		return nil, errcode.Forbidden("you may not demote yourself")
	}
	if _, err := a.Accounts.UserDetails(r.Context(), userID); err != nil {
		return nil, err
	}
	if _, err := a.Accounts.PutUser(r.Context(), userID, accounts.UserChange{Admin: body.Admin}); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// POST and DELETE /_synapse/admin/v1/users/{userId}/shadow_ban
func (a *API) shadowBan(on bool) httputil.Handler {
	return func(r *httputil.Request) (any, error) {
		userID, err := a.localUser(r)
		if err != nil {
			return nil, err
		}
		if err := a.Accounts.SetShadowBanned(r.Context(), userID, on); err != nil {
			return nil, err
		}
		return struct{}{}, nil
	}
}

// POST /_synapse/admin/v1/users/{userId}/login: not offered. An
// administrator never acts as another user (no impersonation); the
// answer is the same for every user, existing or not.
func (a *API) loginAsUser(r *httputil.Request) (any, error) {
	return nil, errcode.Forbidden("logging in as another user is not offered by this server")
}

// userMediaPage reads a user media request's user and page, and lists
// that page.
func (a *API) userMediaPage(r *httputil.Request) ([]media.UserMediaItem, int, int, error) {
	userID, err := a.localUser(r)
	if err != nil {
		return nil, 0, 0, err
	}
	from, limit, err := paging(r)
	if err != nil {
		return nil, 0, 0, err
	}
	orderBy := r.Query("order_by")
	desc, err := direction(r, "f")
	if err != nil {
		return nil, 0, 0, err
	}
	if orderBy == "" && r.Query("dir") == "" {
		orderBy, desc = "created_ts", true // newest first
	}
	if orderBy == "" {
		orderBy = "created_ts"
	}
	if !media.UserMediaOrders[orderBy] {
		return nil, 0, 0, errcode.InvalidParam("unknown order_by %q", orderBy)
	}
	if _, err := a.Accounts.UserDetails(r.Context(), userID); err != nil {
		return nil, 0, 0, err
	}
	items, total, err := a.Media.UserMedia(r.Context(), userID, orderBy, desc, from, limit)
	return items, total, from, err
}

// DELETE /_synapse/admin/v1/users/{userId}/media: deletes a page of the
// user's uploads (the same parameters as the list; 100 by default), with
// their thumbnails.
func (a *API) deleteUserMedia(r *httputil.Request) (any, error) {
	items, _, _, err := a.userMediaPage(r)
	if err != nil {
		return nil, err
	}
	deleted := []string{}
	for _, m := range items {
		if err := a.Media.DeleteLocal(r.Context(), a.Config.ServerName, m.MediaID); err != nil {
			if e, ok := errcode.As(err); ok && e.Status == http.StatusNotFound {
				continue // gone meanwhile
			}
			return nil, err
		}
		deleted = append(deleted, m.MediaID)
	}
	return map[string]any{"deleted_media": deleted, "total": len(deleted)}, nil
}

// GET /_synapse/admin/v1/users/{userId}/media
func (a *API) userMedia(r *httputil.Request) (any, error) {
	items, total, from, err := a.userMediaPage(r)
	if err != nil {
		return nil, err
	}
	type mediaJSON struct {
		CreatedTS          int64   `json:"created_ts"`
		LastAccessTS       *int64  `json:"last_access_ts"`
		MediaID            string  `json:"media_id"`
		MediaLength        int64   `json:"media_length"`
		MediaType          string  `json:"media_type"`
		QuarantinedBy      *string `json:"quarantined_by"`
		SafeFromQuarantine bool    `json:"safe_from_quarantine"`
		UploadName         *string `json:"upload_name"`
	}
	out := make([]mediaJSON, 0, len(items))
	for _, m := range items {
		j := mediaJSON{CreatedTS: m.CreatedTS, MediaID: m.MediaID, MediaLength: m.Size, MediaType: m.ContentType}
		if m.UploadName != "" {
			j.UploadName = &m.UploadName
		}
		if m.QuarantinedBy != "" {
			j.QuarantinedBy = &m.QuarantinedBy
		}
		out = append(out, j)
	}
	body := map[string]any{"media": out, "total": total}
	if from+len(items) < total && len(items) > 0 {
		body["next_token"] = from + len(items)
	}
	return body, nil
}

// POST /_synapse/admin/v1/account_validity/validity: renews an account
// until expiration_ts (ms), or for account_validity.period from now.
func (a *API) renewAccount(r *httputil.Request) (any, error) {
	var body struct {
		UserID       string `json:"user_id"`
		ExpirationTS *int64 `json:"expiration_ts"`
		// enable_renewal_emails is ignored: luxchat sends no emails.
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	SetTarget(r, body.UserID)
	if body.UserID == "" {
		return nil, errcode.MissingParam("user_id is required")
	}
	if err := a.Accounts.CheckLocalUser(body.UserID); err != nil {
		return nil, err
	}
	var until time.Time
	if body.ExpirationTS != nil {
		if *body.ExpirationTS <= 0 {
			return nil, errcode.InvalidParam("expiration_ts must be a positive timestamp in milliseconds")
		}
		until = time.UnixMilli(*body.ExpirationTS)
	}
	end, err := a.Accounts.RenewAccount(r.Context(), body.UserID, until)
	if err != nil {
		return nil, err
	}
	return map[string]int64{"expiration_ts": end.UnixMilli()}, nil
}
