package sync

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	gosync "sync"
	"time"

	"luxchat/internal/filter"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/roomread"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
	"luxchat/internal/streamtoken"
)

// DeviceData is what end-to-end encryption adds to a sync; the e2ee
// package implements it. Positions are those of store.Streams.ToDevice and
// store.Streams.DeviceLists (and Events for membership-driven changes).
type DeviceData interface {
	// ToDevice returns the device's to-device messages with
	// from < pos <= to, oldest first, at most limit, and the position of the
	// last one returned (to when none remain). Messages at or before from
	// were acknowledged by this sync and are deleted.
	ToDevice(ctx context.Context, userID, deviceID string, from, to int64, limit int) ([]json.RawMessage, int64, error)
	// DeviceListChanges returns the users whose devices or cross-signing
	// keys changed in the window and who share a room with userID, or who
	// came to share one (changed), and those who no longer share any room
	// (left). from is nil for an initial sync.
	DeviceListChanges(ctx context.Context, userID string, from *streamtoken.Token, to streamtoken.Token) (changed, left []string, err error)
	// KeyCounts returns device_one_time_keys_count and
	// device_unused_fallback_key_types for a device.
	KeyCounts(ctx context.Context, userID, deviceID string) (map[string]int, []string, error)
}

// coalesce is how long a woken sync waits for more news before it answers.
const coalesce = 5 * time.Millisecond

// Service builds sync responses. It is safe for concurrent use.
type Service struct {
	hooks Hooks

	store    *store.Store
	rooms    *rooms.Service
	read     *roomread.Service
	notifier *Notifier
	typing   *Typing
	log      *slog.Logger

	seenMu       gosync.Mutex
	presenceSeen map[presenceKey]time.Time // when that presence was last stored; every sync reads it
	touchMu      gosync.Mutex
	touches      map[string]int64 // user → last active (ms) not stored yet, see FlushPresence

	closing   chan struct{} // closed by Close
	closeOnce gosync.Once
}

// Close makes waiting syncs answer at once (graceful shutdown).
func (s *Service) Close() { s.closeOnce.Do(func() { close(s.closing) }) }

// Hooks are what other domains add to syncs; the server's wiring supplies
// them.
type Hooks struct {
	// Devices adds end-to-end encryption data (nil: none).
	Devices DeviceData
	// Federation hears of local typing, receipts and presence (nil: not
	// federating).
	Federation Federation
	// NotificationCounts, when set, answers the unread notification counts
	// (push rule actions) of all rooms of a response in one call.
	NotificationCounts func(ctx context.Context, userID string, roomIDs []string, upTo int64) ([]store.ThreadCount, error)
	// PushRules, when set, gives the m.push_rules content an initial sync
	// shows to a user who never changed their push rules.
	PushRules func(ctx context.Context, userID string) (json.RawMessage, error)
	// AccountData, when set, runs in the transaction that stores an item
	// of a user's account data (PutAccountData), so that what other
	// domains derive from it commits with it (the user directory choice).
	AccountData func(ctx context.Context, tx *store.Tx, userID, roomID, typ string, content []byte) error
}

// New returns the sync service.
func New(st *store.Store, rs *rooms.Service, read *roomread.Service, n *Notifier, t *Typing, log *slog.Logger, hooks Hooks) *Service {
	return &Service{store: st, rooms: rs, read: read, notifier: n, typing: t, log: log, hooks: hooks, closing: make(chan struct{}), touches: map[string]int64{}, presenceSeen: map[presenceKey]time.Time{}}
}

// Request is a /sync call.
type Request struct {
	UserID      string
	DeviceID    string
	Since       string
	Timeout     time.Duration
	FullState   bool
	Filter      *filter.Filter
	SetPresence string
	// StateAfter, when set, asks for state_after (MSC4222) instead of
	// state, under this key: "state_after" or the unstable
	// "org.matrix.msc4222.state_after".
	StateAfter string

	ignored map[string]bool // filled by build
}

// Response is the /sync body.
type Response struct {
	NextBatch   string       `json:"next_batch"`
	Rooms       *RoomsResp   `json:"rooms,omitempty"`
	AccountData *Events      `json:"account_data,omitempty"`
	Presence    *Events      `json:"presence,omitempty"`
	ToDevice    *Events      `json:"to_device,omitempty"`
	DeviceLists *DeviceLists `json:"device_lists,omitempty"`
	// OTKCounts and FallbackKeyTypes are sent with every sync once
	// end-to-end encryption is on.
	OTKCounts        map[string]int `json:"device_one_time_keys_count,omitempty"`
	FallbackKeyTypes []string       `json:"device_unused_fallback_key_types,omitempty"`
}

