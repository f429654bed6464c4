package federation

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"luxchat/internal/matrix/signing"
)

// seen is one request as the other server received it.
type seen struct {
	method, target, auth string
	body                 []byte
}

// fakeRemote is another server on loopback answering every request with
// status and answer; it returns a client trusting it, the destination
// name and the last request received.
func fakeRemote(t *testing.T, key signing.KeyPair, status int, answer string) (*Client, string, *seen) {
	t.Helper()
	last := &seen{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		*last = seen{method: r.Method, target: r.RequestURI, auth: r.Header.Get("Authorization"), body: body}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, answer)
	}))
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	c := NewClient("self.test", key, testPolicy(t), &fakeDNS{}, roots)
	return c, srv.Listener.Addr().String(), last // an IP literal with a port: no lookup
}

// A room id, user id and event id with characters that must be escaped in
// a path segment or a query value.
const (
	oddRoom  = "!r/o?m#1:hs.test"
	oddUser  = "@u/s?r:hs.test"
	oddEvent = "$ev/en+t=1&x"
	// path-escaped and query-escaped forms
	oddRoomPath  = "%21r%2Fo%3Fm%231:hs.test"
	oddUserPath  = "@u%2Fs%3Fr:hs.test"
	oddEventPath = "$ev%2Fen+t=1&x"
	oddEventQ    = "%24ev%2Fen%2Bt%3D1%26x"
)

