package rooms

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"slices"
	"strings"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
)

// StateEvent is an initial_state entry.
type StateEvent struct {
	Type     string          `json:"type"`
	StateKey string          `json:"state_key"`
	Content  json.RawMessage `json:"content"`
}

// CreateRequest is the body of POST /createRoom.
type CreateRequest struct {
	Visibility                string          `json:"visibility"`
	RoomAliasName             string          `json:"room_alias_name"`
	Name                      *string         `json:"name"`
	Topic                     *string         `json:"topic"`
	Invite                    []string        `json:"invite"`
	RoomVersion               string          `json:"room_version"`
	CreationContent           json.RawMessage `json:"creation_content"`
	InitialState              []StateEvent    `json:"initial_state"`
	Preset                    string          `json:"preset"`
	IsDirect                  bool            `json:"is_direct"`
	PowerLevelContentOverride json.RawMessage `json:"power_level_content_override"`

	upgrade bool // created by Upgrade: no encryption default, state given
}

// CreateRoom creates a room as the createRoom endpoint describes and
// returns its id. All of the room's first events commit together.
func (s *Service) CreateRoom(ctx context.Context, creator string, req CreateRequest) (string, error) {
	versionID := req.RoomVersion
	if versionID == "" {
		versionID = s.cfg.Rooms.DefaultVersion
	}
	v, ok := roomversion.Get(versionID)
	if !ok {
		return "", errcode.UnsupportedRoomVersion("room version %q is not supported", versionID)
	}
	preset := req.Preset
	switch preset {
	case "":
		preset = "private_chat"
		if req.Visibility == "public" {
			preset = "public_chat"
		}
	case "private_chat", "public_chat", "trusted_private_chat":
	default:
		return "", errcode.InvalidParam("unknown preset %q", preset)
	}
	switch req.Visibility {
	case "", "private", "public":
	default:
		return "", errcode.InvalidParam("visibility must be public or private")
	}
	var alias string
	if req.RoomAliasName != "" {
		if strings.ContainsAny(req.RoomAliasName, ":# \t\n") {
			return "", errcode.InvalidParam("room_alias_name may not contain ':', '#' or whitespace")
		}
		alias = "#" + req.RoomAliasName + ":" + s.serverName
		if len(alias) > 255 {
			return "", errcode.InvalidParam("alias too long")
		}
		if _, _, err := s.store.GetAlias(ctx, alias); err == nil {
			return "", errcode.RoomInUse("room alias already taken")
		}
	}
	for _, inv := range req.Invite {
		if !validUserID(inv) {
			return "", errcode.InvalidParam("invalid user id %q in invite", inv)
		}
	}

	// m.room.create content: creation_content plus the version.
	create := map[string]json.RawMessage{}
	if len(req.CreationContent) > 0 && string(req.CreationContent) != "null" {
		if err := json.Unmarshal(req.CreationContent, &create); err != nil {
			return "", errcode.BadJSON("creation_content must be an object")
		}
	}
	create["room_version"] = mustJSON(v.ID)
	if v.RoomIDFromCreate && preset == "trusted_private_chat" && len(req.Invite) > 0 {
		// Version 12 has no "level 100" for peers: invitees of a trusted
		// chat become creators with the sender.
		var extra []string
		if raw, ok := create["additional_creators"]; ok {
			if err := json.Unmarshal(raw, &extra); err != nil {
				return "", errcode.BadJSON("additional_creators must be an array of user ids")
			}
		}
		for _, inv := range req.Invite {
			if !slices.Contains(extra, inv) {
				extra = append(extra, inv)
			}
		}
		create["additional_creators"] = mustJSON(extra)
	}
	if v.CreatorInContent {
		create["creator"] = mustJSON(creator)
	} else {
		delete(create, "creator")
	}

	pl := map[string]any{
		"users": map[string]any{}, "users_default": 0,
		"events": map[string]any{
			"m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
			"m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
			"m.room.server_acl": 100, "m.room.encryption": 100,
			// Live location: members share their own beacon; the auth rule for
			// state keys starting with @ keeps each one owner-only.
			"m.beacon_info": 0, "org.matrix.msc3672.beacon_info": 0,
			// Group calls (MatrixRTC): every member posts their own call
			// membership, one state key per device, as in the rooms
			// Element creates for calls.
			"org.matrix.msc3401.call.member": 0, "m.call.member": 0,
			"m.rtc.member": 0, "org.matrix.msc4143.rtc.member": 0,
		},
		"events_default": 0, "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 0,
		"notifications": map[string]any{"room": 50},
	}
	if preset == "public_chat" {
		// Anyone may join a public room; inviting stays with moderators
		// (private presets let members invite, as other servers do).
		pl["invite"] = 50
	}
	users := pl["users"].(map[string]any)
	if !v.RoomIDFromCreate {
		users[creator] = 100
	} else {
		// Upgrading needs more than any finite level a creator could hand
		// out by default (MSC4289).
		pl["events"].(map[string]any)["m.room.tombstone"] = 150
	}
	if preset == "trusted_private_chat" && !v.RoomIDFromCreate {
		for _, inv := range req.Invite {
			users[inv] = 100
		}
	}
	if len(req.PowerLevelContentOverride) > 0 && string(req.PowerLevelContentOverride) != "null" {
		var override map[string]json.RawMessage
		if err := json.Unmarshal(req.PowerLevelContentOverride, &override); err != nil {
			return "", errcode.BadJSON("power_level_content_override must be an object")
		}
		for k, val := range override {
			pl[k] = val
		}
	}

	joinRule, history, guest := "invite", "shared", "can_join"
	if preset == "public_chat" {
		joinRule, guest = "public", "forbidden"
	}

	// The creator's member event carries their profile.
	memberContent := map[string]any{"membership": "join"}
	if u, err := s.store.GetUser(ctx, creator); err == nil {
		if u.DisplayName.Valid {
			memberContent["displayname"] = u.DisplayName.String
		}
		if u.AvatarURL.Valid {
			memberContent["avatar_url"] = u.AvatarURL.String
		}
	}
	if req.IsDirect {
		memberContent["is_direct"] = true
	}

	initial := map[[2]string]StateEvent{}
	var order [][2]string
	for _, st := range req.InitialState {
		if st.Type == "" {
			return "", errcode.BadJSON("initial_state event needs a type")
		}
		if st.Type == "m.room.create" || st.Type == "m.room.member" || st.Type == "m.room.power_levels" {
			return "", errcode.InvalidParam("initial_state may not contain %s", st.Type)
		}
		k := [2]string{st.Type, st.StateKey}
		if _, dup := initial[k]; !dup {
			order = append(order, k)
		}
		initial[k] = st
	}
	if s.cfg.Encryption.Default && preset != "public_chat" && !req.upgrade {
		k := [2]string{"m.room.encryption", ""}
		if _, set := initial[k]; !set {
			initial[k] = StateEvent{Type: k[0], Content: mustJSON(map[string]any{"algorithm": "m.megolm.v1.aes-sha2"})}
			order = append(order, k)
		}
	}

	empty := ""
	self := creator
	protos := []Proto{
		{Type: "m.room.create", StateKey: &empty, Content: mustJSON(create)},
		{Type: "m.room.member", StateKey: &self, Content: mustJSON(memberContent)},
		{Type: "m.room.power_levels", StateKey: &empty, Content: mustJSON(pl)},
	}
	if alias != "" {
		protos = append(protos, Proto{Type: "m.room.canonical_alias", StateKey: &empty, Content: mustJSON(map[string]string{"alias": alias})})
	}
	for _, x := range []struct{ typ, key, val string }{
		{"m.room.join_rules", "join_rule", joinRule},
		{"m.room.history_visibility", "history_visibility", history},
		{"m.room.guest_access", "guest_access", guest},
	} {
		if x.val == "forbidden" {
			continue // guests are forbidden where no guest access is set
		}
		if _, overridden := initial[[2]string{x.typ, ""}]; !overridden {
			protos = append(protos, Proto{Type: x.typ, StateKey: &empty, Content: mustJSON(map[string]string{x.key: x.val})})
		}
	}
	for _, k := range order {
		st := initial[k]
		key := st.StateKey
		protos = append(protos, Proto{Type: st.Type, StateKey: &key, Content: st.Content})
	}
	if req.Name != nil {
		protos = append(protos, Proto{Type: "m.room.name", StateKey: &empty, Content: mustJSON(map[string]string{"name": *req.Name})})
	}
	if req.Topic != nil {
		// The plain topic, and the same as the rich form (spec v1.15's
		// m.topic) for clients that read only that.
		topic := map[string]any{"topic": *req.Topic, "m.topic": map[string]any{"m.text": []map[string]string{{"body": *req.Topic}}}}
		protos = append(protos, Proto{Type: "m.room.topic", StateKey: &empty, Content: mustJSON(topic)})
	}
	var remote []string // invited over federation once the room exists
	for _, inv := range req.Invite {
		target := inv
		if s.federated() && serverOf(inv) != s.serverName {
			remote = append(remote, inv)
			continue
		}
		if err := s.CheckInvite(ctx, inv, creator); err != nil {
			if e, ok := errcode.As(err); ok && e.Code == "M_INVITE_BLOCKED" {
				continue // the room is created all the same, without this invite
			}
			return "", err
		}
		c := map[string]any{"membership": "invite"}
		if req.IsDirect {
			c["is_direct"] = true
		}
		protos = append(protos, Proto{Type: "m.room.member", StateKey: &target, Content: mustJSON(c)})
	}

	r := &Room{version: v}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := &Batch{r: r, overlay: map[pdu.StateTuple]*pdu.Event{}, alias: alias, publish: req.Visibility == "public"}
	if !v.RoomIDFromCreate {
		b.roomID = "!" + randomString(18) + ":" + s.serverName
	}
	for i := range protos {
		protos[i].Sender = creator
		if _, err := s.add(ctx, b, protos[i]); err != nil {
			return "", err
		}
	}
	if err := s.Commit(ctx, b); err != nil {
		return "", err
	}
	if len(remote) > 0 {
		r.mu.Unlock()
		defer r.mu.Lock() // taken again for the deferred Unlock
		s.inviteRemoteUsers(ctx, b.roomID, creator, remote, req.IsDirect)
	}
	return b.roomID, nil
}

const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

func mustJSON(v any) json.RawMessage {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return data
}

func validUserID(s string) bool {
	local, server, ok := strings.Cut(s, ":")
	return ok && strings.HasPrefix(local, "@") && len(local) > 1 && server != "" && len(s) <= 255
}
