package sync

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	gosync "sync"
	"time"

	"luxchat/internal/filter"
	"luxchat/internal/parallel"
	"luxchat/internal/roomread"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
	"luxchat/internal/streamtoken"
)

const defaultTimelineLimit = 10

// build assembles the response for the window (since, cur]; since nil is
// an initial sync.
func (s *Service) build(ctx context.Context, req Request, since *streamtoken.Token, cur streamtoken.Token) (*Response, error) {
	f := req.Filter
	var from streamtoken.Token
	if since != nil {
		from = *since
	}
	resp := &Response{NextBatch: cur.String()}
	memberships, err := s.rooms.Memberships(ctx, req.UserID)
	if err != nil {
		return nil, err
	}
	var roomFilter *filter.RoomFilter
	if f.Room != nil {
		roomFilter = f.Room
	}
	ignored, err := s.read.IgnoredUsers(ctx, req.UserID)
	if err != nil {
		return nil, err
	}
	req.ignored = ignored
	rr := &RoomsResp{}
	joinedIDs := make([]string, 0, len(memberships))
	joins := make([]store.Membership, 0, len(memberships))
	for _, m := range memberships {
		if !roomFilter.AllowsRoom(m.RoomID) {
			continue
		}
		changed := m.Pos > from.Events && m.Pos <= cur.Events
		switch m.Membership {
		case "join":
			if !lazyMembers(f) && s.rooms.IsPartialState(m.RoomID) {
				// A room joined with partial state is shown to syncs that
				// do not lazy-load members once its members are known.
				continue
			}
			joinedIDs = append(joinedIDs, m.RoomID)
			joins = append(joins, m)
		case "invite", "knock":
			if !(since == nil || changed) {
				continue
			}
			if m.Membership == "invite" {
				// Invites from ignored users, and those the user's invite
				// permission blocks or ignores, are never shown.
				inviter := s.inviter(ctx, m)
				if ignored[inviter] {
					continue
				}
				if a, err := s.rooms.InviteAction(ctx, req.UserID, inviter); err != nil {
					return nil, err
				} else if a != rooms.InviteAllow {
					continue
				}
			}
			stripped, err := s.read.StrippedState(ctx, m.RoomID, req.UserID)
			if err != nil {
				return nil, err
			}
			if m.Membership == "invite" {
				if rr.Invite == nil {
					rr.Invite = map[string]*InvitedRoom{}
				}
				rr.Invite[m.RoomID] = &InvitedRoom{InviteState: Events{stripped}}
			} else {
				if rr.Knock == nil {
					rr.Knock = map[string]*KnockedRoom{}
				}
				rr.Knock[m.RoomID] = &KnockedRoom{KnockState: Events{stripped}}
			}
		case "leave", "ban":
			// A leave in the window is always shown (even of a room
			// forgotten since: other devices must learn of the leave);
			// older ones only when the filter asks for them on a sync
			// that shows everything.
			include := since != nil && changed
			if since == nil || req.FullState {
				include = include || roomFilter != nil && roomFilter.IncludeLeave && !m.Forgotten
			}
			if !include {
				continue
			}
			lr, err := s.leftRoom(ctx, req, m, since == nil || req.FullState, from)
			if err != nil {
				return nil, err
			}
			if rr.Leave == nil {
				rr.Leave = map[string]*LeftRoom{}
			}
			rr.Leave[m.RoomID] = lr
		}
	}
	// An initial sync shows every joined room: their unread counts (a
	// statement or a few for all, when not cached) are counted while the
	// rooms are built.
	var early *earlyCounts
	if since == nil && s.hooks.NotificationCounts != nil && len(joinedIDs) > 0 {
		early = s.countEarly(ctx, req.UserID, joinedIDs, cur.Events)
		defer early.wait() // an error below returns before fillCounts
	}
	if err := s.joinedRooms(ctx, req, joins, since, from, cur, rr); err != nil {
		return nil, err
	}
	// joined returns a joined room's section, adding one (with its unread
	// counts) for rooms that only have ephemeral events or account data.
	joined := func(roomID string) *JoinedRoom {
		if jr := rr.Join[roomID]; jr != nil {
			return jr
		}
		jr := emptyJoined()
		s.fillUnread(ctx, jr, roomID, req.UserID, cur.Events)
		if rr.Join == nil {
			rr.Join = map[string]*JoinedRoom{}
		}
		rr.Join[roomID] = jr
		return jr
	}
	// Receipts of joined rooms.
	if len(joinedIDs) > 0 && cur.Receipts > from.Receipts {
		rcpts, err := s.store.ReceiptsSince(ctx, joinedIDs, from.Receipts, cur.Receipts)
		if err != nil {
			return nil, err
		}
		for roomID, ev := range receiptEvents(rcpts, req.UserID) {
			jr := joined(roomID)
			jr.Ephemeral.Events = append(jr.Ephemeral.Events, ev)
		}
	}
	// Typing.
	if cur.Typing > from.Typing {
		for _, roomID := range joinedIDs {
			users, changed := s.typing.Since(roomID, from.Typing)
			if !changed {
				continue
			}
			if since == nil && len(users) == 0 {
				continue
			}
			jr := joined(roomID)
			if users == nil {
				users = []string{}
			}
			jr.Ephemeral.Events = append(jr.Ephemeral.Events, mustJSON(map[string]any{"type": "m.typing", "content": map[string]any{"user_ids": users}}))
		}
	}
	// Account data, global and per room.
	if since == nil || cur.AccountData > from.AccountData {
		ads, err := s.store.AccountDataSince(ctx, req.UserID, from.AccountData, cur.AccountData)
		if err != nil {
			return nil, err
		}
		for _, ad := range ads {
			if since == nil && store.AccountDataDeleted(ad.Content) {
				continue // deleted before this initial sync
			}
			ev := mustJSON(map[string]any{"type": ad.Type, "content": json.RawMessage(ad.Content)})
			if ad.RoomID == "" {
				if f.AccountData.Allows(ad.Type, "") {
					if resp.AccountData == nil {
						resp.AccountData = &Events{}
					}
					resp.AccountData.Events = append(resp.AccountData.Events, ev)
				}
				continue
			}
			var raf *filter.RoomEventFilter
			if f.Room != nil {
				raf = f.Room.AccountData
			}
			if !raf.AllowsEvent(ad.Type, "", false) {
				continue
			}
			if slices.Contains(joinedIDs, ad.RoomID) {
				jr := joined(ad.RoomID)
				jr.AccountData.Events = append(jr.AccountData.Events, ev)
			} else if lr := rr.Leave[ad.RoomID]; lr != nil {
				lr.AccountData.Events = append(lr.AccountData.Events, ev)
			}
		}
		if since == nil {
			if err := s.addDefaultPushRules(ctx, req, ads, resp); err != nil {
				return nil, err
			}
		}
	}
	// Presence of users sharing a room, and the present state of users
	// newly met in a room; nothing is read when the filter wants none.
	wantPresence := !f.Presence.Excludes("m.presence")
	var met []string
	if since != nil && wantPresence {
		for _, jr := range rr.Join {
			met = append(met, jr.newMembers...)
		}
	}
	if wantPresence && (since == nil || cur.Presence > from.Presence || len(met) > 0) {
		var ps []store.Presence
		if since == nil || cur.Presence > from.Presence {
			if ps, err = s.store.PresenceSince(ctx, req.UserID, from.Presence, cur.Presence); err != nil {
				return nil, err
			}
		}
		if len(met) > 0 {
			had := make(map[string]bool, len(ps))
			for _, p := range ps {
				had[p.UserID] = true
			}
			slices.Sort(met)
			met = slices.DeleteFunc(slices.Compact(met), func(u string) bool { return had[u] })
			more, err := s.store.PresenceOf(ctx, met)
			if err != nil {
				return nil, err
			}
			ps = append(ps, more...)
		}
		for _, p := range ps {
			if !f.Presence.Allows("m.presence", p.UserID) {
				continue
			}
			content := map[string]any{
				"presence":         p.State,
				"last_active_ago":  max(time.Now().UnixMilli()-p.LastActiveTS, 0),
				"currently_active": p.State == "online" && time.Since(time.UnixMilli(p.LastActiveTS)) < 5*time.Minute,
			}
			if p.StatusMsg.Valid {
				content["status_msg"] = p.StatusMsg.String
			}
			if resp.Presence == nil {
				resp.Presence = &Events{}
			}
			resp.Presence.Events = append(resp.Presence.Events, mustJSON(map[string]any{"type": "m.presence", "sender": p.UserID, "content": content}))
		}
	}
	if err := s.fillCounts(ctx, req, rr.Join, cur.Events, early); err != nil {
		return nil, err
	}
	if rr.Join != nil || rr.Invite != nil || rr.Leave != nil || rr.Knock != nil {
		resp.Rooms = rr
	}
	if s.hooks.Devices != nil {
		if err := s.deviceData(ctx, req, since, from, cur, resp); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// maxToDevice bounds the to-device messages of one sync; the rest come with
// the next one.
const maxToDevice = 100

// deviceData adds to-device messages, device list changes and key counts.
func (s *Service) deviceData(ctx context.Context, req Request, since *streamtoken.Token, from, cur streamtoken.Token, resp *Response) error {
	evs, last, err := s.hooks.Devices.ToDevice(ctx, req.UserID, req.DeviceID, from.ToDevice, cur.ToDevice, maxToDevice)
	if err != nil {
		return err
	}
	if len(evs) > 0 {
		resp.ToDevice = &Events{evs}
	}
	if last < cur.ToDevice {
		// More are waiting: the token only acknowledges what was sent.
		next := cur
		next.ToDevice = last
		resp.NextBatch = next.String()
	}
	changed, left, err := s.hooks.Devices.DeviceListChanges(ctx, req.UserID, since, cur)
	if err != nil {
		return err
	}
	if len(changed)+len(left) > 0 {
		resp.DeviceLists = &DeviceLists{Changed: changed, Left: left}
	}
	resp.OTKCounts, resp.FallbackKeyTypes, err = s.hooks.Devices.KeyCounts(ctx, req.UserID, req.DeviceID)
	if err != nil {
		return err
	}
	if resp.OTKCounts == nil {
		resp.OTKCounts = noKeyCounts
	}
	if resp.FallbackKeyTypes == nil {
		resp.FallbackKeyTypes = noFallbackKeys
	}
	return nil
}

func emptyJoined() *JoinedRoom {
	return &JoinedRoom{
		State: Events{[]json.RawMessage{}}, Timeline: Timeline{Events: []json.RawMessage{}},
		Ephemeral: Events{[]json.RawMessage{}}, AccountData: Events{[]json.RawMessage{}},
	}
}

func (s *Service) fillUnread(ctx context.Context, jr *JoinedRoom, roomID, userID string, upTo int64) {
	if s.hooks.NotificationCounts != nil {
		return // fillCounts does every room at once
	}
	if n, err := s.rooms.Unread(ctx, roomID, userID, upTo); err == nil {
		jr.UnreadNotifications.NotificationCount = n
	}
}

func timelineFilter(f *filter.Filter) *filter.RoomEventFilter {
	if f.Room == nil {
		return nil
	}
	return f.Room.Timeline
}

// joinedRoom builds one joined room, or nil when nothing changed in it.
func (s *Service) joinedRoom(ctx context.Context, req Request, m store.Membership, from, cur streamtoken.Token, fresh, initial bool, pre *prefetched) (*JoinedRoom, error) {
	tf := timelineFilter(req.Filter)
	if !fresh {
		if latest := s.rooms.LatestPos(m.RoomID); latest >= 0 && latest <= from.Events {
			return nil, nil
		}
	}
	limit := defaultTimelineLimit
	if tf != nil {
		limit = tf.LimitOr(defaultTimelineLimit)
	}
	lo := from.Events
	if fresh {
		lo = 0
	}
	rows, ok := s.rooms.RecentEvents(m.RoomID, lo, cur.Events, limit+1)
	switch {
	case fresh && pre.timelines != nil:
		rows = slices.Clone(pre.timelines[m.RoomID])
	case !ok || fresh:
		var err error
		if rows, err = s.store.RoomEvents(ctx, m.RoomID, lo, cur.Events, true, limit+1); err != nil {
			return nil, err
		}
	}
	// rows is this sync's own slice now (RecentEvents makes one per
	// call): reordering it below is fine, the rows are not changed.
	if !fresh && len(rows) == 0 {
		return nil, nil
	}
	limited := len(rows) > limit
	// An event after a hole in the room's history starts the timeline:
	// what came before the hole is not shown as if it were contiguous.
	if len(rows) > 0 {
		if g := s.rooms.GapAt(m.RoomID, lo, cur.Events); g > 0 && g >= rows[len(rows)-1].Pos {
			rows = slices.DeleteFunc(rows, func(r *store.EventRow) bool { return r.Pos < g })
			limited = true
		}
	}
	if len(rows) > limit {
		rows = rows[:limit]
	}
	slices.Reverse(rows)
	timeline, err := s.rooms.VisibleTo(ctx, m, rows)
	if err != nil {
		return nil, err
	}
	jr := emptyJoined()
	senders := map[string]bool{}
	// State shown in the timeline is left out of the state section; state
	// events history visibility hides from the timeline stay in it (the
	// client must learn the room's visibility, name… all the same).
	inTimeline := map[string]bool{}
	var timelineStateMember bool
	for _, row := range timeline {
		inTimeline[row.EventID] = true
	}
	// Bundled aggregations only where the client missed children.
	var bundles map[string]json.RawMessage
	if limited {
		if bundles, err = s.read.Bundles(ctx, req.UserID, cur.Events, timeline); err != nil {
			return nil, err
		}
	}
	membershipAt := s.rooms.MembershipLookup(m)
	for _, row := range timeline {
		if !allowsRow(tf, row) || req.ignored[row.Sender] {
			continue
		}
		jr.Timeline.Events = append(jr.Timeline.Events, s.read.ClientEvent(row, roomread.Format{Viewer: req.UserID, DeviceID: req.DeviceID, OmitRoomID: true, Relations: bundles[row.EventID], Membership: membershipAt(ctx, row)}))
		senders[row.Sender] = true
		if row.Type == "m.room.member" {
			timelineStateMember = true
		}
	}
	if !initial {
		joinedNow := m.Pos > from.Events && m.Pos <= cur.Events
		if jr.newMembers, err = s.newMembers(ctx, m.RoomID, req.UserID, joinedNow, rows); err != nil {
			return nil, err
		}
	}
	jr.Timeline.Limited = limited || (fresh && !initial && len(rows) > 0 && rows[0].Pos > lo+1 && lo > 0)
	if len(rows) > 0 {
		jr.Timeline.PrevBatch = streamtoken.Pagination(rows[0].Pos - 1)
	} else {
		jr.Timeline.PrevBatch = streamtoken.Pagination(cur.Events)
	}
	// State: everything for a fresh room, the changes in the gap for a
	// limited incremental one.
	var sf *filter.RoomEventFilter
	if req.Filter.Room != nil {
		sf = req.Filter.Room.State
	}
	lazy := sf != nil && sf.LazyLoadMembers
	// With state_after (MSC4222) the state runs to the end of the
	// timeline instead: all of it when fresh, else the window's changes
	// (those of the timeline rows when it is not limited).
	after := req.StateAfter != ""
	jr.stateAfter = req.StateAfter
	var st store.StateMap
	if prefetched, ok := pre.stateIDs[m.RoomID]; fresh && ok {
		st = prefetched // this room's own map: dropping keys below is fine
	} else if fresh && lazy {
		keep := func(u string) bool { return senders[u] || u == req.UserID }
		if vs, ok := pre.viewState[m.RoomID]; ok {
			st = lazyStateOf(vs, keep)
		} else if st, err = s.rooms.CurrentStateIDsWith(ctx, m.RoomID, lazyShown(senders, req.UserID)); err != nil {
			return nil, err
		}
	} else if fresh {
		if st, err = s.rooms.CurrentStateIDs(ctx, m.RoomID); err != nil {
			return nil, err
		}
	} else if limited && len(rows) > 0 {
		end := rows[0].Pos - 1
		if after {
			end = cur.Events
		}
		if st, err = s.stateChangedBetween(ctx, m.RoomID, from.Events, end); err != nil {
			return nil, err
		}
	} else if after {
		st = store.StateMap{}
		for _, row := range rows {
			if row.StateKey.Valid {
				st[store.StateKey{Type: row.Type, StateKey: row.StateKey.String}] = row.EventID
			}
		}
	}
	if lazy && s.rooms.IsPartialState(m.RoomID) {
		// The room's state lacks most members: the senders' member
		// events are among their events' auth events.
		ids := make([]string, 0, len(rows))
		for _, row := range rows {
			ids = append(ids, row.EventID)
		}
		extra, err := s.rooms.SenderMembersFromAuth(ctx, m.RoomID, ids, senders)
		if err != nil {
			return nil, err
		}
		for k, id := range extra {
			if st == nil {
				st = store.StateMap{}
			}
			if _, ok := st[k]; !ok {
				st[k] = id
			}
		}
	}
	if len(st) > 0 {
		for k, id := range st {
			drop := (inTimeline[id] && !after) || !sf.AllowsEvent(k.Type, "", false)
			if lazy && k.Type == "m.room.member" && !senders[k.StateKey] && k.StateKey != req.UserID {
				drop = true
			}
			if drop {
				delete(st, k)
			}
		}
		if jr.State.Events, err = s.read.RenderState(ctx, st, req.UserID, pre.state); err != nil {
			return nil, err
		}
	}
	if sum := pre.summaries[m.RoomID]; fresh && sum != nil {
		jr.Summary = sum
	} else if fresh || timelineStateMember {
		if jr.Summary, err = s.read.RoomSummary(ctx, m.RoomID, req.UserID); err != nil {
			return nil, err
		}
	}
	s.fillUnread(ctx, jr, m.RoomID, req.UserID, cur.Events)
	return jr, nil
}

// newMembers lists the users an incremental sync newly shares a room
// with (see JoinedRoom.newMembers): all its members when the user just
// joined it, else those whose join is in the timeline rows.
func (s *Service) newMembers(ctx context.Context, roomID, userID string, joinedNow bool, rows []*store.EventRow) ([]string, error) {
	if joinedNow {
		users, err := s.rooms.JoinedUsers(ctx, roomID)
		if err != nil {
			return nil, err
		}
		return slices.DeleteFunc(slices.Clone(users), func(u string) bool { return u == userID }), nil
	}
	var out []string
	for _, row := range rows {
		if row.Type != "m.room.member" || !row.StateKey.Valid || row.StateKey.String == userID {
			continue
		}
		var ev struct {
			Content struct {
				Membership string `json:"membership"`
			} `json:"content"`
		}
		if json.Unmarshal(row.JSON(), &ev) == nil && ev.Content.Membership == "join" {
			out = append(out, row.StateKey.String)
		}
	}
	return out, nil
}

// leftRoom shows a room the user left, up to their leave: the window's
// events (all of them when full), and the state up to the start of the
// timeline (all of it when full, the changes in a gap otherwise).
func (s *Service) leftRoom(ctx context.Context, req Request, m store.Membership, full bool, from streamtoken.Token) (*LeftRoom, error) {
	lr := &LeftRoom{State: Events{[]json.RawMessage{}}, Timeline: Timeline{Events: []json.RawMessage{}}, AccountData: Events{[]json.RawMessage{}}}
	tf := timelineFilter(req.Filter)
	limit := defaultTimelineLimit
	if tf != nil {
		limit = tf.LimitOr(defaultTimelineLimit)
	}
	rows, err := s.store.RoomEvents(ctx, m.RoomID, from.Events, m.Pos, true, limit+1)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		// A room not known here (an invite declined or rescinded over
		// federation): its leave is all there is to show.
		leave, err := s.rooms.RemoteLeave(ctx, m.RoomID, req.UserID)
		if err != nil {
			return nil, err
		}
		if leave != nil {
			leave.Pos = m.Pos
			rows = append(rows, leave)
		}
	}
	lr.Timeline.Limited = len(rows) > limit
	if lr.Timeline.Limited {
		rows = rows[:limit]
	}
	slices.Reverse(rows)
	visible, err := s.rooms.Visible(ctx, m.RoomID, req.UserID, m.Membership, rows)
	if err != nil {
		return nil, err
	}
	var bundles map[string]json.RawMessage
	if lr.Timeline.Limited {
		if bundles, err = s.read.Bundles(ctx, req.UserID, m.Pos, visible); err != nil {
			return nil, err
		}
	}
	membershipAt := s.rooms.MembershipLookup(m)
	for _, row := range visible {
		if req.ignored[row.Sender] || !allowsRow(tf, row) {
			continue
		}
		lr.Timeline.Events = append(lr.Timeline.Events, s.read.ClientEvent(row, roomread.Format{Viewer: req.UserID, DeviceID: req.DeviceID, OmitRoomID: true, Relations: bundles[row.EventID], Membership: membershipAt(ctx, row)}))
	}
	if len(rows) > 0 {
		lr.Timeline.PrevBatch = streamtoken.Pagination(rows[0].Pos - 1)
	} else {
		lr.Timeline.PrevBatch = streamtoken.Pagination(m.Pos)
	}
	after := req.StateAfter != "" // state to the leave (MSC4222), see joinedRoom
	lr.stateAfter = req.StateAfter
	var st store.StateMap
	switch {
	case full:
		st, err = s.read.StateAfter(ctx, m.EventID)
		if errors.Is(err, store.ErrNotFound) {
			// No state: the leave is not stored here (a room known only
			// through an invite).
			st, err = nil, nil
		}
		if err != nil {
			return nil, err
		}
	case after && !lr.Timeline.Limited && len(rows) > 0:
		st = store.StateMap{}
		for _, row := range rows {
			if row.StateKey.Valid {
				st[store.StateKey{Type: row.Type, StateKey: row.StateKey.String}] = row.EventID
			}
		}
	case lr.Timeline.Limited || len(rows) == 0:
		end := m.Pos
		if len(rows) > 0 && !after {
			end = rows[0].Pos - 1
		}
		if st, err = s.stateChangedBetween(ctx, m.RoomID, from.Events, end); err != nil {
			return nil, err
		}
	}
	if len(st) > 0 {
		var sf *filter.RoomEventFilter
		if req.Filter.Room != nil {
			sf = req.Filter.Room.State
		}
		for _, row := range rows {
			if !after && row.StateKey.Valid && st[store.StateKey{Type: row.Type, StateKey: row.StateKey.String}] == row.EventID {
				delete(st, store.StateKey{Type: row.Type, StateKey: row.StateKey.String})
			}
		}
		for k := range st {
			if !sf.AllowsEvent(k.Type, "", false) {
				delete(st, k)
			}
		}
		if lr.State.Events, err = s.read.RenderState(ctx, st, req.UserID, nil); err != nil {
			return nil, err
		}
	}
	return lr, nil
}

// allowsRow applies a room event filter to a stored event.
func allowsRow(f *filter.RoomEventFilter, row *store.EventRow) bool {
	return f.AllowsEvent(row.Type, row.Sender, f != nil && f.ContainsURL != nil && row.HasURL())
}

// receiptEvents groups receipts into one m.receipt event per room. Private
// receipts go only to their owner.
func receiptEvents(rs []store.Receipt, userID string) map[string]json.RawMessage {
	type body = map[string]map[string]map[string]any
	byRoom := map[string]body{}
	for _, r := range rs {
		if r.Type == "m.read.private" && r.UserID != userID {
			continue
		}
		c := byRoom[r.RoomID]
		if c == nil {
			c = body{}
			byRoom[r.RoomID] = c
		}
		if c[r.EventID] == nil {
			c[r.EventID] = map[string]map[string]any{}
		}
		if c[r.EventID][r.Type] == nil {
			c[r.EventID][r.Type] = map[string]any{}
		}
		if prev, ok := c[r.EventID][r.Type][r.UserID].(map[string]any); ok && prev["thread_id"] == nil {
			// A user's unthreaded and threaded receipts on one event
			// clash in this shape: the unthreaded one wins (it says
			// more), whichever came last.
			continue
		}
		entry := map[string]any{"ts": r.TS}
		if r.ThreadID != "" {
			entry["thread_id"] = r.ThreadID
		}
		c[r.EventID][r.Type][r.UserID] = entry
	}
	out := make(map[string]json.RawMessage, len(byRoom))
	for roomID, c := range byRoom {
		out[roomID] = mustJSON(map[string]any{"type": "m.receipt", "content": c})
	}
	return out
}

func mustJSON(v any) json.RawMessage {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return data
}

// inviter returns who sent a user's invite.
func (s *Service) inviter(ctx context.Context, m store.Membership) string {
	row, err := s.store.GetEvent(ctx, m.EventID)
	if err == nil {
		return row.Sender
	}
	// An invite to a room not known here is kept apart.
	rm, err := s.store.GetRemoteMembership(ctx, m.RoomID, m.UserID)
	if err != nil {
		return ""
	}
	var ev struct {
		Sender string `json:"sender"`
	}
	_ = json.Unmarshal(rm.PDU, &ev)
	return ev.Sender
}

// roomWorkers bounds how many joined rooms are built at once: rooms are
// independent, and on PostgreSQL each costs a few round trips.
const roomWorkers = 8

// joinedRooms builds the joined rooms in parallel.
func (s *Service) joinedRooms(ctx context.Context, req Request, joins []store.Membership, since *streamtoken.Token, from, cur streamtoken.Token, rr *RoomsResp) error {
	// Idle rooms are skipped without a goroutine or a query. An
	// incremental sync mostly learns the rooms with news in its window at
	// once, instead of asking after each of the user's rooms.
	var active []string
	known := false
	if since != nil {
		active, known = s.rooms.ActiveSince(from.Events)
	}
	isActive := func(roomID string) bool { return slices.Contains(active, roomID) }
	if len(active) > 16 {
		set := make(map[string]bool, len(active))
		for _, id := range active {
			set[id] = true
		}
		isActive = func(roomID string) bool { return set[roomID] }
	}
	var busy []int
	for i, m := range joins {
		if !s.isFresh(req, m, since, from, cur) {
			if known {
				if !isActive(m.RoomID) {
					continue
				}
			} else if latest := s.rooms.LatestPos(m.RoomID); latest >= 0 && latest <= from.Events {
				continue
			}
		}
		busy = append(busy, i)
	}
	if len(busy) == 0 {
		return nil
	}
	pre, err := s.prefetch(ctx, req, joins, since, from, cur)
	if err != nil {
		return err
	}
	build := func(i int) (*JoinedRoom, error) {
		m := joins[i]
		return s.joinedRoom(ctx, req, m, from, cur, s.isFresh(req, m, since, from, cur), since == nil, pre)
	}
	if len(busy) == 1 {
		// The usual woken sync: one room moved.
		jr, err := build(busy[0])
		if err != nil || jr == nil {
			return err
		}
		if rr.Join == nil {
			rr.Join = map[string]*JoinedRoom{}
		}
		rr.Join[joins[busy[0]].RoomID] = jr
		return nil
	}
	results := make([]*JoinedRoom, len(busy))
	errs := make([]error, len(busy))
	sem := make(chan struct{}, roomWorkers)
	var wg gosync.WaitGroup
	for k, i := range busy {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[k], errs[k] = build(i)
		}()
	}
	wg.Wait()
	for k, jr := range results {
		if errs[k] != nil {
			return errs[k]
		}
		if jr != nil {
			if rr.Join == nil {
				rr.Join = map[string]*JoinedRoom{}
			}
			rr.Join[joins[busy[k]].RoomID] = jr
		}
	}
	return nil
}

