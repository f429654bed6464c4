package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	ts "luxchat/internal/testserver"
)

const synapseAdmin = "/_synapse/admin"

// hasFields fails unless the JSON object holds every field Synapse's
// documentation shows in its example of the answer.
func hasFields(t *testing.T, what string, obj map[string]any, fields ...string) {
	t.Helper()
	for _, f := range fields {
		if _, ok := obj[f]; !ok {
			t.Errorf("%s: field %q missing from %v", what, f, obj)
		}
	}
}

// Synapse's documented fields of a user in the list and of one user.
var (
	listUserFields = []string{"name", "is_guest", "admin", "user_type", "deactivated", "erased", "shadow_banned", "displayname",
		"avatar_url", "creation_ts", "locked"}
	userFields = append(slices.Clone(listUserFields), "threepids", "last_seen_ts", "appservice_id", "consent_server_notice_sent",
		"consent_version", "consent_ts", "external_ids", "suspended")
)

func TestAdminUsers(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		eve := s.Register(t, "eve")
		server := s.Config.ServerName
		carol := "@carol:" + server

		// Create (201) with the documented body, then modify (200).
		r := admin.Do("PUT", synapseAdmin+"/v2/users/"+esc(carol), map[string]any{"password": "carol's long password", "displayname": "Carol Marigold",
			"avatar_url": "mxc://example.com/abcde12345", "threepids": []map[string]string{{"medium": "email", "address": "carol@example.com"}},
			"external_ids": []map[string]string{{"auth_provider": "example", "external_id": "12345"}}, "admin": false, "user_type": "bot"})
		if r.Status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		var u map[string]any
		_ = r.JSON(&u)
		hasFields(t, "created user", u, userFields...)
		if u["name"] != carol || u["displayname"] != "Carol Marigold" || u["user_type"] != "bot" || u["avatar_url"] != "mxc://example.com/abcde12345" {
			t.Fatalf("created user: %s", r.Body)
		}
		pids, _ := u["threepids"].([]any)
		if len(pids) != 1 {
			t.Fatalf("threepids: %s", r.Body)
		}
		hasFields(t, "threepid", pids[0].(map[string]any), "medium", "address", "added_at", "validated_at")
		ext, _ := u["external_ids"].([]any)
		if len(ext) != 1 || ext[0].(map[string]any)["auth_provider"] != "example" || ext[0].(map[string]any)["external_id"] != "12345" {
			t.Fatalf("external_ids: %s", r.Body)
		}
		// The new account logs in with its password.
		carolC := s.Anonymous(t)
		var login struct {
			AccessToken string `json:"access_token"`
			DeviceID    string `json:"device_id"`
		}
		carolC.MustDo("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
			"identifier": map[string]string{"type": "m.id.user", "user": carol}, "password": "carol's long password"}, &login)
		carolC.UserID, carolC.Token, carolC.DeviceID = carol, login.AccessToken, login.DeviceID

		r = admin.Do("PUT", synapseAdmin+"/v2/users/"+esc(carol), map[string]any{"displayname": "Carol M.", "user_type": nil, "admin": true})
		if r.Status != http.StatusOK {
			t.Fatalf("modify: %d %s", r.Status, r.Body)
		}
		_ = r.JSON(&u)
		if u["displayname"] != "Carol M." || u["user_type"] != nil || u["admin"] != true {
			t.Fatalf("modified: %s", r.Body)
		}
		// The profile others see changed too.
		var prof map[string]any
		eve.MustDo("GET", "/_matrix/client/v3/profile/"+esc(carol), nil, &prof)
		if prof["displayname"] != "Carol M." {
			t.Fatalf("profile after modify: %v", prof)
		}
		// A new password logs the devices out unless told not to.
		admin.MustDo("PUT", synapseAdmin+"/v2/users/"+esc(carol), map[string]any{"password": "another long password", "logout_devices": false}, nil)
		carolC.MustDo("GET", "/_matrix/client/v3/account/whoami", nil, nil)
		admin.MustDo("POST", synapseAdmin+"/v1/reset_password/"+esc(carol), map[string]any{"new_password": "a third long password"}, nil)
		if r := carolC.Do("GET", "/_matrix/client/v3/account/whoami", nil); r.Status != http.StatusUnauthorized {
			t.Fatalf("token after reset_password: %d %s", r.Status, r.Body)
		}

		// Bad input: not a user id, another server's, a bad body.
		for _, c := range []struct {
			method, path string
			body         any
			status       int
		}{
			{"GET", "/v2/users/" + esc("carol"), nil, 400},
			{"GET", "/v2/users/" + esc("@carol:elsewhere.test"), nil, 400},
			{"PUT", "/v2/users/" + esc("@Bad Name:"+server), map[string]any{}, 400},
			{"PUT", "/v2/users/" + esc(carol), map[string]any{"user_type": "robot"}, 400},
			{"PUT", "/v2/users/" + esc(carol), map[string]any{"avatar_url": "http://x"}, 400},
			{"PUT", "/v2/users/" + esc(carol), map[string]any{"admin": "yes"}, 400},
			{"PUT", "/v2/users/" + esc(carol), map[string]any{"threepids": []map[string]string{{"medium": "fax", "address": "1"}}}, 400},
			{"PUT", "/v2/users/" + esc(carol), map[string]any{"password": "x"}, 400},
			{"PUT", "/v2/users/" + esc(admin.UserID), map[string]any{"admin": false}, 403},
			{"POST", "/v1/reset_password/" + esc(carol), map[string]any{}, 400},
			{"GET", "/v2/users?limit=-1", nil, 400},
			{"GET", "/v2/users?from=x", nil, 400},
			{"GET", "/v2/users?order_by=password", nil, 400},
			{"GET", "/v2/users?dir=up", nil, 400},
			{"GET", "/v2/users?deactivated=yes", nil, 400},
			{"GET", "/v1/whois/" + esc("@nobody:"+server), nil, 404},
			{"GET", "/v2/users/" + esc("@nobody:"+server), nil, 404},
			{"GET", "/v2/users/" + esc("@nobody:"+server) + "/devices", nil, 404},
			{"GET", "/v1/users/" + esc("@nobody:"+server) + "/joined_rooms", nil, 404},
			{"GET", "/v1/users/" + esc("@nobody:"+server) + "/media", nil, 404},
			{"POST", "/v1/deactivate/" + esc("@nobody:"+server), map[string]any{}, 404},
			{"POST", "/v1/reset_password/" + esc("@nobody:"+server), map[string]any{"new_password": "a long enough one"}, 404},
			{"POST", "/v1/users/" + esc("@nobody:"+server) + "/shadow_ban", nil, 404},
			{"GET", "/v2/users/" + esc(carol) + "/devices/NOPE", nil, 404},
			{"PUT", "/v2/users/" + esc(carol) + "/devices/NOPE", map[string]any{"display_name": "x"}, 404},
			{"POST", "/v2/users/" + esc(carol) + "/delete_devices", map[string]any{}, 400},
			{"GET", "/v1/username_available", nil, 400},
			{"GET", "/v1/username_available?username=" + esc("bad name"), nil, 400},
			{"GET", "/v1/registration_tokens/nope", nil, 404},
			{"PUT", "/v1/registration_tokens/nope", map[string]any{}, 404},
			{"DELETE", "/v1/registration_tokens/nope", nil, 404},
			{"POST", "/v1/registration_tokens/new", map[string]any{"token": "bad token"}, 400},
			{"POST", "/v1/registration_tokens/new", map[string]any{"length": 65}, 400},
			{"GET", "/v1/registration_tokens?valid=maybe", nil, 400},
			// No impersonation, for any user.
			{"POST", "/v1/users/" + esc(carol) + "/login", map[string]any{}, 403},
		} {
			if r := admin.Do(c.method, synapseAdmin+c.path, c.body); r.Status != c.status {
				t.Errorf("%s %s: %d %s, want %d", c.method, c.path, r.Status, r.Body, c.status)
			}
		}

		// username_available works with registration closed or open.
		var avail map[string]bool
		admin.MustDo("GET", synapseAdmin+"/v1/username_available?username=newbie", nil, &avail)
		if !avail["available"] {
			t.Fatal("newbie not available")
		}
		if r := admin.Do("GET", synapseAdmin+"/v1/username_available?username=carol", nil); r.Status != 400 || r.ErrCode() != "M_USER_IN_USE" {
			t.Fatalf("taken: %d %s", r.Status, r.Body)
		}

		// Devices: list, get, rename, delete one, delete many; whois.
		carolC = adminLoginAs(t, s, carol, "a third long password")
		second := adminLoginAs(t, s, carol, "a third long password")
		carolC.MustDo("GET", "/_matrix/client/v3/account/whoami", nil, nil) // seen
		var devs struct {
			Devices []map[string]any `json:"devices"`
			Total   int              `json:"total"`
		}
		admin.MustDo("GET", synapseAdmin+"/v2/users/"+esc(carol)+"/devices", nil, &devs)
		if devs.Total != 2 || len(devs.Devices) != 2 {
			t.Fatalf("devices: %+v", devs)
		}
		hasFields(t, "device", devs.Devices[0], "device_id", "last_seen_ip", "last_seen_user_agent", "last_seen_ts", "user_id", "dehydrated")
		admin.MustDo("PUT", synapseAdmin+"/v2/users/"+esc(carol)+"/devices/"+esc(carolC.DeviceID), map[string]any{"display_name": "My other phone"}, nil)
		var dev map[string]any
		admin.MustDo("GET", synapseAdmin+"/v2/users/"+esc(carol)+"/devices/"+esc(carolC.DeviceID), nil, &dev)
		if dev["display_name"] != "My other phone" || dev["user_id"] != carol {
			t.Fatalf("device: %v", dev)
		}
		var whois struct {
			UserID  string `json:"user_id"`
			Devices map[string]struct {
				Sessions []struct {
					Connections []map[string]any `json:"connections"`
				} `json:"sessions"`
			} `json:"devices"`
		}
		admin.MustDo("GET", synapseAdmin+"/v1/whois/"+esc(carol), nil, &whois)
		if whois.UserID != carol || len(whois.Devices) != 2 || len(whois.Devices[carolC.DeviceID].Sessions) != 1 {
			t.Fatalf("whois: %+v", whois)
		}
		// The spec's whois: an administrator, or the user about themself.
		admin.MustDo("GET", "/_matrix/client/v3/admin/whois/"+esc(carol), nil, nil)
		carolC.MustDo("GET", "/_matrix/client/v3/admin/whois/"+esc(carol), nil, nil)
		if r := eve.Do("GET", "/_matrix/client/v3/admin/whois/"+esc(carol), nil); r.Status != 403 {
			t.Fatalf("whois of another by a non-admin: %d", r.Status)
		}
		admin.MustDo("DELETE", synapseAdmin+"/v2/users/"+esc(carol)+"/devices/"+esc(second.DeviceID), nil, nil)
		if r := second.Do("GET", "/_matrix/client/v3/account/whoami", nil); r.Status != http.StatusUnauthorized {
			t.Fatalf("deleted device's token: %d", r.Status)
		}
		admin.MustDo("POST", synapseAdmin+"/v2/users/"+esc(carol)+"/delete_devices", map[string]any{"devices": []string{carolC.DeviceID}}, nil)
		admin.MustDo("GET", synapseAdmin+"/v2/users/"+esc(carol)+"/devices", nil, &devs)
		if devs.Total != 0 {
			t.Fatalf("devices left: %+v", devs)
		}

		// Joined rooms and media.
		carolC = adminLoginAs(t, s, carol, "a third long password")
		room := carolC.CreateRoom(map[string]any{})
		var joined struct {
			JoinedRooms []string `json:"joined_rooms"`
			Total       int      `json:"total"`
		}
		admin.MustDo("GET", synapseAdmin+"/v1/users/"+esc(carol)+"/joined_rooms", nil, &joined)
		if joined.Total != 1 || len(joined.JoinedRooms) != 1 || joined.JoinedRooms[0] != room {
			t.Fatalf("joined_rooms: %+v", joined)
		}
		for i := range 3 {
			r := carolC.Do("POST", "/_matrix/media/v3/upload?filename="+fmt.Sprintf("f%d.txt", i), []byte(fmt.Sprintf("content %d", i)))
			if r.Status != 200 {
				t.Fatalf("upload: %d %s", r.Status, r.Body)
			}
		}
		var media struct {
			Media     []map[string]any `json:"media"`
			NextToken *int             `json:"next_token"`
			Total     int              `json:"total"`
		}
		admin.MustDo("GET", synapseAdmin+"/v1/users/"+esc(carol)+"/media?limit=2", nil, &media)
		if media.Total != 3 || len(media.Media) != 2 || media.NextToken == nil || *media.NextToken != 2 {
			t.Fatalf("media page 1: %+v", media)
		}
		hasFields(t, "media", media.Media[0], "created_ts", "last_access_ts", "media_id", "media_length", "media_type", "quarantined_by",
			"safe_from_quarantine", "upload_name")
		if media.Media[0]["upload_name"] != "f2.txt" { // newest first by default
			t.Fatalf("media order: %v", media.Media)
		}
		media.NextToken = nil
		admin.MustDo("GET", synapseAdmin+"/v1/users/"+esc(carol)+"/media?limit=2&from=2", nil, &media)
		if len(media.Media) != 1 || media.NextToken != nil || media.Media[0]["quarantined_by"] != nil {
			t.Fatalf("media page 2: %+v", media)
		}
		// Quarantined media names who quarantined it.
		oldest := media.Media[0]["media_id"].(string)
		admin.MustDo("POST", synapseAdmin+"/v1/media/quarantine/"+server+"/"+oldest, map[string]any{}, nil)
		admin.MustDo("GET", synapseAdmin+"/v1/users/"+esc(carol)+"/media?order_by=quarantined_by&dir=b&limit=1", nil, &media)
		if media.Media[0]["media_id"] != oldest || media.Media[0]["quarantined_by"] != admin.UserID {
			t.Fatalf("quarantined media: %+v", media.Media)
		}

		// Deactivation, with erase: the account is gone for the client API
		// and marked erased, its profile cleared.
		admin.MustDo("POST", synapseAdmin+"/v1/deactivate/"+esc(carol), map[string]any{"erase": true}, nil)
		if r := carolC.Do("GET", "/_matrix/client/v3/account/whoami", nil); r.Status != http.StatusUnauthorized {
			t.Fatalf("deactivated user's token: %d", r.Status)
		}
		admin.MustDo("GET", synapseAdmin+"/v2/users/"+esc(carol), nil, &u)
		if u["deactivated"] != true || u["erased"] != true || u["displayname"] != nil || u["avatar_url"] != nil || len(u["threepids"].([]any)) != 0 {
			t.Fatalf("after deactivate with erase: %v", u)
		}
		admin.MustDo("GET", synapseAdmin+"/v1/users/"+esc(carol)+"/joined_rooms", nil, &joined)
		if joined.Total != 0 {
			t.Fatalf("deactivated user still in rooms: %+v", joined)
		}
		if r := admin.Do("POST", synapseAdmin+"/v1/deactivate/"+esc(admin.UserID), map[string]any{}); r.Status != 403 {
			t.Fatalf("self-deactivation: %d", r.Status)
		}
		// Reactivation with a new password.
		admin.MustDo("PUT", synapseAdmin+"/v2/users/"+esc(carol), map[string]any{"deactivated": false, "password": "back again, long enough"}, nil)
		adminLoginAs(t, s, carol, "back again, long enough")
	})
}

