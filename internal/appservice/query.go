package appservice

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

const (
	// queryTimeout bounds a user, alias or third-party query: a client
	// waits on it.
	queryTimeout = 10 * time.Second
	// pingTimeout bounds a ping (M_CONNECTION_TIMEOUT after it).
	pingTimeout = 15 * time.Second
	// maxAnswer bounds what a service's answer may hold.
	maxAnswer = 1 << 20
)

// call makes one request to a service and returns the status and body.
func (s *Service) call(ctx context.Context, r *Registration, method, path string, query url.Values, body any) (int, []byte, error) {
	u := r.URL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+r.HSToken)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	return resp.StatusCode, data, err
}

// Ping is POST /_matrix/client/v1/appservice/{appserviceId}/ping made
// by service asID: the server pings the service's POST
// /_matrix/app/v1/ping and says how long it took.
func (s *Service) Ping(ctx context.Context, callerAS, asID, txnID string) (int64, error) {
	r := s.Get(asID)
	if r == nil || callerAS != asID {
		return 0, errcode.Forbidden("the access token does not belong to application service %q", asID)
	}
	if r.URL == "" {
		return 0, &errcode.Error{Code: "M_URL_NOT_SET", Status: http.StatusBadRequest, Message: "application service has no URL configured"}
	}
	var body map[string]string
	if txnID != "" {
		body = map[string]string{"transaction_id": txnID}
	} else {
		body = map[string]string{}
	}
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	start := time.Now()
	status, data, err := s.call(ctx, r, http.MethodPost, "/_matrix/app/v1/ping", nil, body)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, &errcode.Error{Code: "M_CONNECTION_TIMEOUT", Status: http.StatusGatewayTimeout, Message: "ping timed out"}
		}
		return 0, &errcode.Error{Code: "M_CONNECTION_FAILED", Status: http.StatusBadGateway, Message: "could not reach the application service"}
	}
	if status/100 != 2 {
		return 0, (&errcode.Error{Code: "M_BAD_STATUS", Status: http.StatusBadGateway, Message: fmt.Sprintf("ping returned status %d", status)}).
			With("status", status).With("body", string(data))
	}
	return time.Since(start).Milliseconds(), nil
}

// QueryUser asks the services whose user namespace holds a local user
// that does not exist whether they want to create it (GET
// /_matrix/app/v1/users/{userId}); true when one answered 200 (and so
// created it).
func (s *Service) QueryUser(ctx context.Context, userID string) bool {
	if s == nil {
		return false
	}
	for _, r := range s.regs {
		if r.URL == "" || !matchAny(r.Users, userID) {
			continue
		}
		if s.query(ctx, r, "/_matrix/app/v1/users/"+url.PathEscape(userID)) {
			return true
		}
	}
	return false
}

// QueryAlias asks the services whose alias namespace holds an unknown
// alias (GET /_matrix/app/v1/rooms/{roomAlias}); true when one answered
// 200 (and so created it).
func (s *Service) QueryAlias(ctx context.Context, alias string) bool {
	if s == nil {
		return false
	}
	for _, r := range s.regs {
		if r.URL == "" || !matchAny(r.Aliases, alias) {
			continue
		}
		if s.query(ctx, r, "/_matrix/app/v1/rooms/"+url.PathEscape(alias)) {
			return true
		}
	}
	return false
}

func (s *Service) query(ctx context.Context, r *Registration, path string) bool {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	status, _, err := s.call(ctx, r, http.MethodGet, path, nil, nil)
	if err != nil {
		s.log.Info("query failed", "appservice", r.ID, "path", path, "err", err)
		return false
	}
	return status == http.StatusOK
}

// Protocols is GET /thirdparty/protocols: each protocol a service
// declares, as the first service declaring it describes it (services
// that do not answer are left out).
func (s *Service) Protocols(ctx context.Context) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	if s == nil {
		return out, nil
	}
	for _, r := range s.regs {
		for _, p := range r.Protocols {
			if _, seen := out[p]; seen || r.URL == "" {
				continue
			}
			if data, err := s.thirdParty(ctx, r, "/protocol/"+url.PathEscape(p), nil); err == nil && json.Valid(data) {
				out[p] = withInstanceIDs(r, data)
			}
		}
	}
	return out, nil
}

