package clientapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"luxchat/internal/accounts"
	"luxchat/internal/appservice"
	"luxchat/internal/config"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// NewAuthenticator resolves access tokens with the accounts service, for
// the router.
func NewAuthenticator(svc *accounts.Service, as *appservice.Service) httputil.Authenticator {
	return authenticator{svc, as}
}

// authenticator resolves a user's access token, or an application
// service's as_token with the user_id and device_id it acts as
// ("Identity assertion"): one path for every route's auth.
type authenticator struct {
	svc *accounts.Service
	as  *appservice.Service
}

func (a authenticator) Authenticate(ctx context.Context, token string, query url.Values) (*httputil.Session, error) {
	if reg := a.as.ByToken(token); reg != nil {
		deviceID := query.Get("device_id")
		if deviceID == "" {
			deviceID = query.Get("org.matrix.msc3202.device_id")
		}
		c, err := a.as.Masquerade(ctx, reg, query.Get("user_id"), deviceID)
		if err != nil {
			return nil, err
		}
		return &httputil.Session{UserID: c.UserID, DeviceID: c.DeviceID, AppService: reg.ID, NoRateLimit: !reg.RateLimited}, nil
	}
	s, err := a.svc.Authenticate(ctx, token)
	if err != nil {
		return nil, err
	}
	return &httputil.Session{UserID: s.UserID, DeviceID: s.DeviceID, IsAdmin: s.IsAdmin, TokenHash: s.TokenHash,
		Locked: s.Locked, Suspended: s.Suspended, ShadowBanned: s.ShadowBanned}, nil
}

// withUIA turns the domain's *accounts.AuthRequired into the spec's 401
// body: flows, params, session, completed, and errcode/error after a failed
// attempt.
func withUIA(out any, err error) (any, error) {
	var ar *accounts.AuthRequired
	if !errors.As(err, &ar) {
		return out, err
	}
	type flow struct {
		Stages []string `json:"stages"`
	}
	body := map[string]any{"session": ar.Session, "params": ar.Params}
	flows := make([]flow, 0, len(ar.Flows))
	for _, f := range ar.Flows {
		flows = append(flows, flow{Stages: f})
	}
	body["flows"] = flows
	if len(ar.Completed) > 0 {
		body["completed"] = ar.Completed
	}
	if ar.Err != nil {
		body["errcode"], body["error"] = ar.Err.Code, ar.Err.Message
	}
	return &httputil.Response{Status: http.StatusUnauthorized, Body: body}, nil
}

// loginResponse is the body of a successful login or registration.
type loginResponse struct {
	UserID       string `json:"user_id"`
	AccessToken  string `json:"access_token,omitempty"`
	DeviceID     string `json:"device_id,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresInMS  int64  `json:"expires_in_ms,omitempty"`
	HomeServer   string `json:"home_server"` // deprecated, still read by old clients
}

func (a *API) loginResponse(res *accounts.LoginResult) loginResponse {
	return loginResponse{UserID: res.UserID, AccessToken: res.AccessToken, DeviceID: res.DeviceID,
		RefreshToken: res.RefreshToken, ExpiresInMS: res.ExpiresInMS, HomeServer: a.Config.ServerName}
}

// caller returns the authenticated user of an optional-auth route.
func caller(r *httputil.Request) accounts.Caller {
	if r.Session == nil {
		return accounts.Caller{}
	}
	return accounts.Caller{UserID: r.Session.UserID, DeviceID: r.Session.DeviceID}
}

// GET /_matrix/client/v3/register/available
func (a *API) registerAvailable(r *httputil.Request) (any, error) {
	if a.Config.Registration.Mode == config.RegistrationClosed {
		// Nobody can register, and the answer would tell who exists;
		// 403 as POST /register answers when registration is off.
		return nil, errcode.Forbidden("registration is disabled on this server")
	}
	username := r.Query("username")
	if username == "" {
		return nil, errcode.MissingParam("username is required")
	}
	localpart, err := a.Accounts.CheckUsername(r.Context(), username)
	if err != nil {
		return nil, err
	}
	if err := a.AppServices.CheckUserClaim("", "@"+localpart+":"+a.Config.ServerName); err != nil {
		return nil, err
	}
	return map[string]bool{"available": true}, nil
}

// POST /_matrix/client/v3/register
func (a *API) register(r *httputil.Request) (any, error) {
	req := accounts.RegisterRequest{IP: r.ClientIP()}
	switch r.Query("kind") {
	case "", "user":
	case "guest":
		req.Guest = true
	default:
		return nil, errcode.InvalidParam("kind must be user or guest")
	}
	var body struct {
		Type                     string          `json:"type"`
		Auth                     json.RawMessage `json:"auth"`
		Username                 string          `json:"username"`
		Password                 string          `json:"password"`
		DeviceID                 string          `json:"device_id"`
		InitialDeviceDisplayName string          `json:"initial_device_display_name"`
		InhibitLogin             bool            `json:"inhibit_login"`
		RefreshToken             bool            `json:"refresh_token"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.Type == appservice.LoginType {
		return a.registerAppServiceUser(r, accounts.AppServiceRegisterRequest{Username: body.Username, DeviceID: body.DeviceID,
			InitialDeviceDisplayName: body.InitialDeviceDisplayName, InhibitLogin: body.InhibitLogin, RefreshToken: body.RefreshToken, IP: r.ClientIP()})
	}
	if body.Username != "" {
		if err := a.AppServices.CheckUserClaim("", "@"+strings.ToLower(body.Username)+":"+a.Config.ServerName); err != nil {
			return nil, err
		}
	}
	req.Auth, req.Username, req.Password = body.Auth, body.Username, body.Password
	req.DeviceID, req.InitialDeviceDisplayName = body.DeviceID, body.InitialDeviceDisplayName
	req.InhibitLogin, req.RefreshToken = body.InhibitLogin, body.RefreshToken
	res, err := a.Accounts.Register(r.Context(), req)
	if err != nil {
		return withUIA(nil, err)
	}
	return a.loginResponse(res), nil
}

