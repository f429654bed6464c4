package server

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"luxchat/internal/accounts"
	"luxchat/internal/directory"
	"luxchat/internal/e2ee"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/roomread"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
	"luxchat/internal/sync"
)

// The wiring: what each domain does when another one acts. Every hook a
// service is built with is here, as a method of the Server that calls the
// domains concerned in order; the services are built in New, so these run
// only once all exist. Federation's parts (Exchange) are nil when it is
// off.

// roomHooks: what follows an event into a room.
func (s *Server) roomHooks() rooms.Hooks {
	return rooms.Hooks{Index: s.indexEvent, Committed: s.eventsCommitted, FullState: s.fullStateCommitted,
		ServersFound: s.serversFound, ReadMoved: s.readMoved}
}

// indexEvent runs in the transaction of each event that enters a room's
// timeline (after the rooms' own rows: relations, history gaps), so that
// what is derived from it commits with it.
func (s *Server) indexEvent(ctx context.Context, tx *store.Tx, ev *pdu.Event, pos int64) error {
	// Room directory (public rooms, names) and user directory (shared rooms).
	if err := s.Directory.IndexEvent(ctx, tx, ev, pos); err != nil {
		return err
	}
	// Push rules: notifications and unread counts commit with the event.
	if err := s.Push.Index(ctx, tx, ev, pos); err != nil {
		return err
	}
	// Full-text search of unencrypted messages.
	if err := s.search(ctx, tx, ev, pos); err != nil {
		return err
	}
	// Delayed state events of other users over the same key: cancelled.
	if err := s.Delayed.IndexEvent(ctx, tx, ev); err != nil {
		return err
	}
	// Federation: the event's outbox rows, so that a crash between the
	// commit and the queueing only delays its sending.
	if s.Exchange != nil {
		return s.Exchange.IndexFanout(ctx, tx, ev, pos)
	}
	return nil
}

// eventsCommitted runs after each commit, under the room's writer lock:
// it only queues work.
func (s *Server) eventsCommitted(c rooms.Committed) {
	s.Push.Committed(c)        // pushes to the users' pushers
	s.Push.CarryRulesOnJoin(c) // a joined upgraded room keeps its push rules
	if s.Exchange != nil {
		s.Exchange.OnCommitted(c)   // the events to the room's other servers
		s.Exchange.AnnounceJoins(c) // joiners' devices to servers new to them
	}
	// Application services read the events from the stream: wake them.
	s.AppServices.EventsCommitted(c.RoomID, len(c.Memberships) > 0)
}

// renderForAppService is the client form of an event in a transaction.
func (s *Server) renderForAppService(row *store.EventRow) json.RawMessage {
	return s.Read.ClientEvent(row, roomread.Format{})
}

// fullStateCommitted runs in the transaction that completes the state of
// a room joined with partial state.
func (s *Server) fullStateCommitted(ctx context.Context, tx *store.Tx, roomID string) error {
	return s.Directory.IndexFullState(ctx, tx, roomID)
}

// serversFound: a room's full state shows servers the partial state did
// not; they missed our members' device changes.
func (s *Server) serversFound(roomID string, localMembers, servers []string) {
	if s.Exchange != nil {
		s.Exchange.ServersFound(roomID, localMembers, servers)
	}
}

// readMoved: a user's read receipt moved (unread counts change).
func (s *Server) readMoved(roomID, userID string) { s.Push.ReadMoved(roomID, userID) }

// accountHooks: what follows a change to an account.
func (s *Server) accountHooks() accounts.Hooks {
	h := accounts.Hooks{
		OnRegister:       s.userRegistered,
		OnProfileChange:  s.profileChanged,
		OnDeactivate:     s.userDeactivated,
		OnDeviceRenamed:  s.deviceRenamed,
		OnDevicesDeleted: s.devicesDeleted,
	}
	if s.Federation != nil {
		h.RemoteProfile = s.remoteProfile
	}
	return h
}

func (s *Server) userRegistered(ctx context.Context, userID, displayName string) error {
	return s.Directory.ProfileChanged(ctx, userID, displayName, "")
}

func (s *Server) profileChanged(ctx context.Context, userID, displayName, avatarURL string) error {
	return errors.Join(s.Directory.ProfileChanged(ctx, userID, displayName, avatarURL),
		s.Rooms.UpdateProfile(ctx, userID, displayName, avatarURL))
}

func (s *Server) userDeactivated(ctx context.Context, userID string) error {
	return errors.Join(s.Directory.Deactivated(ctx, userID), s.Rooms.LeaveAll(ctx, userID))
}

func (s *Server) deviceRenamed(ctx context.Context, userID, deviceID string) error {
	return s.E2EE.DeviceRenamed(ctx, userID, deviceID)
}

