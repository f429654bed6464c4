package federation

import (
	"context"
	"encoding/json"
	"net/http"
)

// The end-to-end encryption keys of another server's users, and the
// signing keys of servers.

// UserKeysQueryResponse is the answer of user/keys/query: device keys by
// user and device id, and cross-signing keys by user, each left raw (they
// are signed objects).
type UserKeysQueryResponse struct {
	DeviceKeys      map[string]map[string]json.RawMessage `json:"device_keys"`
	MasterKeys      map[string]json.RawMessage            `json:"master_keys"`
	SelfSigningKeys map[string]json.RawMessage            `json:"self_signing_keys"`
}

// UserKeysQuery asks POST /_matrix/federation/v1/user/keys/query for the
// keys of devices by user (an empty list: every device of the user).
func (c *Client) UserKeysQuery(ctx context.Context, destination string, devices map[string][]string) (*UserKeysQueryResponse, error) {
	body := struct {
		DeviceKeys map[string][]string `json:"device_keys"`
	}{devices}
	var out UserKeysQueryResponse
	if err := c.Do(ctx, destination, http.MethodPost, "/_matrix/federation/v1/user/keys/query", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// UserKeysClaimResponse is the answer of user/keys/claim: one key by
// user, device and key id, left raw (they are signed objects).
type UserKeysClaimResponse struct {
	OneTimeKeys map[string]map[string]map[string]json.RawMessage `json:"one_time_keys"`
}

// UserKeysClaim asks POST /_matrix/federation/v1/user/keys/claim for a
// one-time key per user, device and algorithm.
func (c *Client) UserKeysClaim(ctx context.Context, destination string, want map[string]map[string]string) (*UserKeysClaimResponse, error) {
	body := struct {
		OneTimeKeys map[string]map[string]string `json:"one_time_keys"`
	}{want}
	var out UserKeysClaimResponse
	if err := c.Do(ctx, destination, http.MethodPost, "/_matrix/federation/v1/user/keys/claim", body, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// ServerKeys asks GET /_matrix/key/v2/server, unsigned, for a server's
// own key response, returned raw for the caller to verify.
func (c *Client) ServerKeys(ctx context.Context, destination string) (json.RawMessage, error) {
	var raw json.RawMessage
	if err := c.DoUnsigned(ctx, destination, http.MethodGet, "/_matrix/key/v2/server", nil, &raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// QueryServerKeys asks a notary, unsigned, with POST /_matrix/key/v2/query
// for the keys of server; the responses are returned raw for the caller
// to verify.
func (c *Client) QueryServerKeys(ctx context.Context, notary, server string) ([]json.RawMessage, error) {
	body := map[string]any{"server_keys": map[string]any{server: map[string]any{}}}
	var out struct {
		ServerKeys []json.RawMessage `json:"server_keys"`
	}
	if err := c.DoUnsigned(ctx, notary, http.MethodPost, "/_matrix/key/v2/query", body, &out); err != nil {
		return nil, err
	}
	return out.ServerKeys, nil
}
