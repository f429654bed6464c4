package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"slices"
	"sync"
	"time"

	"luxchat/internal/matrix/pdu"
	"luxchat/internal/parallel"
	"luxchat/internal/store"
)

// Stored views: a room's view (RoomView) with what rendering it needs —
// the client forms of its rows and current state, the history visibility
// of its rows' state and the memberships there that differ from the
// current state — kept in the database (store.StoredView) for rooms of
// modest state, so that the first initial sync after a start reads one
// row per room instead of reading, decompressing and rendering some
// thirty and looking up the visibility of each row.
//
// Views are made in the background (PersistViews) for rooms with events
// since their view was made, and for rooms an initial sync had to read;
// a view is used only while its room has no event after it
// (store.RoomViews), so one not made yet costs a read, never a wrong
// answer. Every form it holds is keyed by event id or state group, whose
// content is fixed until a redaction, which is an event after the view.

// ViewRows is how many timeline rows a view keeps: those of an initial
// sync with the default limit of 10, and one more that tells whether the
// timeline is limited.
const ViewRows = 11

// maxViewState bounds the current state of a room whose view is stored:
// the state of a room of thousands of members is read by few syncs (most
// lazy-load members) and would cost a large write at every change.
const maxViewState = 256

// maxViewsDirty bounds the rooms waiting for their view to be made; rooms
// past it are made when an initial sync next reads them.
const maxViewsDirty = 200_000

// viewBatch is how many rooms' views are made and written together.
const viewBatch = 100

// viewsDirty is the set of rooms whose stored view is missing or stale.
type viewsDirty struct {
	mu    sync.Mutex
	rooms map[string]struct{}
}

func (d *viewsDirty) add(roomIDs ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.rooms == nil {
		d.rooms = map[string]struct{}{}
	}
	for _, id := range roomIDs {
		if len(d.rooms) >= maxViewsDirty {
			return
		}
		d.rooms[id] = struct{}{}
	}
}

func (d *viewsDirty) take() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.rooms))
	for id := range d.rooms {
		out = append(out, id)
	}
	d.rooms = nil
	return out
}

// WantViews asks for the stored views of rooms an initial sync had to
// read (see PersistViews).
func (s *Service) WantViews(roomIDs []string) { s.viewsDirty.add(roomIDs...) }

// PersistViews makes and stores the views of the rooms with events since
// their view was made, and of those WantViews named. The server runs it
// every few seconds and at shutdown; a room with many events in that time
// is made once.
func (s *Service) PersistViews(ctx context.Context) error {
	ids := s.viewsDirty.take()
	if len(ids) == 0 {
		return nil
	}
	start := time.Now()
	defer func() { s.log.Debug("rooms: views stored", "rooms", len(ids), "took", time.Since(start)) }()
	slices.Sort(ids)
	for start := 0; start < len(ids); start += viewBatch {
		if err := s.persistViews(ctx, ids[start:min(len(ids), start+viewBatch)]); err != nil {
			s.viewsDirty.add(ids[start:]...)
			return err
		}
	}
	return nil
}

