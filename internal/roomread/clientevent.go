package roomread

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"time"

	"luxchat/internal/parallel"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Format options for ClientEvent.
type Format struct {
	// Viewer is the user the event is shown to; DeviceID their device, so
	// that transaction_id is shown to the device that sent the event.
	Viewer   string
	DeviceID string
	// OmitRoomID drops room_id (sync timelines).
	OmitRoomID bool
	// Relations is the bundled aggregation shown as unsigned.m.relations
	// (nil for none), see Bundles.
	Relations json.RawMessage
	// Membership is the Viewer's membership when the event was sent,
	// shown as unsigned.membership (MSC4115); "" for none.
	Membership string
}

// ClientEvent renders a stored event for a client. The fixed part of the
// client form is cached per event (rooms.Service.ClientBase); room_id and
// unsigned (whose age changes) are spliced in without decoding anything.
func (s *Service) ClientEvent(row *store.EventRow, f Format) json.RawMessage {
	base := s.rooms.ClientBase(row)
	out := make([]byte, 0, len(base)+len(row.Unsigned)+len(row.RoomID)+64)
	out = rooms.AppendHead(out, base, row, f.OmitRoomID)
	return appendTail(out, row.OriginTS, row.Sender, row.TxnID.String, row.TxnDevice.String, f)
}

// appendTail completes a head: the age and what depends on the reader.
func appendTail(out []byte, originTS int64, sender, txnID, txnDevice string, f Format) []byte {
	out = append(out, `"age":`...)
	out = strconv.AppendInt(out, max(time.Now().UnixMilli()-originTS, 0), 10)
	if txnDevice == rooms.DelayedTxnDevice {
		// A delayed event: its delay id is shown to its sender (MSC4140).
		if sender == f.Viewer {
			out = append(out, `,"org.matrix.msc4140.delay_id":`...)
			out = rooms.AppendJSONString(out, txnID)
		}
	} else if txnID != "" && sender == f.Viewer && txnDevice == f.DeviceID {
		out = append(out, `,"transaction_id":`...)
		out = rooms.AppendJSONString(out, txnID)
	}
	if f.Membership != "" {
		out = append(out, `,"membership":`...)
		out = rooms.AppendJSONString(out, f.Membership)
	}
	if len(f.Relations) > 0 {
		out = append(out, `,"m.relations":`...)
		out = append(out, f.Relations...)
	}
	return append(out, "}}"...)
}

// RenderState renders state events for a user. Their state forms are
// used when cached (rooms.StateForm), then rows already at hand (by event
// id, may be nil), then the database.
func (s *Service) RenderState(ctx context.Context, st store.StateMap, userID string, have map[string]*store.EventRow) ([]json.RawMessage, error) {
	ids := make([]string, 0, len(st))
	for _, id := range st {
		ids = append(ids, id)
	}
	forms, err := s.stateForms(ctx, ids, have)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(forms))
	for _, f := range forms {
		out = append(out, renderForm(nil, f, userID))
	}
	return out, nil
}

// renderForm appends the client form of a state event for a reader.
func renderForm(out []byte, f *rooms.StateForm, viewer string) []byte {
	out = append(out, f.Head...)
	return appendTail(out, f.OriginTS, f.Sender, f.TxnID, f.TxnDevice, Format{Viewer: viewer})
}

// stateForms returns the state forms of the events ids (those stored),
// making and caching the ones not cached from rows at hand or read.
func (s *Service) stateForms(ctx context.Context, ids []string, have map[string]*store.EventRow) ([]*rooms.StateForm, error) {
	forms := s.rooms.StateForms(ids)
	var missing []string
	for i, f := range forms {
		if f == nil {
			missing = append(missing, ids[i])
		}
	}
	if len(missing) == 0 {
		return forms, nil
	}
	rows := make([]*store.EventRow, 0, len(missing))
	var read []string
	for _, id := range missing {
		if row := have[id]; row != nil {
			rows = append(rows, row)
		} else {
			read = append(read, id)
		}
	}
	// The events read are made into forms a share per core at once when
	// they are many: the first /members of a room of 10,000 waits for
	// all of them.
	parts := max(1, min(runtime.GOMAXPROCS(0), len(read)/formsPerPart))
	made, madeIDs := make([][]*rooms.StateForm, parts+1), make([][]string, parts+1)
	errs := make([]error, parts)
	made[parts], madeIDs[parts] = s.makeForms(rows)
	parallel.For(parts, func(i int) {
		part := read[i*len(read)/parts : (i+1)*len(read)/parts]
		if len(part) == 0 {
			return
		}
		more, err := s.store.GetEvents(ctx, part)
		if err != nil {
			errs[i] = err
			return
		}
		made[i], madeIDs[i] = s.makeForms(more)
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	all, allIDs := slices.Concat(made...), slices.Concat(madeIDs...)
	s.rooms.PutStateForms(allIDs, all)
	forms = slices.DeleteFunc(forms, func(f *rooms.StateForm) bool { return f == nil })
	return append(forms, all...), nil
}

// formsPerPart is the least number of state events worth a goroutine of
// their own in stateForms.
const formsPerPart = 100

// makeForms makes the state forms of rows.
func (s *Service) makeForms(rows []*store.EventRow) ([]*rooms.StateForm, []string) {
	made, ids := make([]*rooms.StateForm, len(rows)), make([]string, len(rows))
	bases, memberships := s.rooms.StateClientBases(rows)
	for i, row := range rows {
		made[i], ids[i] = rooms.NewStateForm(row, bases[i], memberships[i]), row.EventID
	}
	return made, ids
}
