package exchange

import (
	"context"
	"encoding/json"
	"errors"
	"slices"

	"luxchat/internal/federation"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// AnnounceJoins sends the device lists of local users who joined a room
// to the room's servers that shared no other room with them, and so
// heard nothing of their devices until now (the spec's "Device
// Management": a join into a room with servers not already receiving
// updates is a device list change for them). The work runs off the
// listener's goroutine.
func (s *Service) AnnounceJoins(c rooms.Committed) {
	if c.Origin != "" {
		return // a join of ours comes back from other servers only as an echo
	}
	joins := map[string]*pdu.Event{}
	var joiners []string
	for _, ce := range c.Events {
		ev := ce.Event
		if ev.Type == "m.room.member" && ev.StateKey != nil && *ev.StateKey == ev.Sender &&
			s.isLocal(ev.Sender) && isJoin(ev.Content) && c.JoinedAfter(ev.Sender) && joins[ev.Sender] == nil {
			joins[ev.Sender] = ev
			joiners = append(joiners, ev.Sender)
		}
	}
	if len(joiners) == 0 {
		return
	}
	roomServers := s.others(c.JoinedServers)
	if len(roomServers) == 0 {
		return
	}
	s.announceInBackground(joiners, "federation: announce devices on joining "+c.RoomID, func(ctx context.Context, u string) error {
		return s.announceJoin(ctx, joins[u], roomServers)
	})
}

func isJoin(content json.RawMessage) bool {
	var c struct {
		Membership string `json:"membership"`
	}
	return json.Unmarshal(content, &c) == nil && c.Membership == "join"
}

// announceJoin sends one joiner's devices to the servers of roomServers
// sharing no other room with them, unless the join only changed their
// profile.
func (s *Service) announceJoin(ctx context.Context, join *pdu.Event, roomServers []string) error {
	if was, err := s.rooms.JoinedBefore(ctx, join); err != nil || was {
		return err
	}
	others, err := s.store.RoommatesOutside(ctx, join.Sender, join.RoomID)
	if err != nil {
		return err
	}
	known := s.servers(others)
	dests := slices.DeleteFunc(slices.Clone(roomServers), func(srv string) bool { return slices.Contains(known, srv) })
	if len(dests) == 0 {
		return nil
	}
	return s.announceAllDevices(ctx, join.Sender, dests)
}

// announceAllDevices sends an m.device_list_update for each of a local
// user's devices, with its keys when it has some, to dests. The stream id
// moves on as for any update; what was last announced to the other
// servers does not change.
func (s *Service) announceAllDevices(ctx context.Context, userID string, dests []string) error {
	devices, err := s.store.Devices(ctx, userID)
	if err != nil || len(devices) == 0 {
		return err
	}
	s.devMu.Lock()
	defer s.devMu.Unlock()
	keys, err := s.e2ee.QueryLocal(ctx, map[string][]string{userID: {}})
	if err != nil {
		return err
	}
	prev, err := s.store.GetDeviceListOutbound(ctx, userID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	out := store.DeviceListOutbound{Snapshot: "{}"}
	if prev != nil {
		out = *prev
	}
	edus := make([]federation.EDU, 0, len(devices))
	for _, d := range devices {
		c, _ := deviceUpdate(userID, d, keys.DeviceKeys[userID][d.DeviceID])
		c["stream_id"], c["prev_id"] = out.StreamID+1, []int64{}
		if out.StreamID > 0 {
			c["prev_id"] = []int64{out.StreamID}
		}
		out.StreamID++
		edus = append(edus, edu("m.device_list_update", c))
	}
	return s.queue.PersistEDUs(ctx, dests, edus, func(tx *store.Tx) error {
		return tx.PutDeviceListOutbound(ctx, userID, out)
	})
}

// ServersFound sends the device lists of a room's local members to
// servers found in the room only once its full state came (a room joined
// with partial state): they heard of no device change meanwhile. The
// work runs off the caller's goroutine.
func (s *Service) ServersFound(roomID string, localMembers, servers []string) {
	servers = slices.DeleteFunc(slices.Clone(servers), func(srv string) bool { return srv == s.self })
	if len(localMembers) == 0 || len(servers) == 0 {
		return
	}
	s.announceInBackground(localMembers, "federation: announce devices to servers found in "+roomID, func(ctx context.Context, u string) error {
		return s.announceAllDevices(ctx, u, servers)
	})
}
