package slidingsync

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"

	"luxchat/internal/store"
	"luxchat/internal/sync"
	"luxchat/internal/threadsubs"
)

// extConfig is a connection's extension settings; a request changes only
// the extensions it names.
type extConfig struct {
	toDevice      bool
	toDeviceLimit int
	e2ee          bool
	accountData   roomsExt
	receipts      roomsExt
	typing        roomsExt
	threadSubs    bool
	threadLimit   int
}

// roomsExt is the setting of an extension over rooms.
type roomsExt struct {
	on       bool
	lists    []string // with hasLists: only these lists' rooms
	hasLists bool
	rooms    []string // with hasRooms: only these subscriptions ("*": all)
	hasRooms bool
}

func (e *extConfig) apply(r ExtensionsRequest) {
	if r.ToDevice != nil {
		if r.ToDevice.Enabled != nil {
			e.toDevice = *r.ToDevice.Enabled
		} else if !e.toDevice {
			e.toDevice = true // named without enabled: on, as clients mean it
		}
		e.toDeviceLimit = r.ToDevice.Limit
	}
	if r.E2EE != nil && r.E2EE.Enabled != nil {
		e.e2ee = *r.E2EE.Enabled
	}
	set := func(x *roomsExt, r *RoomsExtension) {
		if r == nil {
			return
		}
		if r.Enabled != nil {
			x.on = *r.Enabled
		}
		if r.HasList {
			x.lists, x.hasLists = r.Lists, true
		}
		if r.HasRoom {
			x.rooms, x.hasRooms = r.Rooms, true
		}
	}
	set(&e.accountData, r.AccountData)
	set(&e.receipts, r.Receipts)
	set(&e.typing, r.Typing)
	if t := r.ThreadSubs; t != nil {
		if t.Enabled != nil {
			e.threadSubs = *t.Enabled
		}
		if t.Limit > 0 {
			e.threadLimit = t.Limit
		}
	}
}

// covers reports whether an extension applies to a wanted room.
func (x roomsExt) covers(id string, w *wanted, subscribed bool) bool {
	inLists := len(w.lists) > 0
	if x.hasLists {
		inLists = slices.ContainsFunc(w.lists, func(l string) bool { return slices.Contains(x.lists, l) })
	}
	inRooms := subscribed
	if x.hasRooms {
		inRooms = slices.Contains(x.rooms, id) || subscribed && slices.Contains(x.rooms, "*")
	}
	return inLists || inRooms
}

// Extensions are the extensions' results.
type Extensions struct {
	ToDevice    *ToDeviceResult    `json:"to_device,omitempty"`
	E2EE        *E2EEResult        `json:"e2ee,omitempty"`
	AccountData *AccountDataResult `json:"account_data,omitempty"`
	Receipts    *RoomsResult       `json:"receipts,omitempty"`
	Typing      *RoomsResult       `json:"typing,omitempty"`
	ThreadSubs  *ThreadSubsResult  `json:"io.element.msc4308.thread_subscriptions,omitempty"`
}

// ThreadSubsResult is the thread subscriptions extension's answer
// (MSC4308): the newest changes since the pos, and when some are left
// out, the token that pages back to them (GET .../thread_subscriptions).
type ThreadSubsResult struct {
	*threadsubs.Page
	PrevBatch string `json:"prev_batch,omitempty"`
}

// ToDeviceResult is the to_device extension's answer (MSC3885).
type ToDeviceResult struct {
	NextBatch string            `json:"next_batch"`
	Events    []json.RawMessage `json:"events"`
}

// E2EEResult is the e2ee extension's answer (MSC3884).
type E2EEResult struct {
	DeviceLists      *sync.DeviceLists `json:"device_lists,omitempty"`
	OTKCounts        map[string]int    `json:"device_one_time_keys_count"`
	FallbackKeyTypes []string          `json:"device_unused_fallback_key_types"`
}

// AccountDataResult is the account_data extension's answer (MSC3959).
type AccountDataResult struct {
	Global []json.RawMessage            `json:"global,omitempty"`
	Rooms  map[string][]json.RawMessage `json:"rooms,omitempty"`
}

// RoomsResult is the answer of receipts (MSC3960) and typing (MSC3961):
// one event per room.
type RoomsResult struct {
	Rooms map[string]json.RawMessage `json:"rooms"`
}

func (e *Extensions) empty() bool {
	return (e.ToDevice == nil || len(e.ToDevice.Events) == 0) &&
		(e.E2EE == nil || e.E2EE.DeviceLists == nil) &&
		(e.AccountData == nil || len(e.AccountData.Global)+len(e.AccountData.Rooms) == 0) &&
		(e.Receipts == nil || len(e.Receipts.Rooms) == 0) &&
		(e.Typing == nil || len(e.Typing.Rooms) == 0) &&
		(e.ThreadSubs == nil || e.ThreadSubs.Empty())
}

