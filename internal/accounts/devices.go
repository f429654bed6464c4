package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// Device is one of a user's devices.
type Device struct {
	DeviceID    string
	DisplayName string // "" when none was set
	LastSeenIP  string
	LastSeenTS  int64 // 0 when unknown
}

// maxDeviceNameBytes bounds device display names, which other users see.
const maxDeviceNameBytes = 256

func deviceFromRow(d store.Device) Device {
	return Device{DeviceID: d.DeviceID, DisplayName: d.DisplayName.String, LastSeenIP: d.LastSeenIP.String, LastSeenTS: d.LastSeenTS.Int64}
}

// Devices lists a user's devices.
func (s *Service) Devices(ctx context.Context, userID string) ([]Device, error) {
	rows, err := s.store.Devices(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	out := make([]Device, 0, len(rows))
	for _, d := range rows {
		out = append(out, s.withSeen(deviceFromRow(d), userID))
	}
	return out, nil
}

// Device returns one of a user's devices, M_NOT_FOUND when it has no such
// device.
func (s *Service) Device(ctx context.Context, userID, deviceID string) (*Device, error) {
	d, err := s.store.GetDevice(ctx, userID, deviceID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errcode.NotFound("no such device")
	}
	if err != nil {
		return nil, fmt.Errorf("get device: %w", err)
	}
	dev := s.withSeen(deviceFromRow(*d), userID)
	return &dev, nil
}

// withSeen is d with its last-seen time noted and not stored yet.
func (s *Service) withSeen(d Device, userID string) Device {
	d.LastSeenTS = max(d.LastSeenTS, s.seen.of(userID, d.DeviceID))
	return d
}

// RenameDevice sets a device's display name; M_NOT_FOUND when the user has
// no such device.
func (s *Service) RenameDevice(ctx context.Context, userID, deviceID, name string) error {
	if len(name) > maxDeviceNameBytes {
		return errcode.InvalidParam("display_name longer than %d bytes", maxDeviceNameBytes)
	}
	err := s.store.InTx(ctx, func(tx *store.Tx) error { return tx.RenameDevice(ctx, userID, deviceID, name) })
	if errors.Is(err, store.ErrNotFound) {
		return errcode.NotFound("no such device")
	}
	if err != nil {
		return fmt.Errorf("rename device: %w", err)
	}
	if h := s.hooks.OnDeviceRenamed; h != nil {
		s.runHook("OnDeviceRenamed", func() error { return h(ctx, userID, deviceID) })
	}
	return nil
}

// DeleteDevices deletes devices of the caller after user-interactive auth
// (the password), as the spec advises: a stolen access token alone must not
// be enough to log the owner out. Unknown devices are ignored.
func (s *Service) DeleteDevices(ctx context.Context, userID string, deviceIDs []string, auth json.RawMessage) error {
	sess, err := s.userInteractiveAuth(ctx, uiaOp{name: "delete_devices", userID: userID, flows: s.reauthFlows(userID)}, auth)
	if err != nil {
		return err
	}
	if err := s.deleteDevices(ctx, userID, deviceIDs); err != nil {
		return err
	}
	s.finishUIA(ctx, sess)
	return nil
}

// deleteDevices removes devices and their tokens.
func (s *Service) deleteDevices(ctx context.Context, userID string, deviceIDs []string) error {
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		for _, d := range deviceIDs {
			if err := tx.DeleteDevice(ctx, userID, d); err != nil {
				return err
			}
			tx.OnCommit(func() { s.cache.invalidate(userID, d) })
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete devices: %w", err)
	}
	s.devicesDeleted(ctx, userID, deviceIDs)
	return nil
}
