package federation

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The requests for a room's events and state: PDUs are left raw
// (json.RawMessage), since only the caller knows the room version that
// parses them.

// fedPath is prefix followed by the path-escaped segments, separated by
// slashes.
func fedPath(prefix string, segments ...string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for i, s := range segments {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// withQuery appends q to uri, if it holds any parameter.
func withQuery(uri string, q url.Values) string {
	if len(q) == 0 {
		return uri
	}
	return uri + "?" + q.Encode()
}

// PDUsResponse is the answer of event and backfill: a transaction, of
// which only the PDUs are read.
type PDUsResponse struct {
	PDUs []json.RawMessage `json:"pdus"`
}

// GetEvent asks GET /_matrix/federation/v1/event/{eventId}; the answer
// holds the event as its only PDU.
func (c *Client) GetEvent(ctx context.Context, destination, eventID string) (*PDUsResponse, error) {
	var out PDUsResponse
	if err := c.Do(ctx, destination, http.MethodGet, fedPath("/_matrix/federation/v1/event/", eventID), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StateIDsResponse is the answer of state_ids: the ids of the room's
// state at (before) an event and of its auth chain.
type StateIDsResponse struct {
	AuthChainIDs []string `json:"auth_chain_ids"`
	PDUIDs       []string `json:"pdu_ids"`
}

// StateIDs asks GET /_matrix/federation/v1/state_ids/{roomId}?event_id=….
func (c *Client) StateIDs(ctx context.Context, destination, roomID, eventID string) (*StateIDsResponse, error) {
	uri := withQuery(fedPath("/_matrix/federation/v1/state_ids/", roomID), url.Values{"event_id": {eventID}})
	var out StateIDsResponse
	if err := c.Do(ctx, destination, http.MethodGet, uri, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// StateResponse is the answer of state: the room's state at (before) an
// event and its auth chain.
type StateResponse struct {
	PDUs      []json.RawMessage `json:"pdus"`
	AuthChain []json.RawMessage `json:"auth_chain"`
}

// State asks GET /_matrix/federation/v1/state/{roomId}?event_id=….
func (c *Client) State(ctx context.Context, destination, roomID, eventID string) (*StateResponse, error) {
	uri := withQuery(fedPath("/_matrix/federation/v1/state/", roomID), url.Values{"event_id": {eventID}})
	var out StateResponse
	if err := c.Do(ctx, destination, http.MethodGet, uri, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// EventAuthResponse is the answer of event_auth: an event's auth chain.
type EventAuthResponse struct {
	AuthChain []json.RawMessage `json:"auth_chain"`
}

// EventAuth asks GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}.
func (c *Client) EventAuth(ctx context.Context, destination, roomID, eventID string) (*EventAuthResponse, error) {
	var out EventAuthResponse
	if err := c.Do(ctx, destination, http.MethodGet, fedPath("/_matrix/federation/v1/event_auth/", roomID, eventID), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Backfill asks GET /_matrix/federation/v1/backfill/{roomId} for up to
// limit events before those of from (one v parameter each).
func (c *Client) Backfill(ctx context.Context, destination, roomID string, from []string, limit int) (*PDUsResponse, error) {
	q := url.Values{"v": from, "limit": {strconv.Itoa(limit)}}
	var out PDUsResponse
	if err := c.Do(ctx, destination, http.MethodGet, withQuery(fedPath("/_matrix/federation/v1/backfill/", roomID), q), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// GetMissingEventsRequest is the body of get_missing_events.
type GetMissingEventsRequest struct {
	EarliestEvents []string `json:"earliest_events"`
	LatestEvents   []string `json:"latest_events"`
	Limit          int      `json:"limit"`
	MinDepth       int64    `json:"min_depth"`
}

// GetMissingEventsResponse is the answer of get_missing_events.
type GetMissingEventsResponse struct {
	Events []json.RawMessage `json:"events"`
}

// GetMissingEvents asks POST
// /_matrix/federation/v1/get_missing_events/{roomId}.
func (c *Client) GetMissingEvents(ctx context.Context, destination, roomID string, req *GetMissingEventsRequest) (*GetMissingEventsResponse, error) {
	var out GetMissingEventsResponse
	if err := c.Do(ctx, destination, http.MethodPost, fedPath("/_matrix/federation/v1/get_missing_events/", roomID), req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// TimestampToEventResponse is the answer of timestamp_to_event.
type TimestampToEventResponse struct {
	EventID        string `json:"event_id"`
	OriginServerTS int64  `json:"origin_server_ts"`
}

// TimestampToEvent asks GET
// /_matrix/federation/v1/timestamp_to_event/{roomId}?ts=…&dir=… for the
// event closest to ts (milliseconds) in direction dir, "f" or "b".
func (c *Client) TimestampToEvent(ctx context.Context, destination, roomID string, ts int64, dir string) (*TimestampToEventResponse, error) {
	q := url.Values{"ts": {strconv.FormatInt(ts, 10)}, "dir": {dir}}
	var out TimestampToEventResponse
	if err := c.Do(ctx, destination, http.MethodGet, withQuery(fedPath("/_matrix/federation/v1/timestamp_to_event/", roomID), q), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
