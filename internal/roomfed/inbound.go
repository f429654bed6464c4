package roomfed

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"luxchat/internal/federation"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/id"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/matrix/roomversion"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// The inbound pipeline: the checks on receipt of a PDU, in the spec's
// order, and the fetches that fill what it lacks; an accepted event is
// committed by rooms.

// Bounds on the work one inbound event may cause, so that a deep prev
// chain or a huge auth chain cannot stall a room.
const (
	maxMissingEvents = 20    // one get_missing_events request
	maxAuthChain     = 5000  // events accepted from one event_auth, state or send_join answer
	maxStateIDs      = 20000 // ids accepted from one state_ids answer
	maxFetchEvents   = 500   // single /event fetches to fill one gap
	fetchParallel    = 8
	fetchTimeout     = 30 * time.Second
)

// PDUResult is the outcome of one PDU of a transaction: nil when handled
// (accepted, soft-failed, already known, or rejected by the authorisation
// rules and recorded so: the sending server has nothing to retry).
type PDUResult = map[string]error

// errRejected marks events that failed the authorisation rules.
var errRejected = errors.New("rejected")

func rejectedf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errRejected, fmt.Sprintf(format, args...))
}

// ParsePDU checks a PDU's format for its room's version. The room must be
// known here; its id is read from the PDU.
func (s *Service) ParsePDU(ctx context.Context, raw json.RawMessage) (*pdu.Event, error) {
	var head struct {
		RoomID string `json:"room_id"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || head.RoomID == "" {
		return nil, errcode.BadJSON("PDU has no room_id")
	}
	v, err := s.rooms.VersionOf(ctx, head.RoomID)
	if errors.Is(err, rooms.ErrUnknownRoom) {
		// A room not known here may still hold a local user's invite,
		// whose end is parsed with the invite's room version.
		if id, rerr := s.store.RemoteRoomVersion(ctx, head.RoomID); rerr == nil {
			if rv, ok := roomversion.Get(id); ok {
				v, err = rv, nil
			}
		}
	}
	if err != nil {
		return nil, err
	}
	ev, err := pdu.Parse(raw, v)
	if err != nil {
		return nil, errcode.BadJSON("invalid PDU: %v", err)
	}
	return ev, nil
}

// ReceivePDUs runs the checks on receipt of each PDU of one room, sent by
// origin, in depth order, and persists those that pass: rejected events
// are recorded as such, soft-failed ones are kept outside the timeline,
// accepted ones join the timeline and reach local clients like local
// events.
func (s *Service) ReceivePDUs(ctx context.Context, origin string, evs []*pdu.Event) PDUResult {
	out := PDUResult{}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Depth < evs[j].Depth })
	ctx = s.preverify(ctx, evs)
	if len(evs) > 0 {
		if _, err := s.rooms.VersionOf(ctx, evs[0].RoomID); errors.Is(err, rooms.ErrUnknownRoom) {
			// A room not known here: only the end of a local user's
			// invite (or knock) can concern this server.
			for _, ev := range evs {
				out[ev.ID] = s.receiveRemoteLeave(ctx, origin, ev)
			}
			return out
		}
	}
	pushed := context.WithValue(ctx, pushedKey{}, true)
	for i := 0; i < len(evs); {
		// Runs of events that extend the room linearly commit together;
		// any other event takes the general pipeline alone.
		n := s.receiveRun(ctx, origin, evs[i:], out)
		if n == 0 {
			out[evs[i].ID] = s.receive(pushed, origin, evs[i], true)
			n = 1
		}
		for _, ev := range evs[i : i+n] {
			if err := out[ev.ID]; err != nil {
				s.log.Info("federation: event not accepted", "origin", origin, "event_id", ev.ID, "room_id", ev.RoomID, "err", err)
				if errors.Is(err, errRejected) {
					out[ev.ID] = nil
				}
			}
		}
		i += n
	}
	return out
}

// receive is the pipeline for one remote event. fillGaps allows fetching
// missing prev events (not for events that are themselves gap fillers).
func (s *Service) receive(ctx context.Context, origin string, ev *pdu.Event, fillGaps bool) error {
	if !s.federated() {
		return errors.New("federation is disabled")
	}
	wasOutlier := false
	if row, err := s.store.GetEvent(ctx, ev.ID); err == nil {
		if row.StateGroup >= 0 {
			return nil // already stored with its state (or soft-failed)
		}
		wasOutlier = true
	}
	if rej, err := s.store.RejectedEvents(ctx, []string{ev.ID}); err != nil {
		return err
	} else if rej[ev.ID] {
		return rejectedf("event was rejected before")
	}
	ev, err := s.verifiedOnce(ctx, ev)
	if err != nil {
		return err
	}
	// The events before a gap, or the state at it, usually bring the
	// auth events we lack (a member's join): a received event gets its
	// gap filled first, an event pulled into a gap the state before it;
	// the auth chain is asked only for what is still missing after that.
	var before store.StateMap
	if gap, err := s.authAndPrevMissing(ctx, ev); err != nil {
		return err
	} else if gap && fillGaps {
		s.fetchMissing(ctx, origin, ev)
	} else if gap {
		if before, err = s.stateBefore(ctx, origin, ev, false); err != nil {
			return err
		}
	}
	authEvs, err := s.authEventsOf(ctx, origin, ev)
	if err != nil {
		return s.reject(ctx, ev, err)
	}
	if err := s.checkAuth(ctx, ev, eventauth.NewStateMap(authEvs...)); err != nil {
		return s.reject(ctx, ev, fmt.Errorf("against its auth events: %w", err))
	}
	// Fast path: the event extends the room's current extremities, so the
	// state before it is the current state.
	r, err := s.rooms.LockRoom(ctx, ev.RoomID)
	if err != nil {
		return err
	}
	if sameSet(ev.PrevEvents, r.Extremities()) {
		defer r.Unlock()
		if row, err := s.store.GetEvent(ctx, ev.ID); err == nil && row.StateGroup >= 0 {
			return nil // stored meanwhile by a concurrent transaction
		}
		if s.rooms.IsPartialState(ev.RoomID) {
			before := r.StateIDs()
			auth, err := s.partialAuth(ctx, r.Version(), before, authEvs)
			if err != nil {
				return err
			}
			if err := s.checkAuth(ctx, ev, auth); err != nil {
				return s.refuse(ctx, origin, ev, before, fmt.Errorf("against the partial state before it: %w", err))
			}
		} else if err := s.checkAuth(ctx, ev, eventauth.AuthEventsFunc(r.State)); err != nil {
			return s.reject(ctx, ev, fmt.Errorf("against the state before it: %w", err))
		}
		return s.commitLinear(ctx, r, ev, origin)
	}
	r.Unlock()

	if before == nil {
		if before, err = s.stateBefore(ctx, origin, ev, fillGaps); err != nil {
			return err
		}
	}
	beforeEvs, err := s.stateEvents(ctx, before)
	if err != nil {
		return err
	}
	partial := s.rooms.IsPartialState(ev.RoomID)
	var beforeAuth eventauth.AuthEvents = beforeEvs
	if partial {
		if beforeAuth, err = s.partialAuth(ctx, ev.Version, before, authEvs); err != nil {
			return err
		}
	}
	if err := s.checkAuth(ctx, ev, beforeAuth); err != nil {
		if wasOutlier {
			// It passed its auth events when stored; our view of the state
			// before it may be what is wrong.
			return fmt.Errorf("against the state before it: %w", err)
		}
		if partial {
			return s.refuse(ctx, origin, ev, before, fmt.Errorf("against the partial state before it: %w", err))
		}
		return s.reject(ctx, ev, fmt.Errorf("against the state before it: %w", err))
	}
	r, err = s.rooms.LockRoom(ctx, ev.RoomID)
	if err != nil {
		return err
	}
	defer r.Unlock()
	if row, err := s.store.GetEvent(ctx, ev.ID); err == nil && row.StateGroup >= 0 {
		return nil // stored meanwhile (a gap filler of another transaction)
	}
	if err := s.checkAuth(ctx, ev, eventauth.AuthEventsFunc(r.State)); err != nil && !partial {
		s.log.Info("federation: event soft-failed", "event_id", ev.ID, "room_id", ev.RoomID, "err", err)
		return s.rooms.StoreSoftFailed(ctx, ev, before)
	}
	if rooms.SameState(before, r.StateIDs()) && containsAll(ev.PrevEvents, r.Extremities()) {
		return s.commitLinear(ctx, r, ev, origin)
	}
	return s.rooms.CommitFork(ctx, r, ev, before, origin)
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func containsAll(set, items []string) bool {
	for _, x := range items {
		if !slices.Contains(set, x) {
			return false
		}
	}
	return true
}

// reject records a rejected event (unless err is not an authorisation
// failure, e.g. a network error) and returns err.
func (s *Service) reject(ctx context.Context, ev *pdu.Event, err error) error {
	if errors.Is(err, errRejected) || errors.Is(err, eventauth.ErrNotAllowed) {
		if rerr := s.store.RejectEvent(ctx, ev.ID, ev.RoomID, truncate(err.Error(), 500), ev.PrevEvents); rerr != nil {
			return rerr
		}
		if !errors.Is(err, errRejected) {
			err = fmt.Errorf("%w: %w", errRejected, err)
		}
	}
	return err
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// checkSignaturesAndHash applies checks 2 and 3: the sender's server (and
// for room versions 1–2 the event id's server) must have signed the event,
// else it is dropped; a content hash mismatch leaves the redacted event.
func (s *Service) checkSignaturesAndHash(ctx context.Context, ev *pdu.Event) (*pdu.Event, error) {
	servers := []string{serverOf(ev.Sender)}
	if ev.Version.EventFormat == roomversion.FormatV1 {
		if eid, err := id.ParseEventID(ev.ID); err == nil && eid.HasServer() {
			if sv := serverOf(ev.ID); sv != servers[0] {
				servers = append(servers, sv)
			}
		}
	}
	for _, sv := range servers {
		if !s.verifySignature(ctx, ev, sv) {
			return nil, fmt.Errorf("event %s has no valid signature of %s", ev.ID, sv)
		}
	}
	if err := pdu.VerifyHashes(ev); errors.Is(err, pdu.ErrContentHash) {
		red, err := pdu.Redact(ev.JSON(), ev.Version)
		if err != nil {
			return nil, err
		}
		s.log.Info("federation: content hash mismatch, keeping the redacted event", "event_id", ev.ID)
		return pdu.Parse(red, ev.Version)
	} else if err != nil {
		return nil, err
	}
	return ev, nil
}

// verifySignature reports whether server validly signed ev.
func (s *Service) verifySignature(ctx context.Context, ev *pdu.Event, server string) bool {
	for keyID := range ev.Signatures()[server] {
		if !strings.HasPrefix(keyID, "ed25519:") {
			continue
		}
		var pub ed25519.PublicKey
		if server == s.serverName {
			if keyID != s.key.ID() {
				continue
			}
			pub = s.key.Public()
		} else {
			kctx, cancel := context.WithTimeout(ctx, fetchTimeout)
			k, err := s.f.VerifyKey(kctx, server, keyID, ev.OriginServerTS)
			cancel()
			if err != nil {
				continue
			}
			pub = k
		}
		if pdu.VerifySignature(ev, server, keyID, pub) == nil {
			return true
		}
	}
	return false
}

// checkAuth applies the authorisation rules, and refuses events that
// would make a user of a server outside the allowed federation a member.
func (s *Service) checkAuth(ctx context.Context, ev *pdu.Event, auth eventauth.AuthEvents) error {
	if ev.Type == "m.room.member" && ev.StateKey != nil {
		switch m := rooms.MembershipOf(ev); m {
		case "join", "invite", "knock":
			if sv := serverOf(*ev.StateKey); sv != s.serverName && s.f.Allowed != nil && s.f.Allowed(sv) != nil {
				return rejectedf("%s of a user of %s, which is not an allowed server", m, sv)
			}
		}
	}
	return eventauth.Check(ev, auth, eventauth.WithSignatureCheck(func(e *pdu.Event, server string) bool {
		return s.verifySignature(ctx, e, server)
	}))
}

// authEventsOf returns an event's auth events, fetching missing ones from
// origin with event_auth (checked and stored as outliers). A rejected or
// unobtainable auth event rejects the event.
func (s *Service) authEventsOf(ctx context.Context, origin string, ev *pdu.Event) ([]*pdu.Event, error) {
	have, err := s.rooms.Events(ctx, ev.AuthEvents)
	if err != nil {
		return nil, err
	}
	byID := map[string]*pdu.Event{}
	for _, a := range have {
		byID[a.ID] = a
	}
	rej, err := s.rejectedAmong(ctx, ev.AuthEvents, byID)
	if err != nil {
		return nil, err
	}
	// An auth event rejected before settles it (rej holds only those):
	// nothing to fetch.
	if len(have) < len(ev.AuthEvents) && len(rej) == 0 {
		if err := s.fetchAuthChain(ctx, origin, ev); err != nil {
			return nil, err
		}
		if have, err = s.rooms.Events(ctx, ev.AuthEvents); err != nil {
			return nil, err
		}
		for _, a := range have {
			byID[a.ID] = a
		}
		if rej, err = s.rejectedAmong(ctx, ev.AuthEvents, byID); err != nil {
			return nil, err
		}
	}
	// An auth event that could not be had (or failed its signature
	// check) rejects the event; the shape rules need them all.
	for _, a := range ev.AuthEvents {
		if byID[a] == nil && !rej[a] {
			return nil, rejectedf("auth event %s is unknown", a)
		}
	}
	if err := eventauth.CheckAuthEventsShape(ev, byID, func(id string) bool { return rej[id] }); err != nil {
		return nil, err
	}
	return s.withCreate(ctx, ev, have, nil)
}

// withCreate adds, for room versions whose room id names the create event
// (which is then never an auth event), that create event to an event's
// auth events, as the auth rules need it.
func (s *Service) withCreate(ctx context.Context, ev *pdu.Event, authEvs []*pdu.Event, known map[string]*pdu.Event) ([]*pdu.Event, error) {
	if !ev.Version.RoomIDFromCreate || ev.Type == "m.room.create" || len(ev.RoomID) < 2 {
		return authEvs, nil
	}
	createID := "$" + ev.RoomID[1:]
	if c := known[createID]; c != nil {
		return append(authEvs, c), nil
	}
	c, err := s.rooms.Events(ctx, []string{createID})
	if err != nil {
		return nil, err
	}
	return append(authEvs, c...), nil
}

// fetchAuthChain asks origin for ev's auth chain and stores the events we
// lack as outliers, each checked against its own auth events.
func (s *Service) fetchAuthChain(ctx context.Context, origin string, ev *pdu.Event) error {
	fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	resp, err := s.f.Client.EventAuth(fctx, origin, ev.RoomID, ev.ID)
	if err != nil {
		// Not every server answers event_auth for every event: fetch the
		// missing auth events one by one instead.
		s.log.Info("federation: event_auth failed, fetching auth events by id", "origin", origin, "event_id", ev.ID, "err", err)
		return s.fetchAuthEventsByID(ctx, origin, ev)
	}
	if len(resp.AuthChain) > maxAuthChain {
		return rejectedf("auth chain of %d events is too long", len(resp.AuthChain))
	}
	_, err = s.storeOutliers(ctx, ev.RoomID, ev.Version, resp.AuthChain)
	return err
}

// fetchAuthEventsByID fetches the auth events of ev that we lack with
// /event, then theirs, level by level (at most maxFetchEvents), and
// stores them as outliers.
func (s *Service) fetchAuthEventsByID(ctx context.Context, origin string, ev *pdu.Event) error {
	seen := map[string]bool{}
	var raws []json.RawMessage
	want := ev.AuthEvents
	for len(want) > 0 && len(seen) < maxFetchEvents {
		have, err := s.rooms.Events(ctx, want)
		if err != nil {
			return err
		}
		rej, err := s.store.RejectedEvents(ctx, want)
		if err != nil {
			return err
		}
		known := map[string]bool{}
		for _, e := range have {
			known[e.ID] = true
		}
		var need []string
		for _, x := range want {
			if !known[x] && !rej[x] && !seen[x] {
				seen[x] = true
				need = append(need, x)
			}
		}
		want = nil
		fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		for _, raw := range s.fetchEvents(fctx, origin, need) {
			if e, err := pdu.Parse(raw, ev.Version); err == nil && slices.Contains(need, e.ID) {
				raws = append(raws, raw)
				want = append(want, e.AuthEvents...)
			}
		}
		cancel()
	}
	if len(raws) == 0 {
		return fmt.Errorf("fetch auth events of %s: %s sent none", ev.ID, origin)
	}
	_, err := s.storeOutliers(ctx, ev.RoomID, ev.Version, raws)
	return err
}

// storeOutliers checks events of a room (format, signatures, hashes, auth
// against their own auth events, depth first) and stores those that pass
// and are new as outliers. It returns every event that passed, new or
// known, by id.
func (s *Service) storeOutliers(ctx context.Context, roomID string, v *roomversion.Version, raws []json.RawMessage) (map[string]*pdu.Event, error) {
	good, fresh, err := s.checkEvents(ctx, roomID, v, raws)
	if err != nil || len(fresh) == 0 {
		return good, err
	}
	err = s.store.InTx(ctx, func(tx *store.Tx) error { return s.rooms.InsertOutliers(ctx, tx, fresh) })
	return good, err
}

// checkEvents runs the checks of storeOutliers without storing: good holds
// every event that passed (known ones included), fresh those not stored
// yet, oldest first.
func (s *Service) checkEvents(ctx context.Context, roomID string, v *roomversion.Version, raws []json.RawMessage) (good map[string]*pdu.Event, fresh []*pdu.Event, err error) {
	return s.checkParsed(ctx, roomID, rooms.ParsePDUs(raws, v))
}

// checkParsed is checkEvents for events already parsed.
func (s *Service) checkParsed(ctx context.Context, roomID string, parsed []*pdu.Event) (good map[string]*pdu.Event, fresh []*pdu.Event, err error) {
	var evs []*pdu.Event
	seen := map[string]bool{}
	for _, ev := range parsed {
		if seen[ev.ID] || pdu.RoomIDForCreate(ev) != roomID {
			continue
		}
		seen[ev.ID] = true
		evs = append(evs, ev)
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Depth < evs[j].Depth })
	ids := make([]string, 0, len(evs))
	for _, ev := range evs {
		ids = append(ids, ev.ID)
	}
	known, err := s.rooms.Events(ctx, ids)
	if err != nil {
		return nil, nil, err
	}
	good = map[string]*pdu.Event{}
	for _, ev := range known {
		good[ev.ID] = ev
	}
	ctx = s.preverify(ctx, slices.DeleteFunc(slices.Clone(evs), func(e *pdu.Event) bool { return good[e.ID] != nil }))
	for _, ev := range evs {
		if good[ev.ID] != nil {
			continue
		}
		checked, err := s.verifiedOnce(ctx, ev)
		if err != nil {
			continue
		}
		if err := s.checkOwnAuth(ctx, checked, good); err != nil {
			if !errors.Is(err, errRejected) && !errors.Is(err, eventauth.ErrNotAllowed) {
				return nil, nil, err
			}
			s.log.Info("federation: outlier rejected", "event_id", ev.ID, "err", err)
			if err := s.store.RejectEvent(ctx, ev.ID, roomID, truncate(err.Error(), 500), ev.PrevEvents); err != nil {
				return nil, nil, err
			}
			continue
		}
		good[ev.ID] = checked
		fresh = append(fresh, checked)
	}
	return good, fresh, nil
}

// checkOwnAuth checks an event against its own auth events, looked up in
// known (events checked in the same batch) and then in the store.
func (s *Service) checkOwnAuth(ctx context.Context, ev *pdu.Event, known map[string]*pdu.Event) error {
	byID, err := s.knownAuthEvents(ctx, ev, known)
	if err != nil {
		return err
	}
	list := make([]*pdu.Event, 0, len(byID))
	for _, a := range ev.AuthEvents {
		if byID[a] == nil {
			// Absent from the answer, or dropped for a bad signature.
			return rejectedf("auth event %s is unknown", a)
		}
		list = append(list, byID[a])
	}
	rej, err := s.rejectedAmong(ctx, ev.AuthEvents, byID)
	if err != nil {
		return err
	}
	if err := eventauth.CheckAuthEventsShape(ev, byID, func(id string) bool { return rej[id] }); err != nil {
		return err
	}
	list, err = s.withCreate(ctx, ev, list, known)
	if err != nil {
		return err
	}
	return s.checkAuth(ctx, ev, eventauth.NewStateMap(list...))
}

// knownAuthEvents returns the auth events of ev found in known or in the
// store, by id; the ones found nowhere are missing from the map.
func (s *Service) knownAuthEvents(ctx context.Context, ev *pdu.Event, known map[string]*pdu.Event) (map[string]*pdu.Event, error) {
	byID := make(map[string]*pdu.Event, len(ev.AuthEvents))
	var missing []string
	for _, a := range ev.AuthEvents {
		if e := known[a]; e != nil {
			byID[a] = e
		} else {
			missing = append(missing, a)
		}
	}
	if len(missing) > 0 {
		evs, err := s.rooms.Events(ctx, missing)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			byID[e.ID] = e
		}
	}
	return byID, nil
}

// rejectedAmong returns which of ids were rejected. Stored events never
// were (rejected events are not stored), so only the others are looked up.
func (s *Service) rejectedAmong(ctx context.Context, ids []string, found map[string]*pdu.Event) (map[string]bool, error) {
	var ask []string
	for _, x := range ids {
		if found[x] == nil {
			ask = append(ask, x)
		}
	}
	if len(ask) == 0 {
		return nil, nil
	}
	return s.store.RejectedEvents(ctx, ask)
}

// stateBefore computes the state before ev from its prev events: fetching
// missing ones with get_missing_events, and when a gap remains, asking
// origin for the state at ev (state_ids).
func (s *Service) stateBefore(ctx context.Context, origin string, ev *pdu.Event, fillGaps bool) (store.StateMap, error) {
	sets, missing, err := s.prevStates(ctx, ev)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 && fillGaps {
		s.fetchMissing(ctx, origin, ev)
		if sets, missing, err = s.prevStates(ctx, ev); err != nil {
			return nil, err
		}
		// An event pushed to us whose sender will not give its prev
		// events is refused (not rejected: a later event may bring them):
		// otherwise its sender could have us take a state of its choosing
		// for the room's newest event.
		if len(missing) > 0 && ctx.Value(pushedKey{}) != nil {
			// (missing holds no rejected event; outliers stay allowed)
			if unknown, err := s.unknownEvents(ctx, missing); err != nil {
				return nil, err
			} else if len(unknown) > 0 {
				return nil, fmt.Errorf("%s did not give the prev events %v", origin, unknown)
			}
		}
	}
	if len(missing) > 0 && fillGaps && ctx.Value(prevFetchKey{}) == nil {
		// The origin may not have ev yet (an invite it asks us to sign),
		// so get_missing_events from ev finds nothing: fetch the prev
		// events themselves, and the gaps before them (once).
		pctx := context.WithValue(ctx, prevFetchKey{}, true)
		for _, raw := range s.fetchEvents(pctx, origin, missing) {
			if p, err := pdu.Parse(raw, ev.Version); err == nil && slices.Contains(missing, p.ID) {
				if err := s.receive(pctx, origin, p, true); err != nil {
					s.log.Info("federation: prev event not accepted", "event_id", p.ID, "err", err)
				}
			}
		}
		if sets, missing, err = s.prevStates(ctx, ev); err != nil {
			return nil, err
		}
	}
	// A prev event still missing: the state after it, from origin.
	for _, p := range missing {
		st, err := s.fetchStateAfter(ctx, origin, ev.RoomID, ev.Version, p)
		if err != nil {
			return nil, err
		}
		sets = append(sets, st)
	}
	if len(sets) == 0 {
		return nil, rejectedf("no usable prev event")
	}
	return s.rooms.ResolveState(ctx, ev.Version, sets)
}

// prevFetchKey marks a context in which prev events are being fetched
// directly, so that this happens one level deep only.
type prevFetchKey struct{}

// pushedKey marks the context of events pushed to us in a transaction
// (not fetched by us, nor handed over in an invite or a join).
type pushedKey struct{}

// prevStates returns the state after each prev event of ev that is
// stored with its state; missing lists the others. The state after a
// rejected prev event is the state before it (spec: later events that
// reference rejected events are checked "as normal, except not updating
// with the state from the rejected event").
func (s *Service) prevStates(ctx context.Context, ev *pdu.Event) ([]store.StateMap, []string, error) {
	rej, err := s.store.RejectedEvents(ctx, ev.PrevEvents)
	if err != nil {
		return nil, nil, err
	}
	var sets []store.StateMap
	var missing []string
	for _, p := range ev.PrevEvents {
		if rej[p] {
			st, ok, err := s.stateAfterRejected(ctx, ev.Version, p, maxRejectedChain)
			if err != nil {
				return nil, nil, err
			}
			if ok {
				sets = append(sets, st)
			}
			continue
		}
		st, ok, err := s.rooms.StateAfterEvent(ctx, p)
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			missing = append(missing, p)
			continue
		}
		sets = append(sets, st)
	}
	return sets, missing, nil
}

// maxRejectedChain bounds how many rejected events in a row are followed
// back to find the state after one.
const maxRejectedChain = 8

// stateAfterRejected is the state after a rejected event, that is the
// state before it, from its prev events (followed back through rejected
// ones depth levels at most); ok is false when it cannot be known here.
func (s *Service) stateAfterRejected(ctx context.Context, v *roomversion.Version, eventID string, depth int) (store.StateMap, bool, error) {
	if depth == 0 {
		return nil, false, nil
	}
	prevs, err := s.store.RejectedPrevEvents(ctx, eventID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(prevs) == 0) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	rej, err := s.store.RejectedEvents(ctx, prevs)
	if err != nil {
		return nil, false, err
	}
	var sets []store.StateMap
	for _, p := range prevs {
		var st store.StateMap
		var ok bool
		if rej[p] {
			st, ok, err = s.stateAfterRejected(ctx, v, p, depth-1)
		} else {
			st, ok, err = s.rooms.StateAfterEvent(ctx, p)
		}
		if err != nil || !ok {
			return nil, false, err
		}
		sets = append(sets, st)
	}
	st, err := s.rooms.ResolveState(ctx, v, sets)
	return st, err == nil, err
}

// fetchMissing asks origin for the events between our extremities and ev
// and runs each through the pipeline, oldest first, without filling
// further gaps.
// authAndPrevMissing reports whether some of ev's auth events and some
// of its prev events are unknown here (events rejected here are known).
func (s *Service) authAndPrevMissing(ctx context.Context, ev *pdu.Event) (bool, error) {
	ids := append(slices.Clone(ev.AuthEvents), ev.PrevEvents...)
	stored, err := s.store.EventStateGroups(ctx, ids)
	if err != nil {
		return false, err
	}
	unknown := slices.DeleteFunc(ids, func(id string) bool { _, ok := stored[id]; return ok })
	if len(unknown) == 0 {
		return false, nil // the usual case: one query
	}
	rej, err := s.store.RejectedEvents(ctx, unknown)
	if err != nil {
		return false, err
	}
	missing := func(ids []string) bool {
		return slices.ContainsFunc(ids, func(id string) bool { return slices.Contains(unknown, id) && !rej[id] })
	}
	return missing(ev.AuthEvents) && missing(ev.PrevEvents), nil
}

func (s *Service) fetchMissing(ctx context.Context, origin string, ev *pdu.Event) {
	r, err := s.rooms.LockRoom(ctx, ev.RoomID)
	if err != nil {
		return
	}
	earliest := slices.Clone(r.Extremities())
	r.Unlock()
	req := &federation.GetMissingEventsRequest{EarliestEvents: earliest, LatestEvents: []string{ev.ID}, Limit: maxMissingEvents, MinDepth: 0}
	fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	resp, err := s.f.Client.GetMissingEvents(fctx, origin, ev.RoomID, req)
	if err != nil {
		s.log.Info("federation: get_missing_events failed", "origin", origin, "event_id", ev.ID, "err", err)
		return
	}
	if len(resp.Events) > maxMissingEvents {
		resp.Events = resp.Events[:maxMissingEvents]
	}
	var evs []*pdu.Event
	for _, raw := range resp.Events {
		e, err := pdu.Parse(raw, ev.Version)
		if err != nil || e.RoomID != ev.RoomID || e.ID == ev.ID {
			continue
		}
		evs = append(evs, e)
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Depth < evs[j].Depth })
	for _, e := range evs {
		if _, err := s.store.GetEvent(ctx, e.ID); err == nil {
			continue // known, if only as an outlier: its state is asked for when needed
		}
		if err := s.receive(ctx, origin, e, false); err != nil {
			s.log.Info("federation: missing event not accepted", "event_id", e.ID, "err", err)
		}
	}
}

// fetchEvents gets events by id from a server, a few at a time.
func (s *Service) fetchEvents(ctx context.Context, origin string, ids []string) []json.RawMessage {
	out := make([]json.RawMessage, len(ids))
	sem := make(chan struct{}, fetchParallel)
	var wg sync.WaitGroup
	for i, x := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if resp, err := s.f.Client.GetEvent(ctx, origin, x); err == nil && len(resp.PDUs) == 1 {
				out[i] = resp.PDUs[0]
			}
		}()
	}
	wg.Wait()
	return slices.DeleteFunc(out, func(r json.RawMessage) bool { return r == nil })
}

// stateEvents loads the events of a state map for the auth rules.
func (s *Service) stateEvents(ctx context.Context, st store.StateMap) (eventauth.StateMap, error) {
	ids := make([]string, 0, len(st))
	for _, x := range st {
		ids = append(ids, x)
	}
	evs, err := s.rooms.Events(ctx, ids)
	if err != nil {
		return nil, err
	}
	return eventauth.NewStateMap(evs...), nil
}

// commitLinear persists an event whose state before is the room's current
// state through the local events' pipeline. Caller holds r's lock.
func (s *Service) commitLinear(ctx context.Context, r *rooms.Room, ev *pdu.Event, origin string) error {
	b := s.rooms.NewBatch(r, origin)
	b.AddReceived(ev)
	return s.rooms.Commit(ctx, b)
}

// receiveRemoteLeave takes the leave ending a local user's invite to a
// room not known here (the inviter rescinded it): it is checked against
// that invite and kept for the user's syncs.
func (s *Service) receiveRemoteLeave(ctx context.Context, origin string, ev *pdu.Event) error {
	if ev.Type != "m.room.member" || ev.StateKey == nil || serverOf(*ev.StateKey) != s.serverName || rooms.MembershipOf(ev) != "leave" {
		return errors.New("the room is not known here")
	}
	m, err := s.store.GetRemoteMembership(ctx, ev.RoomID, *ev.StateKey)
	if errors.Is(err, store.ErrNotFound) || (err == nil && m.Membership == "leave") {
		return errors.New("the room is not known here")
	}
	if err != nil {
		return err
	}
	if m.RoomVersion != ev.Version.ID {
		return rejectedf("room version %s does not match the invite's", ev.Version.ID)
	}
	// This server cannot check the leave against the room's state: only
	// the inviter may rescind their invite here.
	inv, err := pdu.Parse(m.PDU, ev.Version)
	if err != nil || m.Membership != "invite" || ev.Sender != inv.Sender || serverOf(ev.Sender) != origin {
		return rejectedf("only the inviter may rescind an invite to a room not known here")
	}
	if _, err := s.verifiedOnce(ctx, ev); err != nil {
		return err
	}
	return s.rooms.PutRemoteMembership(ctx, store.RemoteMembership{
		RoomID: ev.RoomID, UserID: *ev.StateKey, Membership: "leave", EventID: ev.ID, RoomVersion: m.RoomVersion,
		PDU: ev.JSON(), Stripped: []byte("[]"), Servers: m.Servers,
	})
}