// DeviceLists is the device_lists section.
type DeviceLists struct {
	Changed []string `json:"changed,omitempty"`
	Left    []string `json:"left,omitempty"`
}

// Events is {"events": […]}.
type Events struct {
	Events []json.RawMessage `json:"events"`
}

// RoomsResp groups rooms by membership.
type RoomsResp struct {
	Join   map[string]*JoinedRoom  `json:"join,omitempty"`
	Invite map[string]*InvitedRoom `json:"invite,omitempty"`
	Leave  map[string]*LeftRoom    `json:"leave,omitempty"`
	Knock  map[string]*KnockedRoom `json:"knock,omitempty"`
}

// Timeline is a room's timeline section.
type Timeline struct {
	Events    []json.RawMessage `json:"events"`
	Limited   bool              `json:"limited"`
	PrevBatch string            `json:"prev_batch,omitempty"`
}

// JoinedRoom is one joined room.
type JoinedRoom struct {
	Summary             *roomread.Summary `json:"summary,omitempty"`
	State               Events            `json:"state"`
	Timeline            Timeline          `json:"timeline"`
	Ephemeral           Events            `json:"ephemeral"`
	AccountData         Events            `json:"account_data"`
	UnreadNotifications Unread            `json:"unread_notifications"`
	// UnreadThreadNotifications is per thread root, when the filter asks.
	UnreadThreadNotifications map[string]Unread `json:"unread_thread_notifications,omitempty"`

	// newMembers are the users an incremental sync newly shares this
	// room with: everyone in a room the user just joined, the joiners of
	// the timeline otherwise. Their presence is sent even if unchanged.
	newMembers []string
	// stateAfter is the key State is sent under when it holds state_after
	// ("" for state).
	stateAfter string
}

// Unread holds notification counts.
type Unread struct {
	NotificationCount int64 `json:"notification_count"`
	HighlightCount    int64 `json:"highlight_count"`
}

// InvitedRoom is one room the user is invited to.
type InvitedRoom struct {
	InviteState Events `json:"invite_state"`
}

// KnockedRoom is one room the user knocked on.
type KnockedRoom struct {
	KnockState Events `json:"knock_state"`
}

// LeftRoom is one room the user left or was removed from.
type LeftRoom struct {
	State       Events   `json:"state"`
	Timeline    Timeline `json:"timeline"`
	AccountData Events   `json:"account_data"`

	stateAfter string // as in JoinedRoom
}

// current is the token of everything committed now.
func (s *Service) current() streamtoken.Token {
	st := s.store.Streams
	return streamtoken.Token{
		Events:      st.Events.Current(),
		AccountData: st.AccountData.Current(),
		Receipts:    st.Receipts.Current(),
		Presence:    st.Presence.Current(),
		Typing:      s.typing.Current(),
		ToDevice:    st.ToDevice.Current(),
		DeviceLists: st.DeviceLists.Current(),
	}
}

// noKeyCounts and noFallbackKeys are sent (empty, never changed) to
// devices without keys: clients expect both in every response.
var (
	noKeyCounts    = map[string]int{}
	noFallbackKeys = []string{}
)

