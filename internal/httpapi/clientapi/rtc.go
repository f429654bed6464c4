package clientapi

import (
	"luxchat/internal/config"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/rtc"
)

const msc4143 = "/_matrix/client/unstable/org.matrix.msc4143"

// rtcRoutes are the MatrixRTC routes: the transports list (MSC4143) and
// the built-in LiveKit token service (the lk-jwt-service contract,
// MSC4195), whose callers authenticate with the OpenID token in the body,
// not an access token. Browsers (Element Call) reach it across origins:
// the router answers the CORS preflight (OPTIONS) of every route.
func (a *API) rtcRoutes() []route {
	const jwt = config.LiveKitServicePath
	return []route{
		{"GET " + msc4143 + "/rtc/transports", user, a.rtcTransports, nil},
		{"POST " + jwt + "/sfu/get", none, a.liveKitSFUGet, limited},
		{"POST " + jwt + "/get_token", none, a.liveKitGetToken, limited},
		{"GET " + jwt + "/healthz", none, a.liveKitHealth, nil},
	}
}

// GET /_matrix/client/unstable/org.matrix.msc4143/rtc/transports
func (a *API) rtcTransports(r *httputil.Request) (any, error) {
	return map[string]any{"rtc_transports": a.RTC.Transports()}, nil
}

// POST /_luxchat/livekit/jwt/sfu/get
func (a *API) liveKitSFUGet(r *httputil.Request) (any, error) {
	var req rtc.LegacyRequest
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	return a.RTC.SFUGet(r.Context(), &req)
}

// POST /_luxchat/livekit/jwt/get_token
func (a *API) liveKitGetToken(r *httputil.Request) (any, error) {
	var req rtc.TokenRequest
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	return a.RTC.GetToken(r.Context(), &req)
}

// GET /_luxchat/livekit/jwt/healthz, as lk-jwt-service answers it.
func (a *API) liveKitHealth(r *httputil.Request) (any, error) {
	return map[string]any{}, nil
}
