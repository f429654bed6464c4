package e2ee

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// Dehydrated devices (MSC3814): a device a client parks on the server,
// pickled and encrypted with a key only the user's clients hold, so that
// to-device messages (room keys) sent while every real device is offline
// are kept for it; a new device rehydrates it and reads them.

// DehydratedDeviceRequest is the body of PUT /dehydrated_device.
type DehydratedDeviceRequest struct {
	DeviceID                 string          `json:"device_id"`
	DeviceData               json.RawMessage `json:"device_data"`
	InitialDeviceDisplayName *string         `json:"initial_device_display_name"`
	UploadRequest
}

// DehydratedDevice is the answer of GET /dehydrated_device.
type DehydratedDevice struct {
	DeviceID   string          `json:"device_id"`
	DeviceData json.RawMessage `json:"device_data"`
}

// maxDeviceData bounds the pickled device.
const maxDeviceData = 256 << 10

func newDeviceID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// PutDehydratedDevice replaces the user's dehydrated device by a new one,
// with its keys, and returns its device id.
func (s *Service) PutDehydratedDevice(ctx context.Context, userID string, req DehydratedDeviceRequest) (string, error) {
	if !present(req.DeviceData) {
		return "", errcode.MissingParam("device_data is required")
	}
	if len(req.DeviceData) > maxDeviceData {
		return "", errcode.TooLarge("device_data is too large")
	}
	m, err := object(req.DeviceData, "device_data")
	if err != nil {
		return "", err
	}
	data, err := canonical(m)
	if err != nil {
		return "", err
	}
	deviceID := req.DeviceID
	if deviceID == "" {
		deviceID = newDeviceID()
	}
	if err := validID(deviceID, "device_id"); err != nil {
		return "", err
	}
	name := sql.NullString{String: "Dehydrated device", Valid: true}
	if req.InitialDeviceDisplayName != nil {
		if len(*req.InitialDeviceDisplayName) > maxIDBytes {
			return "", errcode.InvalidParam("initial_device_display_name is too long")
		}
		name.String = *req.InitialDeviceDisplayName
	}
	// The keys are checked before anything is stored; they are the new
	// device's, which has no stored key yet.
	up, err := parseUpload(userID, deviceID, req.UploadRequest, "")
	if err != nil {
		return "", err
	}
	var replaced string
	err = s.store.InTx(ctx, func(tx *store.Tx) error {
		old, err := tx.GetDehydratedDevice(ctx, userID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if old != nil {
			replaced = old.DeviceID
		}
		if _, err := tx.GetDevice(ctx, userID, deviceID); err == nil && replaced != deviceID {
			return errcode.InvalidParam("device id %s is in use", deviceID)
		} else if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if old != nil {
			if err := tx.DeleteDevice(ctx, userID, old.DeviceID); err != nil {
				return err
			}
			if _, err := tx.DeleteDeviceE2EE(ctx, userID, old.DeviceID); err != nil {
				return err
			}
		}
		if err := tx.UpsertDevice(ctx, store.Device{UserID: userID, DeviceID: deviceID, DisplayName: name}); err != nil {
			return err
		}
		if err := tx.PutDehydratedDevice(ctx, store.DehydratedDevice{UserID: userID, DeviceID: deviceID, DeviceData: data}); err != nil {
			return err
		}
		if _, err := up.apply(ctx, tx); err != nil {
			return err
		}
		return tx.AddDeviceListChange(ctx, userID, "")
	})
	if err != nil {
		return "", err
	}
	if replaced != "" {
		s.acks.forget(deviceKey{userID, replaced})
		s.counts.invalidate(userID, replaced)
	}
	s.counts.invalidate(userID, deviceID)
	s.wakeRoommates(ctx, userID)
	return deviceID, nil
}

// GetDehydratedDevice returns the user's dehydrated device.
func (s *Service) GetDehydratedDevice(ctx context.Context, userID string) (*DehydratedDevice, error) {
	d, err := s.store.GetDehydratedDevice(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errcode.NotFound("no dehydrated device")
	}
	if err != nil {
		return nil, err
	}
	return &DehydratedDevice{DeviceID: d.DeviceID, DeviceData: json.RawMessage(d.DeviceData)}, nil
}

// DeleteDehydratedDevice deletes the user's dehydrated device and its keys
// and returns its id.
func (s *Service) DeleteDehydratedDevice(ctx context.Context, userID string) (string, error) {
	var deviceID string
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		d, err := tx.GetDehydratedDevice(ctx, userID)
		if errors.Is(err, store.ErrNotFound) {
			return errcode.NotFound("no dehydrated device")
		} else if err != nil {
			return err
		}
		deviceID = d.DeviceID
		for _, f := range []func() error{
			func() error { return tx.DeleteDehydratedDevice(ctx, userID) },
			func() error { return tx.DeleteDevice(ctx, userID, deviceID) },
			func() error { _, err := tx.DeleteDeviceE2EE(ctx, userID, deviceID); return err },
			func() error { return tx.AddDeviceListChange(ctx, userID, "") },
		} {
			if err := f(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	s.acks.forget(deviceKey{userID, deviceID})
	s.counts.invalidate(userID, deviceID)
	s.wakeRoommates(ctx, userID)
	return deviceID, nil
}

// DehydratedEvents is a page of the dehydrated device's to-device messages.
type DehydratedEvents struct {
	Events    []json.RawMessage `json:"events"`
	NextBatch string            `json:"next_batch,omitempty"`
}

// maxDehydratedEvents bounds one page of DehydratedDeviceEvents.
const maxDehydratedEvents = 100

// DehydratedDeviceEvents returns the to-device messages waiting for the
// user's dehydrated device after the token since ("" for the first page),
// and deletes those before it: the client has them. next_batch is absent
// once no message is left.
func (s *Service) DehydratedDeviceEvents(ctx context.Context, userID, deviceID, since string) (*DehydratedEvents, error) {
	ok, err := s.store.IsDehydratedDevice(ctx, userID, deviceID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errcode.Forbidden("%s is not your dehydrated device", truncate(deviceID))
	}
	var from int64
	if since != "" {
		v, err := strconv.ParseInt(strings.TrimPrefix(since, "d"), 10, 64)
		if err != nil || v < 0 || !strings.HasPrefix(since, "d") {
			return nil, errcode.InvalidParam("invalid next_batch token")
		}
		from = v
		if err := s.store.AckToDevice(ctx, userID, deviceID, from); err != nil {
			return nil, err
		}
	}
	to := s.store.Streams.ToDevice.Current()
	out := &DehydratedEvents{Events: []json.RawMessage{}}
	if to <= from {
		return out, nil
	}
	msgs, err := s.store.ToDeviceMessages(ctx, userID, deviceID, from, to, maxDehydratedEvents)
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		out.Events = append(out.Events, toDeviceEvent(m.Sender, m.Type, m.Content))
	}
	if len(msgs) > 0 {
		out.NextBatch = "d" + strconv.FormatInt(msgs[len(msgs)-1].Pos, 10)
	}
	return out, nil
}