// isFresh reports whether a joined room is shown in full: on an initial
// or full-state sync, or when the user joined it in the window.
func (s *Service) isFresh(req Request, m store.Membership, since *streamtoken.Token, from, cur streamtoken.Token) bool {
	return since == nil || req.FullState || (m.Pos > from.Events && m.Pos <= cur.Events)
}

// prefetched holds what a sync loaded for many fresh rooms at once.
type prefetched struct {
	timelines map[string][]*store.EventRow // room → newest first, limit+1
	state     map[string]*store.EventRow   // event id → row
	summaries map[string]*roomread.Summary // room → its summary for the user
	stateIDs  map[string]store.StateMap    // room → current state, when not lazy
	// viewState is, when lazy, the current state of rooms whose view
	// holds it: their lazy state is picked from it, without loading the
	// room's parsed state into the rooms cache (a thousand users' first
	// syncs would load every room they are in).
	viewState map[string][]rooms.StateEntryID
}

// noPrefetch is what a sync of fewer than two fresh rooms prefetches:
// nothing. It is shared, and only read.
var noPrefetch = &prefetched{}

// prefetch loads the timelines, summaries, history visibility and current
// state of the rooms an initial (or full-state) sync shows in full, in a
// few statements for all rooms instead of several per room, and without
// loading the rooms into the rooms cache. Lazy-loaded state is not
// prefetched: it would load every member event of large rooms.
func (s *Service) prefetch(ctx context.Context, req Request, joins []store.Membership, since *streamtoken.Token, from, cur streamtoken.Token) (*prefetched, error) {
	var fresh []string
	var freshJoins []store.Membership
	for _, m := range joins {
		if s.isFresh(req, m, since, from, cur) {
			fresh = append(fresh, m.RoomID)
			freshJoins = append(freshJoins, m)
		}
	}
	if len(fresh) < 2 {
		return noPrefetch, nil
	}
	pre := &prefetched{}
	limit := defaultTimelineLimit
	if tf := timelineFilter(req.Filter); tf != nil {
		limit = tf.LimitOr(defaultTimelineLimit)
	}
	wantState := !lazyMembers(req.Filter)
	// Rooms without events since a previous initial sync read them are
	// taken from its view (rooms.RoomView); the others are read, for all
	// of them at once, and kept for the next.
	gen := s.rooms.RoomViewGeneration()
	views := make(map[string]*rooms.RoomView, len(fresh))
	var readRows, readState []string
	rowsRead := map[string]bool{}
	var unkept []string
	for _, id := range fresh {
		if v := s.rooms.RoomView(id, cur.Events); v != nil {
			views[id] = v
		} else {
			unkept = append(unkept, id)
		}
	}
	// Rooms whose views are not in memory (a first sync after a start)
	// are taken from their stored views where current: one row per room.
	if len(unkept) > 0 {
		stored, err := s.rooms.LoadRoomViews(ctx, unkept, cur.Events, req.UserID)
		if err != nil {
			return nil, err
		}
		for id, v := range stored {
			views[id] = v
		}
	}
	for _, id := range fresh {
		v := views[id]
		if v == nil || !v.Covers(limit+1) {
			readRows = append(readRows, id)
			rowsRead[id] = true
		}
		if wantState && (v == nil || v.State == nil) {
			readState = append(readState, id)
		}
	}
	// The timelines, the state and the summaries are read at once: each
	// is a statement (or a few) for all rooms, and a cold sync waits on
	// them.
	var timelines map[string][]*store.EventRow
	var stateRows []*store.EventRow
	reads := []func() error{
		func() (err error) {
			timelines, err = s.store.RoomTimelines(ctx, readRows, cur.Events, limit+1)
			return err
		},
		func() (err error) {
			pre.summaries, err = s.read.RoomSummaries(ctx, fresh, req.UserID)
			return err
		},
	}
	if len(readState) > 0 {
		reads = append(reads, func() (err error) {
			stateRows, err = s.store.CurrentStateEvents(ctx, readState)
			return err
		})
	}
	errs := make([]error, len(reads))
	parallel.For(len(reads), func(i int) { errs[i] = reads[i]() })
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	states := map[string][]rooms.StateEntryID{}
	if wantState {
		pre.state = make(map[string]*store.EventRow, len(stateRows))
		for _, r := range stateRows {
			pre.state[r.EventID] = r
			states[r.RoomID] = append(states[r.RoomID], rooms.StateEntryID{Key: store.StateKey{Type: r.Type, StateKey: r.StateKey.String}, EventID: r.EventID})
		}
		for _, id := range readState {
			if states[id] == nil {
				states[id] = []rooms.StateEntryID{} // read: the room has none
			}
		}
	}
	if limit+1 <= rooms.ViewRows {
		// Read rather than stored: make their stored views for the next
		// first sync (in the background).
		s.rooms.WantViews(readRows)
	}
	for _, id := range slices.Concat(readRows, readState) {
		old := views[id]
		if old != nil && old.UpTo == cur.Events {
			continue // read both parts
		}
		v := &rooms.RoomView{UpTo: cur.Events, State: states[id]}
		if rowsRead[id] {
			rows := timelines[id]
			v.Rows, v.Complete = rows, len(rows) < limit+1
		} else {
			v.Rows, v.Complete = old.Rows, old.Complete
		}
		if v.State == nil && old != nil {
			v.State = old.State
		}
		views[id] = v
		s.rooms.PutRoomView(id, v, gen)
	}
	pre.timelines = make(map[string][]*store.EventRow, len(fresh))
	if wantState {
		pre.stateIDs = make(map[string]store.StateMap, len(fresh))
	}
	for _, id := range fresh {
		v := views[id]
		rows := v.Rows
		if len(rows) > limit+1 {
			rows = rows[:limit+1]
		}
		pre.timelines[id] = rows
		if wantState {
			pre.stateIDs[id] = v.StateMap()
		} else if v.State != nil {
			if pre.viewState == nil {
				pre.viewState = make(map[string][]rooms.StateEntryID, len(fresh))
			}
			pre.viewState[id] = v.State
		}
	}
	if err := s.rooms.PrefetchVisibility(ctx, freshJoins, pre.timelines); err != nil {
		return nil, err
	}
	return pre, nil
}