// Sync answers a /sync call, long-polling up to req.Timeout for news.
func (s *Service) Sync(ctx context.Context, req Request) (*Response, error) {
	var since *streamtoken.Token
	if req.Since != "" {
		t, err := streamtoken.Parse(req.Since)
		if err != nil {
			return nil, errcode.InvalidParam("invalid since token")
		}
		if t.AheadOf(s.current()) {
			return nil, errcode.InvalidParam("since token is ahead of this server")
		}
		since = &t
	}
	if req.Filter == nil {
		req.Filter = &filter.Filter{}
	}
	if err := s.setPresence(ctx, req.UserID, req.SetPresence); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(req.Timeout)
	var timer *time.Timer
	for {
		// A look that will not wait (a woken parked poll's) takes no
		// channel: one made per look is left for the user's next wake
		// to close.
		var wake <-chan struct{}
		if req.Timeout > 0 {
			wake = s.notifier.ChanFor(req.UserID, wantsPresence(req))
		}
		cur := s.current()
		// A token from before a restart may be ahead of typing, which
		// restarts at 0; never go backwards.
		if since != nil && cur.Typing < since.Typing {
			cur.Typing = since.Typing
		}
		if since != nil && !req.FullState && *since != cur && onlyUnwanted(req.Filter, *since, cur) {
			// Only presence moved and the filter wants none: nothing to
			// build (a user coming online wakes every roommate).
			since = &cur
		} else if since == nil || req.FullState || *since != cur {
			resp, err := s.build(ctx, req, since, cur)
			if err != nil {
				return nil, err
			}
			if since == nil || req.FullState || !resp.empty() || !time.Now().Before(deadline) {
				return resp, nil
			}
			// Nothing for this user: wait from here on.
			since = &cur
		}
		if !time.Now().Before(deadline) {
			return s.unchanged(ctx, req, cur)
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(deadline))
			defer timer.Stop()
		}
		select {
		case <-wake:
			// Let a burst of news land before answering: one response
			// instead of one per event when a room is busy.
			time.Sleep(coalesce)
		case <-timer.C:
			cur := s.current()
			if since != nil && cur.Typing < since.Typing {
				cur.Typing = since.Typing
			}
			if *since == cur || (!req.FullState && onlyUnwanted(req.Filter, *since, cur)) {
				// The usual end of a long poll: nothing it shows moved
				// (presence it leaves out does not wake it).
				return s.unchanged(ctx, req, cur)
			}
			resp, err := s.build(ctx, req, since, cur)
			if err != nil {
				return nil, err
			}
			return resp, nil
		case <-s.closing:
			// Shutting down: answer now so that the server can stop.
			return s.unchanged(ctx, req, *since)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// onlyUnwanted reports whether the streams that moved from since to cur
// are only those the filter shows nothing of (presence).
func onlyUnwanted(f *filter.Filter, since, cur streamtoken.Token) bool {
	if !f.Presence.Excludes("m.presence") {
		return false
	}
	since.Presence = cur.Presence
	return since == cur
}

// unchanged answers a sync that found nothing new. Key counts are still
// sent: clients rely on them being in every response.
func (s *Service) unchanged(ctx context.Context, req Request, cur streamtoken.Token) (*Response, error) {
	resp := &Response{NextBatch: cur.String()}
	if s.hooks.Devices == nil {
		return resp, nil
	}
	var err error
	if resp.OTKCounts, resp.FallbackKeyTypes, err = s.hooks.Devices.KeyCounts(ctx, req.UserID, req.DeviceID); err != nil {
		return nil, err
	}
	if resp.OTKCounts == nil {
		resp.OTKCounts = noKeyCounts
	}
	if resp.FallbackKeyTypes == nil {
		resp.FallbackKeyTypes = noFallbackKeys
	}
	return resp, nil
}

// Empty reports whether r holds nothing but its token and key counts:
// what a long poll keeps waiting after.
func (r *Response) Empty() bool { return r.empty() }

func (r *Response) empty() bool {
	if r.AccountData != nil && len(r.AccountData.Events) > 0 {
		return false
	}
	if r.Presence != nil && len(r.Presence.Events) > 0 {
		return false
	}
	if r.ToDevice != nil && len(r.ToDevice.Events) > 0 {
		return false
	}
	if r.DeviceLists != nil && len(r.DeviceLists.Changed)+len(r.DeviceLists.Left) > 0 {
		return false
	}
	if r.Rooms != nil && (len(r.Rooms.Join)+len(r.Rooms.Invite)+len(r.Rooms.Leave)+len(r.Rooms.Knock)) > 0 {
		return false
	}
	return true
}

func (s *Service) setPresence(ctx context.Context, userID, state string) error {
	switch state {
	case "":
		state = "online"
	case "online", "offline", "unavailable":
	default:
		return errcode.InvalidParam("set_presence must be online, offline or unavailable")
	}
	if state == "offline" {
		return nil // offline only means "do not mark me online"
	}
	// Most syncs repeat the state they set a moment ago: answer those from
	// memory instead of reading the presence row.
	key := presenceKey{userID, state}
	if last, ok := s.seen(key); ok {
		if time.Since(last) >= time.Minute {
			// Still in that state (a change drops the key): only the
			// time moves.
			s.touch(key)
		}
		return nil
	}
	p, err := s.store.GetPresence(ctx, userID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	var msg sql.NullString
	if p != nil {
		msg = p.StatusMsg
	}
	if err == nil && p.State == state && time.Since(time.UnixMilli(p.LastActiveTS)) < time.Minute {
		s.setSeen(key, time.UnixMilli(p.LastActiveTS))
		return nil
	}
	if err == nil && p.State == state {
		s.touch(key)
		return nil
	}
	if err := s.SetPresence(ctx, userID, state, msg); err != nil {
		return err
	}
	s.setSeen(key, time.Now())
	return nil
}

func (s *Service) seen(key presenceKey) (time.Time, bool) {
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	t, ok := s.presenceSeen[key]
	return t, ok
}

func (s *Service) setSeen(key presenceKey, t time.Time) {
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	s.presenceSeen[key] = t
}

// touch notes that a user is still active in a presence state, for the
// next FlushPresence. No one is woken: every online user does this each
// minute, and announcing it would wake every roommate of every online user
// that often.
func (s *Service) touch(key presenceKey) {
	now := time.Now()
	s.touchMu.Lock()
	s.touches[key.userID] = now.UnixMilli()
	s.touchMu.Unlock()
	s.setSeen(key, now)
}

// FlushPresence stores the last-active times noted since the last flush,
// in one transaction (the server's housekeeping calls it every half
// minute and at shutdown): a write per online user and minute was most of
// what idle clients cost the database.
func (s *Service) FlushPresence(ctx context.Context) error {
	s.touchMu.Lock()
	touches := s.touches
	s.touches = make(map[string]int64, len(touches))
	s.touchMu.Unlock()
	return s.store.TouchPresence(ctx, touches)
}

// presenceKey is a user in a presence state.
type presenceKey struct{ userID, state string }

// SetPresence stores a presence change and tells the users who share a room.
func (s *Service) SetPresence(ctx context.Context, userID, state string, msg sql.NullString) error {
	s.seenMu.Lock()
	delete(s.presenceSeen, presenceKey{userID, "online"})
	delete(s.presenceSeen, presenceKey{userID, "unavailable"})
	s.seenMu.Unlock()
	p := store.Presence{UserID: userID, State: state, StatusMsg: msg, LastActiveTS: time.Now().UnixMilli()}
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		_, err := tx.PutPresence(ctx, p)
		return err
	})
	if err != nil {
		return err
	}
	s.wakeForPresence(ctx, userID)
	if s.hooks.Federation != nil {
		s.hooks.Federation.Presence(ctx, p)
	}
	return nil
}

// wakeForPresence wakes the waits that want presence of every user
// sharing a joined room with userID. When no wait wants presence (most
// clients that poll by the thousand filter it out) nobody is read: a
// user in the all-staff room has 10,000 roommates, and 9,000 clients
// coming online at once read them 9,000 times. The roommates are read
// from the members table in one statement: asking each room would load
// the state of every room of the user into the rooms cache, which is
// most of what a user's first sync after a restart cost.
func (s *Service) wakeForPresence(ctx context.Context, userID string) {
	if !s.notifier.WantsPresence() {
		return
	}
	users, err := s.store.Roommates(ctx, userID)
	if err != nil {
		return
	}
	s.notifier.WakePresence(append(users, userID)...)
}

// SetTyping records typing and wakes the room's members.
func (s *Service) SetTyping(ctx context.Context, roomID, userID string, typing bool, timeout time.Duration) error {
	joined, err := s.rooms.JoinedUsers(ctx, roomID)
	if err != nil {
		return err
	}
	if !slices.Contains(joined, userID) && !s.rooms.InPartialServers(roomID, userID) {
		return errcode.Forbidden("you are not joined to this room")
	}
	if s.typing.Set(roomID, userID, typing, timeout) {
		s.notifier.Wake(joined...)
		if s.hooks.Federation != nil {
			s.hooks.Federation.Typing(ctx, roomID, userID, typing, timeout, joined)
		}
	}
	return nil
}

// ExpireTyping wakes the members of rooms whose typing notices ran out.
func (s *Service) ExpireTyping(ctx context.Context) {
	for _, roomID := range s.typing.Expired() {
		s.typing.Since(roomID, 0) // drops the expired entries
		if joined, err := s.rooms.JoinedUsers(ctx, roomID); err == nil {
			s.notifier.Wake(joined...)
		}
	}
}

// Wake tells a user's syncs that something changed (account data,
// receipts…).
func (s *Service) Wake(users ...string) { s.notifier.Wake(users...) }