// extensions fills the extensions the connection has on.
func (b *builder) extensions(ctx context.Context, want map[string]*wanted) error {
	ext := b.next.ext
	devices := b.s.sync.Devices()
	from := b.base.token
	if ext.toDevice && devices != nil {
		since := int64(0)
		if b.req.Extensions.ToDevice != nil && b.req.Extensions.ToDevice.Since != "" {
			since, _ = strconv.ParseInt(b.req.Extensions.ToDevice.Since, 10, 64)
		}
		since = max(min(since, b.cur.ToDevice), 0)
		limit := ext.toDeviceLimit
		if limit <= 0 || limit > sync.MaxToDevice {
			limit = sync.MaxToDevice
		}
		// Messages up to since were received: ToDevice deletes them, as a
		// /sync with that since does.
		evs, last, err := devices.ToDevice(ctx, b.req.UserID, b.req.DeviceID, since, b.cur.ToDevice, limit)
		if err != nil {
			return err
		}
		if evs == nil {
			evs = []json.RawMessage{}
		}
		b.resp.Extensions.ToDevice = &ToDeviceResult{NextBatch: strconv.FormatInt(last, 10), Events: evs}
	}
	if ext.e2ee && devices != nil {
		res := &E2EEResult{}
		var since = &from
		if b.base.first {
			since = nil
		}
		changed, left, err := devices.DeviceListChanges(ctx, b.req.UserID, since, b.cur)
		if err != nil {
			return err
		}
		if len(changed)+len(left) > 0 {
			res.DeviceLists = &sync.DeviceLists{Changed: changed, Left: left}
		}
		if res.OTKCounts, res.FallbackKeyTypes, err = devices.KeyCounts(ctx, b.req.UserID, b.req.DeviceID); err != nil {
			return err
		}
		if res.OTKCounts == nil {
			res.OTKCounts = map[string]int{}
		}
		if res.FallbackKeyTypes == nil {
			res.FallbackKeyTypes = []string{}
		}
		b.resp.Extensions.E2EE = res
	}
	// The rooms each extension over rooms covers; a room new to the
	// client (sent in full) gets all of it, the others what changed.
	covered := func(x roomsExt) (fresh, old []string) {
		for id, w := range want {
			if w.m.Membership != "join" {
				continue
			}
			_, sub := b.next.subs[id]
			if !x.covers(id, w, sub) {
				continue
			}
			if b.initial[id] || b.base.first {
				fresh = append(fresh, id)
			} else {
				old = append(old, id)
			}
		}
		return fresh, old
	}
	if x := ext.accountData; x.on {
		res := &AccountDataResult{}
		fresh, old := covered(x)
		var changes []store.AccountData
		if !b.base.first && b.cur.AccountData > from.AccountData {
			var err error
			if changes, err = b.s.store.AccountDataSince(ctx, b.req.UserID, from.AccountData, b.cur.AccountData); err != nil {
				return err
			}
		}
		if b.base.first {
			res.Global = b.data.globalEvents()
		}
		for _, ad := range changes {
			ev := adEvent(ad.Type, json.RawMessage(ad.Content))
			switch {
			case ad.RoomID == "":
				res.Global = append(res.Global, ev)
			case slices.Contains(old, ad.RoomID):
				if res.Rooms == nil {
					res.Rooms = map[string][]json.RawMessage{}
				}
				res.Rooms[ad.RoomID] = append(res.Rooms[ad.RoomID], ev)
			}
		}
		for _, id := range fresh {
			if evs := b.data.roomEvents(id); len(evs) > 0 {
				if res.Rooms == nil {
					res.Rooms = map[string][]json.RawMessage{}
				}
				res.Rooms[id] = evs
			}
		}
		b.resp.Extensions.AccountData = res
	}
	if x := ext.receipts; x.on {
		res := &RoomsResult{Rooms: map[string]json.RawMessage{}}
		fresh, old := covered(x)
		var rs []store.Receipt
		if len(fresh) > 0 {
			// A room new to the client: the receipts on the events it is
			// sent and the user's own, not every member's.
			all, err := b.s.store.ReceiptsSince(ctx, fresh, 0, b.cur.Receipts)
			if err != nil {
				return err
			}
			for _, r := range all {
				if b.timelineIDs[r.EventID] || r.UserID == b.req.UserID {
					rs = append(rs, r)
				}
			}
		}
		if len(old) > 0 && b.cur.Receipts > from.Receipts {
			more, err := b.s.store.ReceiptsSince(ctx, old, from.Receipts, b.cur.Receipts)
			if err != nil {
				return err
			}
			rs = append(rs, more...)
		}
		for id, ev := range sync.ReceiptEvents(rs, b.req.UserID) {
			res.Rooms[id] = ev
		}
		b.resp.Extensions.Receipts = res
	}
	if x := ext.typing; x.on {
		res := &RoomsResult{Rooms: map[string]json.RawMessage{}}
		fresh, old := covered(x)
		for _, id := range fresh {
			if users, ok := b.s.sync.TypingSince(id, 0); ok && len(users) > 0 {
				res.Rooms[id] = typingEvent(users)
			}
		}
		if b.cur.Typing > from.Typing {
			for _, id := range old {
				if users, ok := b.s.sync.TypingSince(id, from.Typing); ok {
					res.Rooms[id] = typingEvent(users)
				}
			}
		}
		b.resp.Extensions.Typing = res
	}
	if ext.threadSubs && b.s.threadSubs != nil {
		// Changes take account data positions (see package threadsubs).
		after := from.AccountData
		if b.base.first {
			after = 0
		}
		limit := ext.threadLimit
		if limit == 0 {
			limit = defaultThreadSubsLimit
		}
		page, prev, err := b.s.threadSubs.Changes(ctx, b.req.UserID, after, b.cur.AccountData, limit)
		if err != nil {
			return err
		}
		b.resp.Extensions.ThreadSubs = &ThreadSubsResult{Page: page, PrevBatch: prev}
	}
	return nil
}

// defaultThreadSubsLimit is MSC4308's default limit.
const defaultThreadSubsLimit = 100

func typingEvent(users []string) json.RawMessage {
	if users == nil {
		users = []string{}
	}
	slices.Sort(users)
	ev, _ := json.Marshal(map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": users}})
	return ev
}