// persistViews makes and stores the views of some rooms, all read at
// once. Rooms of partial state get none (their state changes without
// events), rooms of large state lose theirs.
func (s *Service) persistViews(ctx context.Context, ids []string) error {
	ids = slices.DeleteFunc(slices.Clone(ids), s.IsPartialState)
	if len(ids) == 0 {
		return nil
	}
	upTo := s.store.Streams.Events.Current()
	sizes, err := s.store.CurrentStateSizes(ctx, ids)
	if err != nil {
		return err
	}
	var keep, drop []string
	for _, id := range ids {
		switch n := sizes[id]; {
		case n > maxViewState:
			drop = append(drop, id)
		case n > 0:
			keep = append(keep, id)
		}
	}
	if len(keep) == 0 {
		return s.store.PutRoomViews(ctx, nil, drop)
	}
	timelines, err := s.store.RoomTimelines(ctx, keep, upTo, ViewRows)
	if err != nil {
		return err
	}
	stateRows, err := s.store.CurrentStateEvents(ctx, keep)
	if err != nil {
		return err
	}
	byRoom := map[string][]*store.EventRow{}
	for _, r := range stateRows {
		byRoom[r.RoomID] = append(byRoom[r.RoomID], r)
	}
	// The member and visibility entries of the rows' state groups, for all
	// rooms at once (a new room has a group per event).
	var groups []int64
	seen := map[int64]bool{}
	for _, rows := range timelines {
		for _, r := range rows {
			if g := r.StateGroup; g != 0 && !seen[g] {
				seen[g] = true
				groups = append(groups, g)
			}
		}
	}
	groupStates, err := s.store.StateGroupsOfTypes(ctx, groups, []string{"m.room.member", "m.room.history_visibility"})
	if err != nil {
		return err
	}
	// The contents of the events those entries name: from the current
	// state read, the others read at once.
	content := map[string]json.RawMessage{}
	inState := make(map[string]*store.EventRow, len(stateRows))
	for _, r := range stateRows {
		inState[r.EventID] = r
	}
	var read []string
	for _, st := range groupStates {
		for _, id := range st {
			if _, ok := content[id]; ok || id == "" {
				continue
			}
			if r := inState[id]; r != nil {
				content[id] = contentOf(r.JSONOnce())
			} else {
				content[id] = nil
				read = append(read, id)
			}
		}
	}
	more, err := s.store.GetEvents(ctx, read)
	if err != nil {
		return err
	}
	for _, r := range more {
		content[r.EventID] = contentOf(r.JSONOnce())
	}
	views := make([]*store.StoredView, 0, len(keep))
	for _, id := range keep {
		v := s.makeStoredView(id, upTo, timelines[id], byRoom[id], groupStates, content)
		views = append(views, v)
	}
	return s.store.PutRoomViews(ctx, views, drop)
}

// makeStoredView makes the view of one room from its newest rows, its
// current state events, the member and visibility entries of the rows'
// state groups and the contents of the events these name.
func (s *Service) makeStoredView(roomID string, upTo int64, rows, state []*store.EventRow, groupStates map[int64]store.StateMap, content map[string]json.RawMessage) *store.StoredView {
	v := &store.StoredView{RoomID: roomID, UpTo: upTo, Complete: len(rows) < ViewRows, Rows: rows, Bases: make([][]byte, len(rows))}
	// Forms are made from the rows, never taken from the caches: a
	// redaction at or before upTo drops its target's cached forms only
	// after its position is visible.
	for i, r := range rows {
		v.Bases[i] = s.freshBase(r)
	}
	current := make(store.StateMap, len(state))
	membership := map[string]string{} // of the current state's member events, by user
	for _, r := range state {
		k := store.StateKey{Type: r.Type, StateKey: r.StateKey.String}
		current[k] = r.EventID
		base, m := s.freshBase(r), ""
		if r.Type == "m.room.member" {
			m = membershipOfBase(base)
			membership[k.StateKey] = m
		}
		f := NewStateForm(r, base, m)
		v.State = append(v.State, store.ViewState{Key: k, EventID: r.EventID,
			Head: f.Head, OriginTS: f.OriginTS, Sender: f.Sender, TxnID: f.TxnID, TxnDevice: f.TxnDevice, Member: f.Membership})
	}
	// The state at each row: its history visibility, and the memberships
	// that differ from the current ones. Groups are immutable, so the
	// visibility's cache is consulted.
	hvKey := store.StateKey{Type: "m.room.history_visibility"}
	type groupState struct {
		g      *store.ViewGroup
		hvID   string
		differ map[string]string // user → member event id ("" for none)
	}
	var groups []*groupState
	seen := map[int64]bool{}
	for _, r := range rows {
		g := r.StateGroup
		if g == 0 || seen[g] {
			continue
		}
		seen[g] = true
		full := groupStates[g]
		gs := &groupState{g: &store.ViewGroup{Group: g}, hvID: full[hvKey], differ: map[string]string{}}
		if hv, ok := s.visibility.get(groupKey(g)); ok {
			gs.g.Visibility, gs.hvID = hv, ""
		}
		for k, id := range full {
			if k.Type == "m.room.member" && current[k] != id {
				gs.differ[k.StateKey] = id
			}
		}
		for k := range current {
			if _, ok := full[k]; !ok && k.Type == "m.room.member" {
				gs.differ[k.StateKey] = ""
			}
		}
		groups = append(groups, gs)
	}
	for _, gs := range groups {
		if gs.g.Visibility == "" {
			var ev *pdu.Event
			if gs.hvID != "" {
				ev = &pdu.Event{Content: content[gs.hvID]}
			}
			gs.g.Visibility = HistoryVisibility(ev)
		}
		users := make([]string, 0, len(gs.differ))
		for u := range gs.differ {
			users = append(users, u)
		}
		slices.Sort(users)
		for _, u := range users {
			m := "leave" // as MembershipAt reads no member event
			if id := gs.differ[u]; id != "" {
				m = MembershipOf(&pdu.Event{Content: content[id]})
			}
			now, ok := membership[u]
			if !ok {
				now = "leave"
			}
			if m != now {
				gs.g.Members = append(gs.g.Members, store.ViewMember{UserID: u, Membership: m})
			}
		}
		v.Groups = append(v.Groups, *gs.g)
	}
	return v
}