func (s *Server) devicesDeleted(ctx context.Context, userID string, deviceIDs []string) error {
	return errors.Join(s.E2EE.DevicesDeleted(ctx, userID, deviceIDs), s.Push.DevicesDeleted(ctx, userID, deviceIDs))
}

func (s *Server) remoteProfile(ctx context.Context, userID string) (*accounts.Profile, error) {
	return s.Exchange.Profile(ctx, userID)
}

// e2eeHooks: what end-to-end encryption needs of the others.
func (s *Server) e2eeHooks() e2ee.Hooks {
	h := e2ee.Hooks{
		Wake:                 s.wake,
		LastMembershipChange: s.lastMembershipChange,
		RequireUIA:           s.requireUIA,
	}
	if s.Federation != nil {
		h.Remote = remoteKeys{s}
		h.OnDeviceListChange = s.deviceListChanged
		h.SendRemote = s.sendToRemoteDevices
	}
	return h
}

func (s *Server) wake(users ...string) {
	s.Sync.Wake(users...)
	s.AppServices.UsersWoken(users...) // to-device messages, keys and device lists of their users
}

func (s *Server) lastMembershipChange() int64 { return s.Rooms.LastMembershipChange() }

func (s *Server) requireUIA(ctx context.Context, userID, deviceID string, auth json.RawMessage, action string) error {
	var approval accounts.OAuthApproval
	if s.OAuth != nil {
		approval = s.OAuth.ApprovalURL
	}
	return s.Accounts.RequireUIA(ctx, accounts.Caller{UserID: userID, DeviceID: deviceID}, auth, action, approval)
}

// deviceListChanged: local users' devices changed; other servers hear of it.
func (s *Server) deviceListChanged(users ...string) { s.Exchange.DeviceListChanged(users...) }

func (s *Server) sendToRemoteDevices(ctx context.Context, sender, evType string, messages map[string]map[string]json.RawMessage) {
	s.Exchange.SendToDevice(ctx, sender, evType, messages)
}

// remoteKeys asks other servers for their users' keys.
type remoteKeys struct{ s *Server }

func (r remoteKeys) QueryKeys(ctx context.Context, server string, devices map[string][]string) (*e2ee.QueryResult, error) {
	return r.s.Exchange.RemoteKeys().QueryKeys(ctx, server, devices)
}

func (r remoteKeys) ClaimKeys(ctx context.Context, server string, want map[string]map[string]string) (*e2ee.ClaimResult, error) {
	return r.s.Exchange.RemoteKeys().ClaimKeys(ctx, server, want)
}

// syncHooks: what the other domains add to syncs.
func (s *Server) syncHooks() sync.Hooks {
	h := sync.Hooks{Devices: s.E2EE, PushRules: s.pushRules, AccountData: s.accountDataChanged}
	if s.Config.Push.Enabled {
		h.NotificationCounts = s.notificationCounts
	}
	if s.Federation != nil || s.AppServices != nil {
		h.Federation = syncEphemeral{s}
	}
	return h
}

// accountDataChanged runs in the transaction that stores an item of a
// user's account data: the user directory choice commits with it.
func (s *Server) accountDataChanged(ctx context.Context, tx *store.Tx, userID, roomID, typ string, content []byte) error {
	return s.Directory.AccountDataChanged(ctx, tx, userID, roomID, typ, content)
}

func (s *Server) pushRules(ctx context.Context, userID string) (json.RawMessage, error) {
	return s.Push.RulesEvent(ctx, userID)
}

func (s *Server) notificationCounts(ctx context.Context, userID string, roomIDs []string, upTo int64) ([]store.ThreadCount, error) {
	return s.Push.Counts(ctx, userID, roomIDs, upTo)
}

// syncEphemeral tells other servers and the application services of
// local typing, receipts and presence.
type syncEphemeral struct{ s *Server }

func (f syncEphemeral) Typing(ctx context.Context, roomID, userID string, typing bool, timeout time.Duration, joined []string) {
	if f.s.Exchange != nil {
		f.s.Exchange.Outbound().Typing(ctx, roomID, userID, typing, timeout, joined)
	}
	f.s.AppServices.Typing(roomID, userID, typing)
}

func (f syncEphemeral) Receipt(ctx context.Context, r store.Receipt) {
	if f.s.Exchange != nil && r.Type != "m.read.private" { // private receipts never leave the server
		f.s.Exchange.Outbound().Receipt(ctx, r)
	}
	f.s.AppServices.Receipt(r)
}

func (f syncEphemeral) Presence(ctx context.Context, p store.Presence) {
	if f.s.Exchange != nil {
		f.s.Exchange.Outbound().Presence(ctx, p)
	}
	f.s.AppServices.Presence(p)
}

// directoryRemote reaches other servers' directories (nil without
// federation).
func (s *Server) directoryRemote() directory.Remote {
	if s.Federation == nil {
		return nil
	}
	return s.Federation
}
