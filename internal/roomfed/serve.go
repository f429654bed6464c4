package roomfed

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sort"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// What other servers may read: events of rooms they have (or had, per
// history visibility) a member in, as the server-server API's history
// visibility rules for servers describe.

// serverView answers history visibility questions for one server in one
// room; results are cached per state group.
type serverView struct {
	rooms   *rooms.Service
	store   *store.Store
	server  string
	roomID  string
	joined  bool // the server has a joined member now
	byGroup map[int64]bool
}

func (s *Service) newServerView(ctx context.Context, roomID, server string) (*serverView, error) {
	in, err := s.rooms.ServerInRoom(ctx, roomID, server)
	if err != nil {
		return nil, err
	}
	return &serverView{rooms: s.rooms, store: s.store, server: server, roomID: roomID, joined: in, byGroup: map[int64]bool{}}, nil
}

// canSee applies the history visibility rules ("Server behaviour") with
// the server's users as the users: world_readable; a user of the server
// joined (or, for invited, invited) in the state before the event; for
// shared, a user of the server joined now (which approximates "joined at
// any point after the event").
func (v *serverView) canSee(ctx context.Context, row *store.EventRow) (bool, error) {
	if row.RoomID != v.roomID {
		return false, nil
	}
	if row.StateGroup < 0 {
		return v.joined, nil // an outlier: state unknown
	}
	if ok, seen := v.byGroup[row.StateGroup]; seen {
		return ok, nil
	}
	hv, err := v.rooms.StateEntry(ctx, row.RoomID, row.StateGroup, pdu.StateTuple{Type: "m.room.history_visibility"})
	if err != nil {
		return false, err
	}
	vis := rooms.HistoryVisibility(hv)
	ok := vis == "world_readable" || (vis == "shared" && v.joined)
	if !ok && row.StateGroup > 0 {
		st, err := v.store.StateGroup(ctx, row.StateGroup)
		if err != nil {
			return false, err
		}
		var ids []string
		for k, x := range st {
			if k.Type == "m.room.member" && serverOf(k.StateKey) == v.server {
				ids = append(ids, x)
			}
		}
		evs, err := v.rooms.Events(ctx, ids)
		if err != nil {
			return false, err
		}
		for _, ev := range evs {
			m := rooms.MembershipOf(ev)
			if m == "join" || (m == "invite" && vis == "invited") {
				ok = true
				break
			}
		}
	}
	v.byGroup[row.StateGroup] = ok
	return ok, nil
}

var errNotVisible = errcode.Forbidden("this server may not see that event")

// errStatePartial refuses the state at an event of a room whose full
// state is still being fetched.
var errStatePartial = errcode.Forbidden("this server is still fetching the room's state; ask another server")

// eventForServer returns a stored event a server may see.
func (s *Service) eventForServer(ctx context.Context, server, roomID, eventID string) (*store.EventRow, *serverView, error) {
	row, err := s.store.GetEvent(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && roomID != "" && row.RoomID != roomID) {
		return nil, nil, errcode.NotFound("unknown event")
	}
	if err != nil {
		return nil, nil, err
	}
	v, err := s.newServerView(ctx, row.RoomID, server)
	if err != nil {
		return nil, nil, err
	}
	ok, err := v.canSee(ctx, row)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, errNotVisible
	}
	return row, v, nil
}

// EventForServer returns one event (as its PDU) to a server that may see
// it, and the room it belongs to.
func (s *Service) EventForServer(ctx context.Context, server, eventID string) (json.RawMessage, string, error) {
	row, _, err := s.eventForServer(ctx, server, "", eventID)
	if err != nil {
		return nil, "", err
	}
	return json.RawMessage(row.JSON()), row.RoomID, nil
}

// StateForServer returns the state before an event and the auth chain of
// that state, as ids, to a server that may see the event or that is in
// the room now: a server that joined with partial state needs the state
// before its join even when history visibility hides the event from it.
func (s *Service) StateForServer(ctx context.Context, server, roomID, eventID string) (state, authChain []string, err error) {
	// While a room's state is partial, so is the state we hold at its
	// events: refused at once, so that the asking server tries another
	// (waiting for the resync would hold it for as long).
	if s.rooms.IsPartialState(roomID) {
		return nil, nil, errStatePartial
	}
	var row *store.EventRow
	if in, ierr := s.rooms.ServerInRoom(ctx, roomID, server); ierr == nil && in {
		row, err = s.store.GetEvent(ctx, eventID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && row.RoomID != roomID) {
			return nil, nil, errcode.NotFound("unknown event")
		}
	} else {
		row, _, err = s.eventForServer(ctx, server, roomID, eventID)
	}
	if err != nil {
		return nil, nil, err
	}
	if row.StateGroup < 0 {
		return nil, nil, errcode.NotFound("the state at that event is not known here")
	}
	st := store.StateMap{}
	if row.StateGroup > 0 {
		if st, err = s.store.StateGroup(ctx, row.StateGroup); err != nil {
			return nil, nil, err
		}
	}
	for _, x := range st {
		state = append(state, x)
	}
	sort.Strings(state)
	chain, err := s.authChain(ctx, state)
	if err != nil {
		return nil, nil, err
	}
	return state, chain, nil
}

// EventAuthForServer returns the auth chain of an event.
func (s *Service) EventAuthForServer(ctx context.Context, server, roomID, eventID string) ([]string, error) {
	if _, _, err := s.eventForServer(ctx, server, roomID, eventID); err != nil {
		return nil, err
	}
	return s.authChain(ctx, []string{eventID})
}