// Protocol is GET /thirdparty/protocol/{protocol}.
func (s *Service) Protocol(ctx context.Context, protocol string) (json.RawMessage, error) {
	for _, r := range s.withProtocol(protocol) {
		if data, err := s.thirdParty(ctx, r, "/protocol/"+url.PathEscape(protocol), nil); err == nil && json.Valid(data) {
			return withInstanceIDs(r, data), nil
		}
	}
	return nil, errcode.NotFound("no application service serves protocol %q", protocol)
}

// ThirdPartyLookup is GET /thirdparty/{location,user}/{protocol} (kind
// "location" or "user"): the services declaring the protocol are asked
// with the same fields and their answers joined. An empty protocol looks
// up by Matrix id (GET /thirdparty/location?alias=, /thirdparty/user?userid=)
// on every service with protocols.
func (s *Service) ThirdPartyLookup(ctx context.Context, kind, protocol string, fields url.Values) ([]json.RawMessage, error) {
	regs := s.withProtocol(protocol)
	path := "/" + kind
	if protocol != "" {
		path += "/" + url.PathEscape(protocol)
	} else if s != nil {
		regs = nil
		for _, r := range s.regs {
			if len(r.Protocols) > 0 {
				regs = append(regs, r)
			}
		}
	}
	if protocol != "" && len(regs) == 0 {
		return nil, errcode.NotFound("no application service serves protocol %q", protocol)
	}
	out := []json.RawMessage{}
	for _, r := range regs {
		data, err := s.thirdParty(ctx, r, path, fields)
		if err != nil {
			continue
		}
		var items []json.RawMessage
		if json.Unmarshal(data, &items) == nil {
			out = append(out, items...)
		}
	}
	return out, nil
}

func (s *Service) withProtocol(protocol string) []*Registration {
	if s == nil {
		return nil
	}
	var out []*Registration
	for _, r := range s.regs {
		for _, p := range r.Protocols {
			if p == protocol && r.URL != "" {
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// thirdParty asks a service GET /_matrix/app/v1/thirdparty{path}.
func (s *Service) thirdParty(ctx context.Context, r *Registration, path string, query url.Values) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	status, data, err := s.call(ctx, r, http.MethodGet, "/_matrix/app/v1/thirdparty"+path, query, nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("status %d", status)
	}
	return data, nil
}

// SetRoomListed is PUT /directory/list/appservice/{networkId}/{roomId}:
// the calling service lists (visibility "public") or unlists a room in
// one of its networks' directories.
func (s *Service) SetRoomListed(ctx context.Context, asID, networkID, roomID, visibility string) error {
	if s.Get(asID) == nil {
		return errcode.Forbidden("only an application service may list rooms in its network directories")
	}
	if visibility != "public" && visibility != "private" {
		return errcode.InvalidParam("visibility must be public or private")
	}
	if networkID == "" || len(networkID) > 255 {
		return errcode.InvalidParam("invalid network id")
	}
	if _, err := s.store.GetRoom(ctx, roomID); errors.Is(err, store.ErrNotFound) {
		return errcode.NotFound("unknown room")
	} else if err != nil {
		return err
	}
	return s.store.SetAppServiceRoomListed(ctx, asID, networkID, roomID, visibility == "public")
}

// withInstanceIDs names each instance of a protocol a service describes
// "as_id|network_id": the third_party_instance_id /publicRooms takes to
// show that network's directory.
func withInstanceIDs(r *Registration, data []byte) json.RawMessage {
	var p map[string]json.RawMessage
	if json.Unmarshal(data, &p) != nil {
		return data
	}
	var instances []map[string]json.RawMessage
	if json.Unmarshal(p["instances"], &instances) != nil {
		return data
	}
	for _, in := range instances {
		var network string
		if json.Unmarshal(in["network_id"], &network) == nil && network != "" {
			in["instance_id"], _ = json.Marshal(r.ID + "|" + network)
		}
	}
	p["instances"], _ = json.Marshal(instances)
	out, err := json.Marshal(p)
	if err != nil {
		return data
	}
	return out
}