// GET /_matrix/client/v1/register/m.login.registration_token/validity
func (a *API) registrationTokenValidity(r *httputil.Request) (any, error) {
	token := r.Query("token")
	if token == "" {
		return nil, errcode.MissingParam("token is required")
	}
	ok, err := a.Accounts.RegistrationTokenValid(r.Context(), token)
	if err != nil {
		return nil, err
	}
	return map[string]bool{"valid": ok}, nil
}

// GET /_synapse/admin/v1/register
func (a *API) sharedSecretNonce(r *httputil.Request) (any, error) {
	nonce, err := a.Accounts.NewRegistrationNonce(r.Context())
	if err != nil {
		return nil, err
	}
	return map[string]string{"nonce": nonce}, nil
}

// POST /_synapse/admin/v1/register
func (a *API) sharedSecretRegister(r *httputil.Request) (any, error) {
	if !a.Accounts.SharedSecretEnabled() {
		return nil, errcode.Unrecognized("shared-secret registration is not enabled")
	}
	var body struct {
		Nonce                    string `json:"nonce"`
		Username                 string `json:"username"`
		DisplayName              string `json:"displayname"`
		Password                 string `json:"password"`
		Admin                    bool   `json:"admin"`
		UserType                 string `json:"user_type"`
		MAC                      string `json:"mac"`
		InhibitLogin             bool   `json:"inhibit_login"`
		DeviceID                 string `json:"device_id"`
		InitialDeviceDisplayName string `json:"initial_device_display_name"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	res, err := a.Accounts.RegisterWithSharedSecret(r.Context(), accounts.SharedSecretRequest{
		Nonce: body.Nonce, Username: body.Username, Password: body.Password, DisplayName: body.DisplayName,
		Admin: body.Admin, UserType: body.UserType, MAC: body.MAC, InhibitLogin: body.InhibitLogin,
		DeviceID: body.DeviceID, InitialDeviceDisplayName: body.InitialDeviceDisplayName, IP: r.ClientIP(),
	})
	if err != nil {
		return nil, err
	}
	return a.loginResponse(res), nil
}

// POST /_matrix/client/v3/login
func (a *API) login(r *httputil.Request) (any, error) {
	var body struct {
		Type                     string               `json:"type"`
		Identifier               *accounts.Identifier `json:"identifier"`
		User                     string               `json:"user"`
		Medium                   string               `json:"medium"`
		Address                  string               `json:"address"`
		Password                 string               `json:"password"`
		Token                    string               `json:"token"`
		DeviceID                 string               `json:"device_id"`
		InitialDeviceDisplayName string               `json:"initial_device_display_name"`
		RefreshToken             bool                 `json:"refresh_token"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.Type == "" {
		return nil, errcode.MissingParam("type is required")
	}
	if body.Type == appservice.LoginType {
		return a.loginAppServiceUser(r, accounts.LoginRequest{Identifier: body.Identifier, User: body.User, DeviceID: body.DeviceID,
			InitialDeviceDisplayName: body.InitialDeviceDisplayName, RefreshToken: body.RefreshToken, IP: r.ClientIP()})
	}
	res, err := a.Accounts.Login(r.Context(), accounts.LoginRequest{
		Type: body.Type, Identifier: body.Identifier, User: body.User, Medium: body.Medium, Address: body.Address,
		Password: body.Password, Token: body.Token, DeviceID: body.DeviceID, InitialDeviceDisplayName: body.InitialDeviceDisplayName,
		RefreshToken: body.RefreshToken, IP: r.ClientIP(),
	})
	if err != nil {
		return nil, err
	}
	return a.loginResponse(res), nil
}

// POST /_matrix/client/v3/refresh
func (a *API) refresh(r *httputil.Request) (any, error) {
	var body struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.RefreshToken == "" {
		return nil, errcode.MissingParam("refresh_token is required")
	}
	t, err := a.Accounts.Refresh(r.Context(), body.RefreshToken)
	if err != nil {
		return nil, err
	}
	return struct {
		AccessToken  string `json:"access_token"`
		RefreshToken string `json:"refresh_token"`
		ExpiresInMS  int64  `json:"expires_in_ms,omitempty"`
	}{t.AccessToken, t.RefreshToken, t.ExpiresInMS}, nil
}

// POST /_matrix/client/v3/logout
func (a *API) logout(r *httputil.Request) (any, error) {
	return struct{}{}, a.Accounts.Logout(r.Context(), r.Session.UserID, r.Session.DeviceID)
}

// POST /_matrix/client/v3/logout/all
func (a *API) logoutAll(r *httputil.Request) (any, error) {
	return struct{}{}, a.Accounts.LogoutAll(r.Context(), r.Session.UserID)
}

// GET /_matrix/client/v3/account/whoami
func (a *API) whoami(r *httputil.Request) (any, error) {
	return struct {
		UserID   string `json:"user_id"`
		DeviceID string `json:"device_id,omitempty"`
		IsGuest  bool   `json:"is_guest"`
	}{r.Session.UserID, r.Session.DeviceID, false}, nil
}

// POST /_matrix/client/v3/account/password
func (a *API) changePassword(r *httputil.Request) (any, error) {
	var body struct {
		NewPassword   string          `json:"new_password"`
		LogoutDevices *bool           `json:"logout_devices"`
		Auth          json.RawMessage `json:"auth"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.NewPassword == "" {
		return nil, errcode.MissingParam("new_password is required")
	}
	logout := body.LogoutDevices == nil || *body.LogoutDevices
	return withUIA(struct{}{}, a.Accounts.ChangePassword(r.Context(), caller(r), body.NewPassword, logout, body.Auth))
}

// POST /_matrix/client/v3/account/deactivate
func (a *API) deactivate(r *httputil.Request) (any, error) {
	var body struct {
		Auth     json.RawMessage `json:"auth"`
		IDServer string          `json:"id_server"`
		Erase    bool            `json:"erase"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	// No third-party identifiers are ever bound, so unbinding succeeds.
	return withUIA(map[string]string{"id_server_unbind_result": "success"}, a.Accounts.Deactivate(r.Context(), caller(r), body.Auth, body.Erase))
}

type deviceJSON struct {
	DeviceID    string `json:"device_id"`
	DisplayName string `json:"display_name,omitempty"`
	LastSeenIP  string `json:"last_seen_ip,omitempty"`
	LastSeenTS  int64  `json:"last_seen_ts,omitempty"`
}

func toDeviceJSON(d accounts.Device) deviceJSON {
	return deviceJSON{DeviceID: d.DeviceID, DisplayName: d.DisplayName, LastSeenIP: d.LastSeenIP, LastSeenTS: d.LastSeenTS}
}

// GET /_matrix/client/v3/devices
func (a *API) listDevices(r *httputil.Request) (any, error) {
	ds, err := a.Accounts.Devices(r.Context(), r.Session.UserID)
	if err != nil {
		return nil, err
	}
	out := make([]deviceJSON, 0, len(ds))
	for _, d := range ds {
		out = append(out, toDeviceJSON(d))
	}
	return map[string]any{"devices": out}, nil
}

// GET /_matrix/client/v3/devices/{deviceId}
func (a *API) getDevice(r *httputil.Request) (any, error) {
	d, err := a.Accounts.Device(r.Context(), r.Session.UserID, r.Var("deviceId"))
	if err != nil {
		return nil, err
	}
	return toDeviceJSON(*d), nil
}

// PUT /_matrix/client/v3/devices/{deviceId}
func (a *API) updateDevice(r *httputil.Request) (any, error) {
	var body struct {
		DisplayName *string `json:"display_name"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if r.Session.AppService != "" {
		// MSC4190: an application service creates its users' devices.
		name := ""
		if body.DisplayName != nil {
			name = *body.DisplayName
		}
		created, err := a.Accounts.CreateAppServiceDevice(r.Context(), r.Session.UserID, r.Var("deviceId"), name)
		if err != nil || created {
			return struct{}{}, err
		}
	}
	if body.DisplayName == nil {
		// Nothing to change, but the device must exist.
		_, err := a.Accounts.Device(r.Context(), r.Session.UserID, r.Var("deviceId"))
		return struct{}{}, err
	}
	return struct{}{}, a.Accounts.RenameDevice(r.Context(), r.Session.UserID, r.Var("deviceId"), *body.DisplayName)
}

// DELETE /_matrix/client/v3/devices/{deviceId}
func (a *API) deleteDevice(r *httputil.Request) (any, error) {
	var body struct {
		Auth json.RawMessage `json:"auth"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if r.Session.AppService != "" {
		// Application services delete devices without user-interactive auth.
		return struct{}{}, a.Accounts.DeleteDevicesNoAuth(r.Context(), r.Session.UserID, []string{r.Var("deviceId")})
	}
	return withUIA(struct{}{}, a.Accounts.DeleteDevices(r.Context(), r.Session.UserID, []string{r.Var("deviceId")}, body.Auth))
}

// POST /_matrix/client/v3/delete_devices
func (a *API) deleteDevices(r *httputil.Request) (any, error) {
	var body struct {
		Devices []string        `json:"devices"`
		Auth    json.RawMessage `json:"auth"`
	}
	if err := r.ReadJSON(&body); err != nil {
		return nil, err
	}
	if body.Devices == nil {
		return nil, errcode.MissingParam("devices is required")
	}
	if r.Session.AppService != "" {
		return struct{}{}, a.Accounts.DeleteDevicesNoAuth(r.Context(), r.Session.UserID, body.Devices)
	}
	return withUIA(struct{}{}, a.Accounts.DeleteDevices(r.Context(), r.Session.UserID, body.Devices, body.Auth))
}

// GET /_matrix/client/v3/profile/{userId}
func (a *API) getProfile(r *httputil.Request) (any, error) {
	if err := a.mayViewProfile(r, r.Var("userId")); err != nil {
		return nil, err
	}
	p, err := a.profileAskingAppServices(r)
	if err != nil {
		return nil, err
	}
	return struct {
		DisplayName string `json:"displayname,omitempty"`
		AvatarURL   string `json:"avatar_url,omitempty"`
	}{p.DisplayName, p.AvatarURL}, nil
}

// GET /_matrix/client/v3/profile/{userId}/{displayname,avatar_url}
func (a *API) getProfileField(field string) httputil.Handler {
	return func(r *httputil.Request) (any, error) {
		if err := a.mayViewProfile(r, r.Var("userId")); err != nil {
			return nil, err
		}
		p, err := a.profileAskingAppServices(r)
		if err != nil {
			return nil, err
		}
		v := p.DisplayName
		if field == accounts.FieldAvatarURL {
			v = p.AvatarURL
		}
		if v == "" {
			return nil, errcode.NotFound("no %s set", field)
		}
		return map[string]string{field: v}, nil
	}
}

// PUT /_matrix/client/v3/profile/{userId}/{displayname,avatar_url}
func (a *API) setProfileField(field string) httputil.Handler {
	return func(r *httputil.Request) (any, error) {
		var body map[string]json.RawMessage
		if err := r.ReadJSON(&body); err != nil {
			return nil, err
		}
		raw, ok := body[field]
		if !ok {
			return nil, errcode.MissingParam("%s is required", field)
		}
		// null clears the field, as an empty string does.
		var v *string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, errcode.BadJSON("%s must be a string", field)
		}
		value := ""
		if v != nil {
			value = *v
		}
		return struct{}{}, a.Accounts.SetProfileField(r.Context(), r.Session.UserID, r.Var("userId"), field, value)
	}
}

// DELETE /_matrix/client/v3/profile/{userId}/{displayname,avatar_url}
func (a *API) deleteProfileField(field string) httputil.Handler {
	return func(r *httputil.Request) (any, error) {
		return struct{}{}, a.Accounts.SetProfileField(r.Context(), r.Session.UserID, r.Var("userId"), field, "")
	}
}

// profileAskingAppServices reads a profile; an unknown local user in an
// application service's namespace is first asked of the service, which
// may create it (GET /_matrix/app/v1/users/{userId}).
func (a *API) profileAskingAppServices(r *httputil.Request) (*accounts.Profile, error) {
	userID := r.Var("userId")
	p, err := a.Accounts.Profile(r.Context(), userID)
	if e, ok := errcode.As(err); ok && e.Code == "M_NOT_FOUND" && strings.HasSuffix(userID, ":"+a.Config.ServerName) &&
		a.AppServices.QueryUser(r.Context(), userID) {
		p, err = a.Accounts.Profile(r.Context(), userID)
	}
	return p, err
}
