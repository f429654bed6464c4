package e2ee

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/store"
)

// Service is the end-to-end encryption domain. It is safe for concurrent
// use.
type Service struct {
	hooks Hooks

	store      *store.Store
	serverName id.ServerName
	log        *slog.Logger

	acks ackTable // to-device positions delivered and not deleted yet

	counts countCache // one-time key counts per device (see countCache)

	lastTxnSweep atomic.Int64 // unix ms of the last sweep of old to-device transaction ids
}

// Hooks connect the service to the other domains; the server's wiring
// supplies them.
type Hooks struct {
	// Wake tells the syncs of users that they have news (nil: nobody is woken).
	Wake func(users ...string)
	// RequireUIA runs user-interactive auth (the password) for an action of
	// a logged-in user: nil when done, an error to send (the accounts
	// package's *AuthRequired) otherwise; nil refuses actions that need
	// it.
	RequireUIA func(ctx context.Context, userID, deviceID string, auth json.RawMessage, action string) error
	// LastMembershipChange returns the events position of the newest
	// membership change, so that device list checks skip the membership
	// query when no one joined or left since a sync's token (nil: always
	// query).
	LastMembershipChange func() int64
	// Remote reaches other servers for their users' keys (nil: remote
	// users are reported in failures).
	Remote Remote
	// OnDeviceListChange is told, after the commit, about local users
	// whose devices or cross-signing keys changed (nil: nobody).
	OnDeviceListChange func(users ...string)
	// SendRemote takes to-device messages for users of other servers
	// (nil: they are dropped).
	SendRemote func(ctx context.Context, sender, evType string, messages map[string]map[string]json.RawMessage)
}

// New returns the service for the local server serverName.
func New(st *store.Store, serverName string, log *slog.Logger, hooks Hooks) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{store: st, serverName: id.ServerName(serverName), log: log, hooks: hooks}
}

// Caller is the authenticated user and device of a request.
type Caller struct {
	UserID   string
	DeviceID string
}

// Error codes this package needs beyond errcode's constructors.
func invalidSignature(format string, a ...any) *errcode.Error {
	return &errcode.Error{Code: "M_INVALID_SIGNATURE", Status: http.StatusBadRequest, Message: fmt.Sprintf(format, a...)}
}

func wrongBackupVersion(current string) *errcode.Error {
	e := &errcode.Error{Code: "M_WRONG_ROOM_KEYS_VERSION", Status: http.StatusForbidden, Message: "wrong backup version"}
	return e.With("current_version", current)
}

// isLocal reports whether userID is a valid id of this server.
func (s *Service) isLocal(userID string) bool {
	u, err := id.ParseUserID(userID)
	return err == nil && u.Server() == s.serverName
}

// wake wakes users' syncs.
func (s *Service) wake(users ...string) {
	if s.hooks.Wake != nil && len(users) > 0 {
		s.hooks.Wake(users...)
	}
}

// wakeRoommates wakes every user sharing a joined room with one of users,
// and the users themselves: their device lists changed.
func (s *Service) wakeRoommates(ctx context.Context, users ...string) {
	if s.hooks.OnDeviceListChange != nil {
		if local := slices.DeleteFunc(slices.Clone(users), func(u string) bool { return !s.isLocal(u) }); len(local) > 0 {
			s.hooks.OnDeviceListChange(local...)
		}
	}
	all := slices.Clone(users)
	for _, u := range users {
		mates, err := s.store.Roommates(ctx, u)
		if err != nil {
			s.log.Warn("e2ee: list roommates to wake", "user", u, "err", err)
			continue
		}
		all = append(all, mates...)
	}
	slices.Sort(all)
	s.wake(slices.Compact(all)...)
}

// DevicesDeleted removes the keys, pending to-device messages and
// signatures of deleted devices and announces the change to the users
// sharing a room with their owner. It is accounts.Hooks.OnDevicesDeleted.
func (s *Service) DevicesDeleted(ctx context.Context, userID string, deviceIDs []string) error {
	announce := false
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		announce = false
		for _, d := range deviceIDs {
			had, err := tx.DeleteDeviceE2EE(ctx, userID, d)
			if err != nil {
				return err
			}
			announce = announce || had
			s.acks.forget(deviceKey{userID, d})
			tx.OnCommit(func() { s.counts.invalidate(userID, d) })
		}
		if dd, err := tx.GetDehydratedDevice(ctx, userID); err == nil && slices.Contains(deviceIDs, dd.DeviceID) {
			if err := tx.DeleteDehydratedDevice(ctx, userID); err != nil {
				return err
			}
		}
		if !announce {
			return nil // a device without keys: nobody knew it
		}
		return tx.AddDeviceListChange(ctx, userID, "")
	})
	if err != nil {
		return fmt.Errorf("delete device keys: %w", err)
	}
	if announce {
		s.wakeRoommates(ctx, userID)
	} else {
		s.tellServers(userID)
	}
	return nil
}

// tellServers lets other servers learn of a change to a device without
// keys: they list such devices, while local clients, which only track
// keys, need no wake-up.
func (s *Service) tellServers(userID string) {
	if s.hooks.OnDeviceListChange != nil && s.isLocal(userID) {
		s.hooks.OnDeviceListChange(userID)
	}
}

// DeviceRenamed announces a device's new display name, which key queries
// show with its keys, to the users sharing a room with its owner (and to
// their servers). A device without keys concerns only other servers. It
// is accounts.Hooks.OnDeviceRenamed.
func (s *Service) DeviceRenamed(ctx context.Context, userID, deviceID string) error {
	announce := false
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.GetDeviceKeys(ctx, userID, deviceID)
		if errors.Is(err, store.ErrNotFound) {
			announce = false
			return nil
		}
		if err != nil {
			return err
		}
		announce = true
		return tx.AddDeviceListChange(ctx, userID, "")
	})
	if err != nil {
		return fmt.Errorf("announce device rename: %w", err)
	}
	if announce {
		s.wakeRoommates(ctx, userID)
	} else {
		s.tellServers(userID)
	}
	return nil
}

// txnTTL is how long /sendToDevice transaction ids are remembered.
const txnTTL = 24 * time.Hour

// sweepTxns forgets old to-device transaction ids, at most once an hour.
func (s *Service) sweepTxns(ctx context.Context) {
	now := time.Now().UnixMilli()
	last := s.lastTxnSweep.Load()
	if now-last < time.Hour.Milliseconds() || !s.lastTxnSweep.CompareAndSwap(last, now) {
		return
	}
	if err := s.store.DeleteOldToDeviceTxns(ctx, now-txnTTL.Milliseconds()); err != nil {
		s.log.Warn("e2ee: sweep to-device transaction ids", "err", err)
	}
}