// lazyShown lists the users whose member events a lazy-loading sync of
// a room shows: the timeline's senders and the reader.
func lazyShown(senders map[string]bool, reader string) []string {
	out := make([]string, 0, len(senders)+1)
	out = append(out, reader)
	for u := range senders {
		if u != reader {
			out = append(out, u)
		}
	}
	return out
}

// lazyStateOf is a room's state without the member events of users
// member does not keep, as rooms.CurrentStateIDsOf gives it.
func lazyStateOf(state []rooms.StateEntryID, member func(userID string) bool) store.StateMap {
	st := make(store.StateMap, min(len(state), 16))
	for _, e := range state {
		if e.Key.Type != "m.room.member" || member(e.Key.StateKey) {
			st[e.Key] = e.EventID
		}
	}
	return st
}

// lazyMembers reports whether a sync filter lazy-loads room members.
func lazyMembers(f *filter.Filter) bool {
	return f != nil && f.Room != nil && f.Room.State != nil && f.Room.State.LazyLoadMembers
}

// stateChangedBetween is the room state set by events in (from, to]: the
// state a limited timeline leaves out.
func (s *Service) stateChangedBetween(ctx context.Context, roomID string, from, to int64) (store.StateMap, error) {
	gap, err := s.store.RoomStateEventsBetween(ctx, roomID, from, to)
	if err != nil {
		return nil, err
	}
	st := store.StateMap{}
	for _, g := range gap {
		st[store.StateKey{Type: g.Type, StateKey: g.StateKey.String}] = g.EventID
	}
	return st, nil
}
