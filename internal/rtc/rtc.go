package rtc

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"luxchat/internal/accounts"
	"luxchat/internal/config"
	"luxchat/internal/federation"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
)

// Accounts checks our own users' OpenID tokens and devices.
type Accounts interface {
	OpenIDUser(ctx context.Context, token string) (string, error)
	Device(ctx context.Context, userID, deviceID string) (*accounts.Device, error)
}

// Memberships tells a user's membership of a room as this server's copy
// of its state has it ("" when the room or the user is unknown).
type Memberships interface {
	UserMembership(ctx context.Context, roomID, userID string) (string, error)
}

// RemoteOpenID asks another server who an OpenID token belongs to
// (federation.Client); it refuses servers outside
// federation.allowed_servers with federation.ErrNotAllowed.
type RemoteOpenID interface {
	OpenIDUserInfo(ctx context.Context, destination, token string) (string, error)
}

// remoteTimeout bounds the look-up of a remote user's OpenID token.
const remoteTimeout = 10 * time.Second

// legacySlot is the slot the pre-MatrixRTC-slot endpoint (/sfu/get)
// stands for, so that its callers and /get_token's callers of the room's
// default call meet in one LiveKit room.
const legacySlot = "m.call#ROOM"

// Service issues LiveKit access tokens. It holds no state of its own and
// is safe for concurrent use.
type Service struct {
	serverName string
	sfuURL     string
	key        string
	secret     []byte
	serviceURL string
	accounts   Accounts
	rooms      Memberships
	remote     RemoteOpenID // nil: federation is off, only local users
	log        *slog.Logger
	now        func() time.Time
}

// New returns the service, or nil when rtc.livekit is not configured.
// remote may be nil (federation off).
func New(cfg *config.Config, acc Accounts, rooms Memberships, remote RemoteOpenID, log *slog.Logger) (*Service, error) {
	lk := cfg.RTC.LiveKit
	if !lk.Enabled() {
		return nil, nil
	}
	key, secret, err := lk.Credentials()
	if err != nil {
		return nil, err
	}
	return &Service{
		serverName: cfg.ServerName, sfuURL: lk.URL, key: key, secret: []byte(secret),
		serviceURL: cfg.LiveKitServiceURL(), accounts: acc, rooms: rooms, remote: remote,
		log: log, now: time.Now,
	}, nil
}

// Transport is one entry of the transports list (MSC4143): a LiveKit
// focus and its token service.
type Transport struct {
	Type              string `json:"type"`
	LiveKitServiceURL string `json:"livekit_service_url"`
}

// Transports lists the RTC transports this server offers.
func (s *Service) Transports() []Transport {
	return []Transport{{Type: "livekit", LiveKitServiceURL: s.serviceURL}}
}

// OpenIDToken is the token a client got from
// /user/{userId}/openid/request_token, passed on whole.
type OpenIDToken struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	MatrixServerName string `json:"matrix_server_name"`
	ExpiresIn        int64  `json:"expires_in"`
}

// delegation are the fields with which a client hands the restarts of
// its delayed leave event to the token service. This service does not
// watch the SFU, so it refuses them: a client that believed them taken
// would stop restarting its leave, and drop out of its call.
type delegation struct {
	DelayID       string `json:"delay_id"`
	DelayTimeout  int64  `json:"delay_timeout"`
	DelayCSAPIURL string `json:"delay_cs_api_url"`
}

func (d delegation) check() error {
	if d.DelayID != "" || d.DelayTimeout != 0 || d.DelayCSAPIURL != "" {
		return errcode.BadJSON("delegation of delayed events is not supported by this service")
	}
	return nil
}

// LegacyRequest is the body of POST /sfu/get.
type LegacyRequest struct {
	Room        string      `json:"room"`
	OpenIDToken OpenIDToken `json:"openid_token"`
	DeviceID    string      `json:"device_id"`
	delegation
}

// Member is the requesting member of a /get_token request.
type Member struct {
	ID              string `json:"id"`
	ClaimedUserID   string `json:"claimed_user_id"`
	ClaimedDeviceID string `json:"claimed_device_id"`
}

// TokenRequest is the body of POST /get_token.
type TokenRequest struct {
	RoomID      string      `json:"room_id"`
	SlotID      string      `json:"slot_id"`
	OpenIDToken OpenIDToken `json:"openid_token"`
	Member      Member      `json:"member"`
	delegation
}

// Access is the answer of both endpoints: where the SFU is and the token
// that lets the bearer in.
type Access struct {
	URL string `json:"url"`
	JWT string `json:"jwt"`
}

// maxField bounds the identifiers of a request (room, slot, member and
// device ids): what a state key holds.
const maxField = 255

// SFUGet answers POST /sfu/get: identity "@user:server:DEVICE", the
// room's default call.
func (s *Service) SFUGet(ctx context.Context, req *LegacyRequest) (*Access, error) {
	if req.Room == "" {
		return nil, errcode.BadJSON("missing room")
	}
	if err := checkToken(req.OpenIDToken); err != nil {
		return nil, err
	}
	if err := req.delegation.check(); err != nil {
		return nil, err
	}
	if err := checkField("room", req.Room); err != nil {
		return nil, err
	}
	if req.DeviceID == "" {
		return nil, errcode.BadJSON("missing device_id")
	}
	if err := checkField("device_id", req.DeviceID); err != nil {
		return nil, err
	}
	userID, err := s.verify(ctx, req.OpenIDToken)
	if err != nil {
		return nil, err
	}
	return s.grant(ctx, userID, req.DeviceID, req.Room, legacySlot, userID+":"+req.DeviceID)
}