// freshBase is ClientBase made from the row, without the cache.
func (s *Service) freshBase(row *store.EventRow) []byte {
	full := s.ClientJSON(row.JSONOnce(), row.EventID, "", nil)
	return full[:len(full)-1]
}

// readStoredViews reads rooms' stored views, a share of the rooms per
// core at once when they are many: reading and decoding a thousand views
// is most of a user's first initial sync, and it waits for them.
func (s *Service) readStoredViews(ctx context.Context, roomIDs []string) ([]*store.StoredView, error) {
	const least = 20 // rooms worth a statement and a goroutine of their own
	parts := min(runtime.GOMAXPROCS(0), len(roomIDs)/least)
	if parts < 2 {
		return s.store.RoomViews(ctx, roomIDs)
	}
	got := make([][]*store.StoredView, parts)
	errs := make([]error, parts)
	parallel.For(parts, func(i int) {
		lo, hi := i*len(roomIDs)/parts, (i+1)*len(roomIDs)/parts
		got[i], errs[i] = s.store.RoomViews(ctx, roomIDs[lo:hi])
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return slices.Concat(got...), nil
}

// LoadRoomViews reads the stored views of rooms that are current at
// position upTo, keeps them as the rooms' views (RoomView) and caches
// what rendering them for userID needs: the client forms of their rows
// and state, the history visibility at their rows, and userID's
// membership there. Rooms without a current view are left out: the
// caller reads them, and asks for their views (WantViews).
func (s *Service) LoadRoomViews(ctx context.Context, roomIDs []string, upTo int64, userID string) (map[string]*RoomView, error) {
	gen := s.views.generation()
	stored, err := s.readStoredViews(ctx, roomIDs)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*RoomView, len(stored))
	memberKey := store.StateKey{Type: "m.room.member", StateKey: userID}
	for _, sv := range stored {
		if sv.UpTo > upTo || s.LatestPos(sv.RoomID) > sv.UpTo {
			continue // made after upTo, or stale since it was read
		}
		v := &RoomView{UpTo: sv.UpTo, Rows: sv.Rows, Complete: sv.Complete, State: make([]StateEntryID, len(sv.State))}
		ids := make([]string, len(sv.State))
		forms := make([]*StateForm, len(sv.State))
		current := "leave"
		for i, st := range sv.State {
			v.State[i] = StateEntryID{Key: st.Key, EventID: st.EventID}
			ids[i] = st.EventID
			forms[i] = &StateForm{Head: st.Head, OriginTS: st.OriginTS, Sender: st.Sender, TxnID: st.TxnID, TxnDevice: st.TxnDevice, Membership: st.Member}
			if st.Key == memberKey {
				current = st.Member
			}
		}
		if s.views.generation() != gen {
			// A room's view was dropped meanwhile (a redaction): its forms
			// may be older than the cache.
			continue
		}
		s.forms.putAll(ids, forms)
		for i, r := range sv.Rows {
			s.bases.put(r.EventID, sv.Bases[i])
		}
		for _, g := range sv.Groups {
			s.visibility.put(groupKey(g.Group), g.Visibility)
			m := current
			for _, gm := range g.Members {
				if gm.UserID == userID {
					m = gm.Membership
				}
			}
			s.memberAt.put(entryKey(g.Group, pdu.StateTuple{Type: "m.room.member", StateKey: userID}), m)
		}
		s.views.put(sv.RoomID, v, gen)
		out[sv.RoomID] = v
	}
	return out, nil
}