// adminLoginAs logs a user in with a password and returns its client.
func adminLoginAs(t testing.TB, s *ts.Server, userID, password string) *ts.Client {
	t.Helper()
	c := s.Anonymous(t)
	var login struct {
		AccessToken string `json:"access_token"`
		DeviceID    string `json:"device_id"`
	}
	c.MustDo("POST", "/_matrix/client/v3/login", map[string]any{"type": "m.login.password",
		"identifier": map[string]string{"type": "m.id.user", "user": userID}, "password": password}, &login)
	c.UserID, c.Token, c.DeviceID = userID, login.AccessToken, login.DeviceID
	return c
}

func TestAdminUserList(t *testing.T) {
	forEachEngine(t, func(t *testing.T, s *ts.Server) {
		admin := makeAdmin(t, s, s.Register(t, "admin"))
		server := s.Config.ServerName
		names := []string{"anna", "bert", "cleo", "dora", "emil", "fred", "gina"}
		for i, n := range names {
			if r := admin.Do("PUT", synapseAdmin+"/v2/users/"+esc("@"+n+":"+server), map[string]any{"password": "long enough password",
				"displayname": fmt.Sprintf("Z %c%s", 'G'-i, n)}); r.Status != http.StatusCreated {
				t.Fatalf("create %s: %d %s", n, r.Status, r.Body)
			}
		}
		admin.MustDo("POST", synapseAdmin+"/v1/deactivate/"+esc("@dora:"+server), map[string]any{}, nil)
		admin.MustDo("PUT", synapseAdmin+"/v2/users/"+esc("@emil:"+server), map[string]any{"locked": true}, nil)
		admin.MustDo("PUT", synapseAdmin+"/v2/users/"+esc("@fred:"+server), map[string]any{"user_type": "bot"}, nil)

		type page struct {
			Users     []map[string]any `json:"users"`
			NextToken *string          `json:"next_token"`
			Total     int              `json:"total"`
		}
		get := func(q string) page {
			var p page
			admin.MustDo("GET", synapseAdmin+"/v2/users?"+q, nil, &p)
			return p
		}
		ids := func(p page) []string {
			var out []string
			for _, u := range p.Users {
				out = append(out, u["name"].(string))
			}
			return out
		}
		// Default: active, unlocked, by user id; the admin is among them.
		p := get("limit=3")
		if p.Total != 6 || len(p.Users) != 3 || p.NextToken == nil || *p.NextToken != "3" {
			t.Fatalf("page 1: %+v", p)
		}
		hasFields(t, "listed user", p.Users[0], listUserFields...)
		all := ids(p)
		for p.NextToken != nil {
			p = get("limit=3&from=" + *p.NextToken)
			all = append(all, ids(p)...)
		}
		if len(all) != 6 || !slices.IsSorted(all) {
			t.Fatalf("paged: %v", all)
		}
		// Filters.
		if p := get("deactivated=true"); p.Total != 7 {
			t.Fatalf("deactivated=true: %d", p.Total)
		}
		if p := get("locked=true&deactivated=true"); p.Total != 8 {
			t.Fatalf("locked and deactivated: %d", p.Total)
		}
		if p := get("admins=true"); p.Total != 1 || ids(p)[0] != admin.UserID {
			t.Fatalf("admins=true: %v", ids(p))
		}
		if p := get("admins=false"); p.Total != 5 {
			t.Fatalf("admins=false: %d", p.Total)
		}
		if p := get("name=ert"); p.Total != 1 || ids(p)[0] != "@bert:"+server {
			t.Fatalf("name=ert: %v", ids(p))
		}
		if p := get("name=" + esc("Z Fb")); p.Total != 1 || ids(p)[0] != "@bert:"+server { // a display name
			t.Fatalf("name by display name: %v", ids(p))
		}
		if p := get("user_id=" + esc("@cl")); p.Total != 1 {
			t.Fatalf("user_id=@cl: %v", ids(p))
		}
		if p := get("not_user_type=bot"); p.Total != 5 {
			t.Fatalf("not_user_type=bot: %d", p.Total)
		}
		if p := get("name=" + esc("%")); p.Total != 0 {
			t.Fatalf("LIKE wildcard not escaped: %v", ids(p))
		}
		// Orders.
		if p := get("order_by=name&dir=b"); !slices.IsSortedFunc(ids(p), func(a, b string) int { return -cmpStr(a, b) }) {
			t.Fatalf("dir=b: %v", ids(p))
		}
		p = get("order_by=displayname&name=Z")
		want := []string{"@gina:" + server, "@fred:" + server, "@cleo:" + server, "@bert:" + server, "@anna:" + server}
		if got := ids(p); !slices.Equal(got, want) {
			t.Fatalf("order_by=displayname: %v, want %v", got, want)
		}
		p = get("order_by=creation_ts&dir=b&limit=1")
		if ids(p)[0] != "@gina:"+server && ids(p)[0] != "@fred:"+server { // created last (same ms possible)
			t.Fatalf("creation_ts desc: %v", ids(p))
		}
		raw, _ := json.Marshal(get("order_by=admin&dir=b&limit=1").Users[0])
		if get("order_by=admin&dir=b&limit=1").Users[0]["admin"] != true {
			t.Fatalf("order_by=admin: %s", raw)
		}
	})
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
