package adminapi

import (
	"context"
	"encoding/json"

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

// setFlag reads {"<field>": bool} and sets it on the moderated account.
func (a *API) setFlag(r *httputil.Request, field string, set func(ctx context.Context, userID string, on bool) error) (string, bool, error) {
	var body map[string]json.RawMessage
	if err := r.ReadJSON(&body); err != nil {
		return "", false, err
	}
	var on *bool
	if raw, ok := body[field]; ok && json.Unmarshal(raw, &on) != nil {
		return "", false, errcode.BadJSON("%s must be true or false", field)
	}
	if on == nil {
		return "", false, errcode.MissingParam("%s is required", field)
	}
	userID, err := a.moderated(r, true)
	if err != nil {
		return "", false, err
	}
	return userID, *on, set(r.Context(), userID, *on)
}

// PUT /_matrix/client/v1/admin/suspend/{userId}
func (a *API) putSuspended(r *httputil.Request) (any, error) {
	_, on, err := a.setFlag(r, "suspended", a.Accounts.SetSuspended)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"suspended": on}, nil
}

// PUT /_synapse/admin/v1/suspend/{userId}: Synapse's form, {"suspend": bool}.
func (a *API) synapseSuspend(r *httputil.Request) (any, error) {
	userID, on, err := a.setFlag(r, "suspend", a.Accounts.SetSuspended)
	if err != nil {
		return nil, err
	}
	return map[string]string{"user_" + map[bool]string{true: "suspended", false: "unsuspended"}[on]: userID}, nil
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
	_, on, err := a.setFlag(r, "locked", a.Accounts.SetLocked)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"locked": on}, nil
}