func TestClientEndpoints(t *testing.T) {
	limit := 5
	cases := []struct {
		name     string
		call     func(c *Client, dest string) (any, error)
		method   string
		target   string // the raw request target
		body     string // the JSON body; "" for none
		unsigned bool   // the key endpoints need no signature
		answer   string
		want     any // the decoded answer; nil: not checked
	}{
		{name: "event", method: "GET", target: "/_matrix/federation/v1/event/" + oddEventPath,
			call:   func(c *Client, d string) (any, error) { return c.GetEvent(context.Background(), d, oddEvent) },
			answer: `{"origin":"x","pdus":[{"a":1}]}`, want: &PDUsResponse{PDUs: []json.RawMessage{json.RawMessage(`{"a":1}`)}}},
		{name: "state_ids", method: "GET", target: "/_matrix/federation/v1/state_ids/" + oddRoomPath + "?event_id=" + oddEventQ,
			call:   func(c *Client, d string) (any, error) { return c.StateIDs(context.Background(), d, oddRoom, oddEvent) },
			answer: `{"auth_chain_ids":["$a"],"pdu_ids":["$b","$c"]}`, want: &StateIDsResponse{AuthChainIDs: []string{"$a"}, PDUIDs: []string{"$b", "$c"}}},
		{name: "state", method: "GET", target: "/_matrix/federation/v1/state/" + oddRoomPath + "?event_id=" + oddEventQ,
			call:   func(c *Client, d string) (any, error) { return c.State(context.Background(), d, oddRoom, oddEvent) },
			answer: `{"pdus":[1],"auth_chain":[2]}`, want: &StateResponse{PDUs: []json.RawMessage{json.RawMessage(`1`)}, AuthChain: []json.RawMessage{json.RawMessage(`2`)}}},
		{name: "event_auth", method: "GET", target: "/_matrix/federation/v1/event_auth/" + oddRoomPath + "/" + oddEventPath,
			call:   func(c *Client, d string) (any, error) { return c.EventAuth(context.Background(), d, oddRoom, oddEvent) },
			answer: `{"auth_chain":[]}`, want: &EventAuthResponse{AuthChain: []json.RawMessage{}}},
		{name: "backfill", method: "GET", target: "/_matrix/federation/v1/backfill/" + oddRoomPath + "?limit=20&v=%241&v=" + oddEventQ,
			call: func(c *Client, d string) (any, error) {
				return c.Backfill(context.Background(), d, oddRoom, []string{"$1", oddEvent}, 20)
			},
			answer: `{"pdus":[]}`, want: &PDUsResponse{PDUs: []json.RawMessage{}}},
		{name: "get_missing_events", method: "POST", target: "/_matrix/federation/v1/get_missing_events/" + oddRoomPath,
			call: func(c *Client, d string) (any, error) {
				return c.GetMissingEvents(context.Background(), d, oddRoom, &GetMissingEventsRequest{EarliestEvents: []string{"$a"}, LatestEvents: []string{"$b"}, Limit: 20})
			},
			body:   `{"earliest_events":["$a"],"latest_events":["$b"],"limit":20,"min_depth":0}`,
			answer: `{"events":[{}]}`, want: &GetMissingEventsResponse{Events: []json.RawMessage{json.RawMessage(`{}`)}}},
		{name: "timestamp_to_event", method: "GET", target: "/_matrix/federation/v1/timestamp_to_event/" + oddRoomPath + "?dir=b&ts=1234",
			call: func(c *Client, d string) (any, error) {
				return c.TimestampToEvent(context.Background(), d, oddRoom, 1234, "b")
			},
			answer: `{"event_id":"$x","origin_server_ts":1200}`, want: &TimestampToEventResponse{EventID: "$x", OriginServerTS: 1200}},
		{name: "make_join", method: "GET", target: "/_matrix/federation/v1/make_join/" + oddRoomPath + "/" + oddUserPath + "?ver=10&ver=11",
			call: func(c *Client, d string) (any, error) {
				return c.MakeJoin(context.Background(), d, oddRoom, oddUser, []string{"10", "11"})
			},
			answer: `{"room_version":"11","event":{"type":"m.room.member"}}`, want: &MakeResponse{RoomVersion: "11", Event: json.RawMessage(`{"type":"m.room.member"}`)}},
		{name: "make_knock", method: "GET", target: "/_matrix/federation/v1/make_knock/" + oddRoomPath + "/" + oddUserPath + "?ver=7",
			call: func(c *Client, d string) (any, error) {
				return c.MakeKnock(context.Background(), d, oddRoom, oddUser, []string{"7"})
			},
			answer: `{"room_version":"7","event":{}}`},
		{name: "make_leave", method: "GET", target: "/_matrix/federation/v1/make_leave/" + oddRoomPath + "/" + oddUserPath,
			call:   func(c *Client, d string) (any, error) { return c.MakeLeave(context.Background(), d, oddRoom, oddUser) },
			answer: `{"room_version":"1","event":{}}`},
		{name: "send_join", method: "PUT", target: "/_matrix/federation/v2/send_join/" + oddRoomPath + "/" + oddEventPath + "?omit_members=true",
			call: func(c *Client, d string) (any, error) {
				return c.SendJoin(context.Background(), d, oddRoom, oddEvent, json.RawMessage(`{"type":"m.room.member"}`), true)
			},
			body:   `{"type":"m.room.member"}`,
			answer: `{"state":[],"auth_chain":[],"members_omitted":true,"servers_in_room":["a.test"]}`,
			want:   &SendJoinResponse{State: []json.RawMessage{}, AuthChain: []json.RawMessage{}, MembersOmitted: true, ServersInRoom: []string{"a.test"}}},
		{name: "send_join full", method: "PUT", target: "/_matrix/federation/v2/send_join/" + oddRoomPath + "/" + oddEventPath,
			call: func(c *Client, d string) (any, error) {
				return c.SendJoin(context.Background(), d, oddRoom, oddEvent, json.RawMessage(`{}`), false)
			},
			body: `{}`, answer: `{}`},
		{name: "send_knock", method: "PUT", target: "/_matrix/federation/v1/send_knock/" + oddRoomPath + "/" + oddEventPath,
			call: func(c *Client, d string) (any, error) {
				return c.SendKnock(context.Background(), d, oddRoom, oddEvent, json.RawMessage(`{}`))
			},
			body: `{}`, answer: `{"knock_room_state":[{"type":"m.room.name"}]}`,
			want: &SendKnockResponse{KnockRoomState: []json.RawMessage{json.RawMessage(`{"type":"m.room.name"}`)}}},
		{name: "send_leave", method: "PUT", target: "/_matrix/federation/v2/send_leave/" + oddRoomPath + "/" + oddEventPath,
			call: func(c *Client, d string) (any, error) {
				return nil, c.SendLeave(context.Background(), d, oddRoom, oddEvent, json.RawMessage(`{}`))
			},
			body: `{}`, answer: `{}`},
		{name: "invite", method: "PUT", target: "/_matrix/federation/v2/invite/" + oddRoomPath + "/" + oddEventPath,
			call: func(c *Client, d string) (any, error) {
				return c.Invite(context.Background(), d, oddRoom, oddEvent, &InviteRequest{Event: json.RawMessage(`{"e":1}`), RoomVersion: "11", InviteRoomState: []json.RawMessage{json.RawMessage(`{"s":1}`)}})
			},
			body:   `{"event":{"e":1},"room_version":"11","invite_room_state":[{"s":1}]}`,
			answer: `{"event":{"e":2}}`, want: &InviteResponse{Event: json.RawMessage(`{"e":2}`)}},
		{name: "query/profile", method: "GET", target: "/_matrix/federation/v1/query/profile?user_id=%40u%2Fs%3Fr%3Ahs.test",
			call:   func(c *Client, d string) (any, error) { return c.QueryProfile(context.Background(), d, oddUser) },
			answer: `{"displayname":"U","avatar_url":"mxc://a/b"}`, want: &QueryProfileResponse{DisplayName: "U", AvatarURL: "mxc://a/b"}},
		{name: "query/directory", method: "GET", target: "/_matrix/federation/v1/query/directory?room_alias=%23a+b%26c%3Ahs.test",
			call: func(c *Client, d string) (any, error) {
				return c.QueryDirectory(context.Background(), d, "#a b&c:hs.test")
			},
			answer: `{"room_id":"!r:hs.test","servers":["hs.test"]}`, want: &QueryDirectoryResponse{RoomID: "!r:hs.test", Servers: []string{"hs.test"}}},
		{name: "publicRooms GET", method: "GET", target: "/_matrix/federation/v1/publicRooms?include_all_networks=true&limit=5&since=n%26x",
			call: func(c *Client, d string) (any, error) {
				return c.PublicRooms(context.Background(), d, &PublicRoomsRequest{Limit: &limit, Since: "n&x", IncludeAllNetworks: true, Filter: &PublicRoomsFilter{GenericSearchTerm: "ignored"}})
			},
			answer: `{"chunk":[{"room_id":"!r:hs.test","num_joined_members":3}],"total_room_count_estimate":1}`},
		{name: "publicRooms GET bare", method: "GET", target: "/_matrix/federation/v1/publicRooms",
			call: func(c *Client, d string) (any, error) {
				return c.PublicRooms(context.Background(), d, &PublicRoomsRequest{})
			},
			answer: `{"chunk":[]}`, want: &PublicRoomsResponse{Chunk: []PublicRoom{}}},
		{name: "publicRooms POST", method: "POST", target: "/_matrix/federation/v1/publicRooms",
			call: func(c *Client, d string) (any, error) {
				return c.SearchPublicRooms(context.Background(), d, &PublicRoomsRequest{Limit: &limit, Filter: &PublicRoomsFilter{GenericSearchTerm: "x", RoomTypes: []*string{nil}}})
			},
			body:   `{"limit":5,"filter":{"generic_search_term":"x","room_types":[null]}}`,
			answer: `{"chunk":[{"room_id":"!r:hs.test","name":"R","num_joined_members":3,"world_readable":true,"guest_can_join":false}],"next_batch":"n"}`,
			want:   &PublicRoomsResponse{Chunk: []PublicRoom{{RoomID: "!r:hs.test", Name: "R", NumJoinedMembers: 3, WorldReadable: true}}, NextBatch: "n"}},
		{name: "hierarchy", method: "GET", target: "/_matrix/federation/v1/hierarchy/" + oddRoomPath + "?suggested_only=true",
			call: func(c *Client, d string) (any, error) {
				return c.Hierarchy(context.Background(), d, oddRoom, true)
			},
			answer: `{"room":{"room_id":"!s:hs.test","num_joined_members":2,"room_type":"m.space","children_state":[{"type":"m.space.child","state_key":"!c:hs.test","sender":"@u:hs.test","origin_server_ts":5,"content":{"via":["hs.test"]}}]},"children":[],"inaccessible_children":["!x:hs.test"]}`,
			want: &HierarchyResponse{
				Room: HierarchyRoom{PublicRoom: PublicRoom{RoomID: "!s:hs.test", NumJoinedMembers: 2, RoomType: "m.space"},
					ChildrenState: []ChildStateEvent{{StateKey: "!c:hs.test", Sender: "@u:hs.test", OriginServerTS: 5, Content: json.RawMessage(`{"via":["hs.test"]}`)}}},
				Children: []HierarchyRoom{}, InaccessibleChildren: []string{"!x:hs.test"}}},
		{name: "user/keys/query", method: "POST", target: "/_matrix/federation/v1/user/keys/query",
			call: func(c *Client, d string) (any, error) {
				return c.UserKeysQuery(context.Background(), d, map[string][]string{"@u:hs.test": {}})
			},
			body:   `{"device_keys":{"@u:hs.test":[]}}`,
			answer: `{"device_keys":{"@u:hs.test":{"D":{"k":1}}},"master_keys":{"@u:hs.test":{"m":1}}}`,
			want:   &UserKeysQueryResponse{DeviceKeys: map[string]map[string]json.RawMessage{"@u:hs.test": {"D": json.RawMessage(`{"k":1}`)}}, MasterKeys: map[string]json.RawMessage{"@u:hs.test": json.RawMessage(`{"m":1}`)}}},
		{name: "user/keys/claim", method: "POST", target: "/_matrix/federation/v1/user/keys/claim",
			call: func(c *Client, d string) (any, error) {
				return c.UserKeysClaim(context.Background(), d, map[string]map[string]string{"@u:hs.test": {"D": "signed_curve25519"}})
			},
			body:   `{"one_time_keys":{"@u:hs.test":{"D":"signed_curve25519"}}}`,
			answer: `{"one_time_keys":{"@u:hs.test":{"D":{"signed_curve25519:A":{"key":"k"}}}}}`,
			want:   &UserKeysClaimResponse{OneTimeKeys: map[string]map[string]map[string]json.RawMessage{"@u:hs.test": {"D": {"signed_curve25519:A": json.RawMessage(`{"key":"k"}`)}}}}},
		{name: "send", method: "PUT", target: "/_matrix/federation/v1/send/t%2F1",
			call: func(c *Client, d string) (any, error) {
				return nil, c.SendTransaction(context.Background(), d, "t/1", &Transaction{Origin: "self.test", OriginServerTS: 9, PDUs: []json.RawMessage{}})
			},
			body: `{"origin":"self.test","origin_server_ts":9,"pdus":[]}`, answer: `{"pdus":{}}`},
		{name: "key/v2/server", method: "GET", target: "/_matrix/key/v2/server", unsigned: true,
			call:   func(c *Client, d string) (any, error) { return c.ServerKeys(context.Background(), d) },
			answer: `{"server_name":"x"}`, want: json.RawMessage(`{"server_name":"x"}`)},
		{name: "key/v2/query", method: "POST", target: "/_matrix/key/v2/query", unsigned: true,
			call:   func(c *Client, d string) (any, error) { return c.QueryServerKeys(context.Background(), d, "b.test") },
			body:   `{"server_keys":{"b.test":{}}}`,
			answer: `{"server_keys":[{"server_name":"b.test"}]}`, want: []json.RawMessage{json.RawMessage(`{"server_name":"b.test"}`)}},
	}
	key := mustKey(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, dest, last := fakeRemote(t, key, http.StatusOK, tc.answer)
			got, err := tc.call(c, dest)
			if err != nil {
				t.Fatal(err)
			}
			if last.method != tc.method || last.target != tc.target {
				t.Errorf("sent %s %s\nwant %s %s", last.method, last.target, tc.method, tc.target)
			}
			if !sameJSON(last.body, tc.body) {
				t.Errorf("body %s, want %s", last.body, tc.body)
			}
			if tc.unsigned {
				if last.auth != "" {
					t.Errorf("signed: %s", last.auth)
				}
			} else if x, err := signing.ParseXMatrix(last.auth); err != nil {
				t.Errorf("authorization %q: %v", last.auth, err)
			} else if err := signing.VerifyRequest(x, key.Public(), dest, last.method, last.target, last.body); err != nil {
				t.Errorf("signature over the request sent: %v", err)
			}
			if tc.want != nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("answer %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

// sameJSON compares a body with the expected JSON ("": no body).
func sameJSON(got []byte, want string) bool {
	if want == "" {
		return len(got) == 0
	}
	var a, b any
	return json.Unmarshal(got, &a) == nil && json.Unmarshal([]byte(want), &b) == nil && reflect.DeepEqual(a, b)
}

func TestClientRemoteError(t *testing.T) {
	c, dest, _ := fakeRemote(t, mustKey(t), http.StatusForbidden, `{"errcode":"M_FORBIDDEN","error":"no"}`)
	_, err := c.MakeJoin(context.Background(), dest, "!r:hs.test", "@u:self.test", []string{"11"})
	var re *RemoteError
	if !errors.As(err, &re) || re.Server != dest || re.Status != http.StatusForbidden || !bytes.Contains(re.Body, []byte("M_FORBIDDEN")) {
		t.Fatalf("%#v", err)
	}
	if code, msg := re.MatrixError(); code != "M_FORBIDDEN" || msg != "no" {
		t.Errorf("MatrixError: %q %q", code, msg)
	}
	for _, body := range []string{`not json`, `{"error":"no code"}`, `{"errcode":5}`} {
		if code, _ := (&RemoteError{Body: []byte(body)}).MatrixError(); code != "" {
			t.Errorf("%s: code %q", body, code)
		}
	}
}