// walkPrev walks the event graph backwards from start through
// prev_events, breadth first, returning the visible events it meets (up
// to limit); stop events are neither returned nor walked through.
func (s *Service) walkPrev(ctx context.Context, server, roomID string, start, stop []string, includeStart bool, limit int, minDepth int64) ([]*store.EventRow, error) {
	v, err := s.newServerView(ctx, roomID, server)
	if err != nil {
		return nil, err
	}
	version, err := s.rooms.VersionOf(ctx, roomID)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, x := range stop {
		seen[x] = true
	}
	var frontier []string
	if includeStart {
		frontier = slices.Clone(start)
	} else {
		rows, err := s.store.GetEvents(ctx, start)
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			if row.RoomID != roomID {
				continue
			}
			seen[row.EventID] = true
			ev, err := s.rooms.ParseRow(ctx, row)
			if err != nil {
				return nil, err
			}
			frontier = append(frontier, ev.PrevEvents...)
		}
	}
	var out []*store.EventRow
	for len(frontier) > 0 && len(out) < limit {
		var ids []string
		for _, x := range frontier {
			if !seen[x] {
				seen[x] = true
				ids = append(ids, x)
			}
		}
		rows, err := s.store.GetEvents(ctx, ids)
		if err != nil {
			return nil, err
		}
		sort.Slice(rows, func(i, j int) bool { return rows[i].Depth > rows[j].Depth })
		frontier = nil
		for _, row := range rows {
			if row.RoomID != roomID || row.Depth < minDepth {
				continue
			}
			ok, err := v.canSee(ctx, row)
			if err != nil {
				return nil, err
			}
			if !ok {
				// The server gets the event's skeleton: it still needs it
				// for the room's graph, but not what was said before it
				// could see the room.
				redacted, err := pdu.Redact(row.JSON(), version)
				if err != nil {
					return nil, err
				}
				copied := *row
				copied.PDU = redacted
				row = &copied
			}
			if len(out) < limit {
				out = append(out, row)
			}
			ev, err := s.rooms.ParseRow(ctx, row)
			if err != nil {
				return nil, err
			}
			frontier = append(frontier, ev.PrevEvents...)
		}
	}
	return out, nil
}

// Backfill returns up to limit events preceding (and including) the given
// ones, newest first.
func (s *Service) Backfill(ctx context.Context, server, roomID string, from []string, limit int) ([]json.RawMessage, error) {
	if _, err := s.rooms.VersionOf(ctx, roomID); err != nil {
		return nil, err
	}
	rows, err := s.walkPrev(ctx, server, roomID, from, nil, true, limit, 0)
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(rows))
	for _, row := range rows {
		out = append(out, row.JSON())
	}
	return out, nil
}

// MissingEvents returns up to limit events before latest and after
// earliest, oldest first (get_missing_events).
func (s *Service) MissingEvents(ctx context.Context, server, roomID string, earliest, latest []string, limit int, minDepth int64) ([]json.RawMessage, error) {
	if _, err := s.rooms.VersionOf(ctx, roomID); err != nil {
		return nil, err
	}
	rows, err := s.walkPrev(ctx, server, roomID, latest, earliest, false, limit, minDepth)
	if err != nil {
		return nil, err
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Depth < rows[j].Depth })
	out := make([]json.RawMessage, 0, len(rows))
	for _, row := range rows {
		out = append(out, row.JSON())
	}
	return out, nil
}

// ServeTimestampToEvent answers another server: the event closest to ts
// that the server may see.
func (s *Service) ServeTimestampToEvent(ctx context.Context, server, roomID string, ts int64, backwards bool) (*NearEvent, error) {
	if _, err := s.rooms.VersionOf(ctx, roomID); err != nil {
		return nil, err
	}
	v, err := s.newServerView(ctx, roomID, server)
	if err != nil {
		return nil, err
	}
	if !v.joined {
		return nil, errcode.Forbidden("server %s has no user in this room", server)
	}
	row, err := s.store.EventNearTS(ctx, roomID, ts, backwards)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errcode.NotFound("no event found")
	}
	if err != nil {
		return nil, err
	}
	if ok, err := v.canSee(ctx, row); err != nil || !ok {
		return nil, errcode.NotFound("no event found")
	}
	return &NearEvent{EventID: row.EventID, OriginServerTS: row.OriginTS}, nil
}

// maxServeAuthChain bounds the auth chain served for one request.
const maxServeAuthChain = 20000

// authChain returns the ids of every event reachable through auth_events
// from the given events (which are not included unless reached).
func (s *Service) authChain(ctx context.Context, from []string) ([]string, error) {
	seen := map[string]bool{}
	var out []string
	frontier := from
	for len(frontier) > 0 {
		evs, err := s.rooms.Events(ctx, frontier)
		if err != nil {
			return nil, err
		}
		frontier = nil
		for _, ev := range evs {
			auth := ev.AuthEvents
			if ev.Version.RoomIDFromCreate && ev.Type != "m.room.create" && len(ev.RoomID) > 1 {
				// The room id names the create event, an implicit auth event.
				auth = append(slices.Clone(auth), "$"+ev.RoomID[1:])
			}
			for _, a := range auth {
				if !seen[a] {
					seen[a] = true
					out = append(out, a)
					frontier = append(frontier, a)
				}
			}
		}
		if len(out) > maxServeAuthChain {
			return nil, errcode.TooLarge("auth chain too large")
		}
	}
	sort.Strings(out)
	return out, nil
}
