package adminapi

import (
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// The spec's account moderation endpoints (v1.18) and Synapse's suspend.
// The caller's rights were checked before (requireAdmin), so that nothing
// tells a non-administrator whether an account exists.

// moderated reads {userId} for the spec's endpoints: a local account
// (M_INVALID_PARAM), existing and active (M_NOT_FOUND), not another
// administrator (M_FORBIDDEN), nor, to change, the caller.
func (a *API) moderated(r *httputil.Request, change bool) (string, error) {
	userID, err := a.localUser(r)
	if err != nil {
		return "", err
	}
	u, err := a.Accounts.ActiveUser(r.Context(), userID)
	if err != nil {
		return "", err
	}
	if userID == r.Session.UserID {
		if change {
			return "", errcode.Forbidden("you may not change this about your own account")
		}
	} else if u.IsAdmin {
		return "", errcode.Forbidden("the target user is another administrator")
	}
	return userID, nil
}

// GET /_matrix/client/v1/admin/suspend/{userId}
func (a *API) getSuspended(r *httputil.Request) (any, error) {
	userID, err := a.moderated(r, false)
	if err != nil {
		return nil, err
	}
	u, err := a.Accounts.ActiveUser(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"suspended": u.Suspended}, nil
}

// PUT /_matrix/client/v1/admin/suspend/{userId}
func (a *API) putSuspended(r *httputil.Request) (any, error) {
	var body struct {
		Suspended *bool `json:"suspended"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.Suspended == nil {
		return nil, errcode.MissingParam("suspended is required")
	}
	userID, err := a.moderated(r, true)
	if err != nil {
		return nil, err
	}
	if err := a.Accounts.SetSuspended(r.Context(), userID, *body.Suspended); err != nil {
		return nil, err
	}
	return map[string]bool{"suspended": *body.Suspended}, nil
}

// PUT /_synapse/admin/v1/suspend/{userId}: Synapse's form, {"suspend": bool}.
func (a *API) synapseSuspend(r *httputil.Request) (any, error) {
	var body struct {
		Suspend *bool `json:"suspend"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.Suspend == nil {
		return nil, errcode.MissingParam("suspend is required")
	}
	userID, err := a.moderated(r, true)
	if err != nil {
		return nil, err
	}
	if err := a.Accounts.SetSuspended(r.Context(), userID, *body.Suspend); err != nil {
		return nil, err
	}
	return map[string]string{"user_" + map[bool]string{true: "suspended", false: "unsuspended"}[*body.Suspend]: userID}, nil
}

// GET /_matrix/client/v1/admin/lock/{userId}
func (a *API) getLocked(r *httputil.Request) (any, error) {
	userID, err := a.moderated(r, false)
	if err != nil {
		return nil, err
	}
	u, err := a.Accounts.ActiveUser(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"locked": u.Locked}, nil
}

// PUT /_matrix/client/v1/admin/lock/{userId}
func (a *API) putLocked(r *httputil.Request) (any, error) {
	var body struct {
		Locked *bool `json:"locked"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.Locked == nil {
		return nil, errcode.MissingParam("locked is required")
	}
	userID, err := a.moderated(r, true)
	if err != nil {
		return nil, err
	}
	if err := a.Accounts.SetLocked(r.Context(), userID, *body.Locked); err != nil {
		return nil, err
	}
	return map[string]bool{"locked": *body.Locked}, nil
}
