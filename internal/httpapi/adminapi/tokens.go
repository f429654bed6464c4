package adminapi

import (
	"time"

	"luxchat/internal/accounts"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// Registration tokens: the same tokens as registration.mode token and
// `luxchat token` use (m.login.registration_token).

type tokenJSON struct {
	Token       string `json:"token"`
	UsesAllowed *int64 `json:"uses_allowed"`
	Pending     int64  `json:"pending"`
	Completed   int64  `json:"completed"`
	ExpiryTime  *int64 `json:"expiry_time"`
}

func toTokenJSON(t accounts.RegistrationToken) tokenJSON {
	j := tokenJSON{Token: t.Token, UsesAllowed: t.UsesAllowed, Pending: t.Pending, Completed: t.Completed}
	if t.Expiry != nil {
		ms := t.Expiry.UnixMilli()
		j.ExpiryTime = &ms
	}
	return j
}

// GET /_synapse/admin/v1/registration_tokens
func (a *API) listTokens(r *httputil.Request) (any, error) {
	valid, err := queryBool(r, "valid")
	if err != nil {
		return nil, err
	}
	ts, err := a.Accounts.ListRegistrationTokens(r.Context())
	if err != nil {
		return nil, err
	}
	now := a.Accounts.Now()
	out := []tokenJSON{}
	for _, t := range ts {
		if valid == nil || t.Valid(now) == *valid {
			out = append(out, toTokenJSON(t))
		}
	}
	return map[string]any{"registration_tokens": out}, nil
}

// GET /_synapse/admin/v1/registration_tokens/{token}
func (a *API) getToken(r *httputil.Request) (any, error) {
	t, err := a.Accounts.RegistrationTokenInfo(r.Context(), r.Var("token"))
	if err != nil {
		return nil, err
	}
	return toTokenJSON(*t), nil
}

// expiryOf reads an expiry_time in milliseconds.
func expiryOf(ms *int64) (*time.Time, error) {
	if ms == nil {
		return nil, nil
	}
	if *ms <= 0 {
		return nil, errcode.InvalidParam("expiry_time must be a positive timestamp in milliseconds")
	}
	t := time.UnixMilli(*ms)
	return &t, nil
}

// POST /_synapse/admin/v1/registration_tokens/new
func (a *API) newToken(r *httputil.Request) (any, error) {
	var body struct {
		Token       string `json:"token"`
		UsesAllowed *int64 `json:"uses_allowed"`
		ExpiryTime  *int64 `json:"expiry_time"`
		Length      *int   `json:"length"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	length := 16
	if body.Length != nil {
		length = *body.Length
	}
	expiry, err := expiryOf(body.ExpiryTime)
	if err != nil {
		return nil, err
	}
	tok, err := a.Accounts.CreateRegistrationTokenOfLength(r.Context(), body.Token, length, body.UsesAllowed, expiry)
	if err != nil {
		return nil, err
	}
	SetTarget(r, tok)
	t, err := a.Accounts.RegistrationTokenInfo(r.Context(), tok)
	if err != nil {
		return nil, err
	}
	return toTokenJSON(*t), nil
}

// PUT /_synapse/admin/v1/registration_tokens/{token}
func (a *API) putToken(r *httputil.Request) (any, error) {
	var body struct {
		UsesAllowed optionalNull[int64] `json:"uses_allowed"`
		ExpiryTime  optionalNull[int64] `json:"expiry_time"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	u := accounts.TokenUpdate{SetUses: body.UsesAllowed.Set, UsesAllowed: body.UsesAllowed.Value, SetExpiry: body.ExpiryTime.Set}
	var err error
	if u.Expiry, err = expiryOf(body.ExpiryTime.Value); err != nil {
		return nil, err
	}
	t, err := a.Accounts.UpdateRegistrationToken(r.Context(), r.Var("token"), u)
	if err != nil {
		return nil, err
	}
	return toTokenJSON(*t), nil
}

// DELETE /_synapse/admin/v1/registration_tokens/{token}
func (a *API) deleteToken(r *httputil.Request) (any, error) {
	if err := a.Accounts.RevokeRegistrationToken(r.Context(), r.Var("token")); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}