// GetToken answers POST /get_token: identity and room pseudonymised as
// lk-jwt-service derives them, from the member's claimed device and id
// and the room's slot.
func (s *Service) GetToken(ctx context.Context, req *TokenRequest) (*Access, error) {
	if req.RoomID == "" || req.SlotID == "" {
		return nil, errcode.BadJSON("the request body is missing room_id or slot_id")
	}
	if req.Member.ID == "" || req.Member.ClaimedUserID == "" || req.Member.ClaimedDeviceID == "" {
		return nil, errcode.BadJSON("member is missing id, claimed_user_id or claimed_device_id")
	}
	if err := checkToken(req.OpenIDToken); err != nil {
		return nil, err
	}
	if err := req.delegation.check(); err != nil {
		return nil, err
	}
	for name, v := range map[string]string{"room_id": req.RoomID, "slot_id": req.SlotID, "member.id": req.Member.ID, "member.claimed_device_id": req.Member.ClaimedDeviceID} {
		if err := checkField(name, v); err != nil {
			return nil, err
		}
	}
	userID, err := s.verify(ctx, req.OpenIDToken)
	if err != nil {
		return nil, err
	}
	if req.Member.ClaimedUserID != userID {
		return nil, errcode.Unauthorized("the request could not be authorised")
	}
	identity := hashOf(userID, req.Member.ClaimedDeviceID, req.Member.ID)
	return s.grant(ctx, userID, req.Member.ClaimedDeviceID, req.RoomID, req.SlotID, identity)
}

func checkToken(t OpenIDToken) error {
	if t.AccessToken == "" || t.MatrixServerName == "" {
		return errcode.BadJSON("openid_token is missing access_token or matrix_server_name")
	}
	return nil
}

func checkField(name, v string) error {
	if len(v) > maxField {
		return errcode.BadJSON("%s is longer than %d bytes", name, maxField)
	}
	return nil
}

// verify returns the user an OpenID token was issued to: ours from our
// own tokens, another server's by asking it over federation — only a
// server federation.allowed_servers allows, and only for its own users.
func (s *Service) verify(ctx context.Context, t OpenIDToken) (string, error) {
	if t.MatrixServerName == s.serverName {
		u, err := s.accounts.OpenIDUser(ctx, t.AccessToken)
		if _, refused := errcode.As(err); refused {
			return "", errcode.Unauthorized("the request could not be authorised")
		}
		return u, err
	}
	if err := id.ValidServerName(t.MatrixServerName); err != nil {
		return "", errcode.BadJSON("openid_token.matrix_server_name is not a server name")
	}
	if s.remote == nil {
		return "", errcode.Forbidden("federation is disabled: only users of %s may join its calls", s.serverName)
	}
	ctx, cancel := context.WithTimeout(ctx, remoteTimeout)
	defer cancel()
	u, err := s.remote.OpenIDUserInfo(ctx, t.MatrixServerName, t.AccessToken)
	if errors.Is(err, federation.ErrNotAllowed) {
		return "", errcode.Forbidden("this server does not federate with %s", t.MatrixServerName)
	}
	if err != nil {
		s.log.Debug("openid userinfo refused", "server", t.MatrixServerName, "err", err)
		return "", errcode.Unauthorized("the request could not be authorised")
	}
	// A server vouches for its own users only.
	if uid, perr := id.ParseUserID(u); perr != nil || string(uid.Server()) != t.MatrixServerName {
		s.log.Info("openid userinfo named a user of another server", "server", t.MatrixServerName, "sub", u)
		return "", errcode.Unauthorized("the request could not be authorised")
	}
	return u, nil
}

// grant checks that userID may join the call of roomID and mints its
// token. Local users must name one of their own devices; everyone must be
// joined to the room as this server sees it (rooms it is not in are
// refused: it cannot tell who their members are).
func (s *Service) grant(ctx context.Context, userID, deviceID, roomID, slotID, identity string) (*Access, error) {
	local := id.UserID(userID).Server() == id.ServerName(s.serverName)
	if local {
		if _, err := s.accounts.Device(ctx, userID, deviceID); err != nil {
			if _, refused := errcode.As(err); refused {
				return nil, errcode.Forbidden("device %s is not one of %s's devices", deviceID, userID)
			}
			return nil, fmt.Errorf("rtc: device: %w", err)
		}
	}
	m, err := s.rooms.UserMembership(ctx, roomID, userID)
	if err != nil {
		return nil, fmt.Errorf("rtc: membership: %w", err)
	}
	if m != "join" {
		return nil, errcode.Forbidden("%s is not joined to the room", userID)
	}
	now := s.now()
	claims := Claims{
		Issuer: s.key, Subject: identity,
		NotBefore: now.Unix(), Expiry: now.Add(tokenLifetime).Unix(),
		Video: VideoGrant{
			Room: RoomName(roomID, slotID), RoomJoin: true, CanPublish: true, CanSubscribe: true,
			// As lk-jwt-service: only users of this deployment may make
			// the SFU open a room; others join rooms that exist.
			RoomCreate: local,
		},
	}
	return &Access{URL: s.sfuURL, JWT: signHS256(claims, s.secret)}, nil
}

// RoomName is the LiveKit room of a Matrix room's slot, pseudonymised as
// MSC4195 and lk-jwt-service have it: the unpadded base64 of the SHA-256
// of the JSON array [room_id, slot_id], so the SFU never learns room ids.
func RoomName(roomID, slotID string) string { return hashOf(roomID, slotID) }

// hashOf is the unpadded base64 SHA-256 of the JSON array of parts, with
// encoding/json's escaping, as lk-jwt-service computes it: identities
// must come out the same wherever they are computed.
func hashOf(parts ...string) string {
	data, _ := json.Marshal(parts) // strings only: cannot fail
	sum := sha256.Sum256(data)
	return base64.RawStdEncoding.EncodeToString(sum[:])
}
