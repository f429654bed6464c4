package clientapi

import (
	"strings"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/matrix/errcode"
)

// roomAndServers resolves a room id or alias for joining and knocking,
// with the servers to ask when the room is not known here: the
// server_name and via query parameters for a room id, the servers the
// alias's server names for an alias of another server.
func (a *API) roomAndServers(r *httputil.Request, idOrAlias string) (string, []string, error) {
	if strings.HasPrefix(idOrAlias, "#") {
		i := strings.IndexByte(idOrAlias, ':')
		if i < 0 || len(idOrAlias) > 255 {
			return "", nil, errcode.InvalidParam("invalid room alias")
		}
		if idOrAlias[i+1:] != a.Config.ServerName {
			return a.RoomFed.QueryAlias(r.Context(), idOrAlias)
		}
	}
	roomID, err := a.resolveRoom(r, idOrAlias)
	if err != nil {
		return "", nil, err
	}
	q := r.URL.Query()
	servers := append(q["via"], q["server_name"]...)
	if len(servers) > 20 {
		servers = servers[:20]
	}
	return roomID, servers, nil
}
