package fedapi

import (
	"encoding/json"
	"runtime/debug"
	"time"

	"luxchat/internal/config"
	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
)

// serverVersion is the module version of the binary, "dev" for builds
// without one.
var serverVersion = func() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}()

// GET /_matrix/federation/v1/version
func (a *API) version(*httputil.Request) (any, error) {
	return map[string]any{"server": map[string]string{"name": "luxchat", "version": serverVersion}}, nil
}

// GET /.well-known/matrix/server
func wellKnownServer(cfg *config.Config) (any, error) {
	if cfg.Federation.WellKnownServer == "" {
		return nil, errcode.NotFound("no server delegation")
	}
	return map[string]string{"m.server": cfg.Federation.WellKnownServer}, nil
}

// GET /_matrix/key/v2/server
func (a *API) serverKeys(*httputil.Request) (any, error) {
	raw, err := a.Keys.OwnResponse()
	if err != nil {
		return nil, err
	}
	return json.RawMessage(raw), nil
}

type queryCriteria struct {
	MinimumValidUntilTS *int64 `json:"minimum_valid_until_ts"`
}

// POST /_matrix/key/v2/query
func (a *API) queryKeys(r *httputil.Request) (any, error) {
	var req struct {
		ServerKeys map[string]map[string]queryCriteria `json:"server_keys"`
	}
	if err := r.ReadJSON(&req); err != nil {
		return nil, err
	}
	if req.ServerKeys == nil {
		return nil, errcode.BadJSON("server_keys is required")
	}
	if len(req.ServerKeys) > 100 {
		return nil, errcode.InvalidParam("too many servers in one query")
	}
	out := []json.RawMessage{}
	for server, keys := range req.ServerKeys {
		if id.ValidServerName(server) != nil {
			continue
		}
		// The response must be valid until the latest time asked for.
		minTS := time.Now().UnixMilli()
		for _, c := range keys {
			if c.MinimumValidUntilTS != nil && *c.MinimumValidUntilTS > minTS {
				minTS = *c.MinimumValidUntilTS
			}
		}
		raw, err := a.Keys.Query(r.Context(), server, minTS)
		if err != nil {
			return nil, err
		}
		if raw != nil {
			out = append(out, raw)
		}
	}
	return map[string]any{"server_keys": out}, nil
}

// GET /_matrix/key/v2/query/{serverName}
func (a *API) queryServerKeys(r *httputil.Request) (any, error) {
	server := r.PathValue("serverName")
	if id.ValidServerName(server) != nil {
		return nil, errcode.InvalidParam("invalid server name")
	}
	minTS := time.Now().UnixMilli()
	if v := r.URL.Query().Get("minimum_valid_until_ts"); v != "" {
		n, err := httputil.ParseQueryInt("minimum_valid_until_ts", v, 0)
		if err != nil {
			return nil, err
		}
		minTS = max(minTS, n)
	}
	raw, err := a.Keys.Query(r.Context(), server, minTS)
	if err != nil {
		return nil, err
	}
	out := []json.RawMessage{}
	if raw != nil {
		out = append(out, raw)
	}
	return map[string]any{"server_keys": out}, nil
}

// GET /_matrix/federation/v1/query/profile
func (a *API) queryProfile(r *httputil.Request) (any, error) {
	q := r.URL.Query()
	userID, field := q.Get("user_id"), q.Get("field")
	if userID == "" {
		return nil, errcode.MissingParam("user_id is required")
	}
	switch field {
	case "", "displayname", "avatar_url":
	default:
		return nil, errcode.InvalidParam("unknown profile field")
	}
	u, err := id.ParseUserID(userID)
	if err != nil {
		return nil, errcode.InvalidParam("invalid user_id")
	}
	if string(u.Server()) != a.Config.ServerName {
		return nil, errcode.InvalidParam("user is not local to this server")
	}
	if a.Directory != nil {
		if err := a.Directory.MayServerViewProfile(r.Context(), r.Origin, userID); err != nil {
			return nil, err
		}
	}
	p, err := a.Accounts.Profile(r.Context(), userID)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	if p.DisplayName != "" && field != "avatar_url" {
		out["displayname"] = p.DisplayName
	}
	if p.AvatarURL != "" && field != "displayname" {
		out["avatar_url"] = p.AvatarURL
	}
	return out, nil
}
