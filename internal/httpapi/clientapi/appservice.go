package clientapi

import (
	"encoding/json"
	"net/http"
	"net/url"

	"luxchat/internal/accounts"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// appServiceCaller returns the application service of a request made
// with its as_token, or the spec's 401 for /register and /login.
func appServiceCaller(r *httputil.Request) (string, error) {
	if r.Session != nil && r.Session.AppService != "" {
		return r.Session.AppService, nil
	}
	if r.HasToken() {
		return "", errcode.UnknownToken("%s needs an application service's as_token", "m.login.application_service")
	}
	return "", errcode.MissingToken("%s needs an application service's as_token", "m.login.application_service")
}

// POST /register with type m.login.application_service.
func (a *API) registerAppServiceUser(r *httputil.Request, req accounts.AppServiceRegisterRequest) (any, error) {
	asID, err := appServiceCaller(r)
	if err != nil {
		return nil, err
	}
	if req.Username == "" {
		return nil, errcode.MissingParam("username is required")
	}
	userID, err := a.Accounts.AppServiceUserID(req.Username)
	if err != nil {
		return nil, err
	}
	if err := a.AppServices.CheckUserClaim(asID, userID); err != nil {
		return nil, err
	}
	res, err := a.Accounts.RegisterAppServiceUser(r.Context(), req)
	if err != nil {
		return nil, err
	}
	return a.loginResponse(res), nil
}

// POST /login with type m.login.application_service.
func (a *API) loginAppServiceUser(r *httputil.Request, req accounts.LoginRequest) (any, error) {
	asID, err := appServiceCaller(r)
	if err != nil {
		return nil, err
	}
	userID, err := a.Accounts.ResolveUserID(req.Identifier, req.User)
	if err != nil {
		return nil, err
	}
	if reg := a.AppServices.Get(asID); reg == nil || !reg.IsInterestedInUser(userID) {
		return nil, errcode.Exclusive("%s is not in the application service's user namespaces", userID)
	}
	res, err := a.Accounts.LoginAppService(r.Context(), userID, req)
	if err != nil {
		return nil, err
	}
	return a.loginResponse(res), nil
}

// POST /_matrix/client/v1/appservice/{appserviceId}/ping
func (a *API) appservicePing(r *httputil.Request) (any, error) {
	var body struct {
		TransactionID string `json:"transaction_id"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	ms, err := a.AppServices.Ping(r.Context(), r.Session.AppService, r.Var("appserviceId"), body.TransactionID)
	if err != nil {
		return nil, err
	}
	return map[string]int64{"duration_ms": ms}, nil
}

// GET /_matrix/client/v3/thirdparty/protocols
func (a *API) thirdPartyProtocols(r *httputil.Request) (any, error) {
	return a.AppServices.Protocols(r.Context())
}

// GET /_matrix/client/v3/thirdparty/protocol/{protocol}
func (a *API) thirdPartyProtocol(r *httputil.Request) (any, error) {
	return a.AppServices.Protocol(r.Context(), r.Var("protocol"))
}

// thirdPartyLookup serves GET /thirdparty/{location,user}[/{protocol}]:
// the query's fields go to the services as they are.
func (a *API) thirdPartyLookup(kind string, byProtocol bool) httputil.Handler {
	return func(r *httputil.Request) (any, error) {
		fields := url.Values{}
		for k, v := range r.URL.Query() {
			if k != "access_token" && k != "user_id" && k != "device_id" {
				fields[k] = v
			}
		}
		protocol := ""
		if byProtocol {
			protocol = r.Var("protocol")
		} else {
			key := map[string]string{"location": "alias", "user": "userid"}[kind]
			if fields.Get(key) == "" {
				return nil, errcode.MissingParam("%s is required", key)
			}
		}
		items, err := a.AppServices.ThirdPartyLookup(r.Context(), kind, protocol, fields)
		if err != nil {
			return nil, err
		}
		if len(items) == 0 && !byProtocol {
			return nil, errcode.NotFound("no match")
		}
		return &httputil.Response{Status: http.StatusOK, Body: json.RawMessage(mustJSON(items))}, nil
	}
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		return []byte("[]")
	}
	return data
}

// PUT /_matrix/client/v3/directory/list/appservice/{networkId}/{roomId}
func (a *API) putAppServiceRoomVisibility(r *httputil.Request) (any, error) {
	var body struct {
		Visibility string `json:"visibility"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	return struct{}{}, a.AppServices.SetRoomListed(r.Context(), r.Session.AppService, r.Var("networkId"), r.Var("roomId"), body.Visibility)
}
