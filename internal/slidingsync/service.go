package slidingsync

import (
	"context"
	"encoding/json"
	"errors"
	"hash/maphash"
	"luxchat/internal/filter"
	"maps"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/roomread"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
	"luxchat/internal/streamtoken"
	"luxchat/internal/sync"
	"luxchat/internal/threadsubs"
)

// Service answers simplified sliding sync (MSC4186). It is safe for
// concurrent use.
type Service struct {
	store *store.Store
	rooms *rooms.Service
	read  *roomread.Service
	sync  *sync.Service
	conns *connections
	// threadSubs answers the thread subscriptions extension (nil: off).
	threadSubs *threadsubs.Service

	latestMu  gosync.Mutex
	latest    map[string]int64 // newest position of rooms the rooms service has none for
	sendersMu gosync.Mutex
	senders   map[string]string // sender of leave events, for kicks and bans
	meta      metaCache
}

// New returns the service. It builds on the sync service: the same
// streams, notifier, presence, unread counts, typing, receipts and
// devices' data as /sync.
func New(st *store.Store, rs *rooms.Service, read *roomread.Service, sy *sync.Service, subs *threadsubs.Service) *Service {
	return &Service{store: st, rooms: rs, read: read, sync: sy, threadSubs: subs, conns: newConnections(),
		latest: map[string]int64{}, senders: map[string]string{}, meta: metaCache{m: map[string]roomMeta{}}}
}

// Connections is the number of live connections (for tests and metrics).
func (s *Service) Connections() int { return s.conns.count() }

// coalesce is how long a woken poll lets a burst of news land.
const coalesce = 5 * time.Millisecond

// Sync answers one request of a connection, waiting up to its timeout
// for something to send when it has a pos. Waiting costs no work: the
// poll sleeps on the user's notifier channel and looks again only when
// the user has news. (The client API parks long polls instead: Begin,
// Look and WakeAfter.)
func (s *Service) Sync(ctx context.Context, req Request) (*Response, error) {
	p, err := s.Begin(ctx, req)
	if err != nil {
		return nil, err
	}
	var timer *time.Timer
	for {
		wake := s.sync.NewsChan(req.UserID)
		resp, done, err := p.Look(ctx, false)
		if err != nil || done {
			return resp, err
		}
		if timer == nil {
			timer = time.NewTimer(time.Until(p.deadline))
			defer timer.Stop()
		}
		select {
		case <-wake:
			time.Sleep(coalesce)
		case <-timer.C:
		case <-s.sync.Closing():
			resp, _, err := p.Look(ctx, true)
			return resp, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Poll is one request of a connection, from its start to its answer.
type Poll struct {
	s        *Service
	req      Request
	c        *conn
	base     *connState
	gen      uint64
	deadline time.Time
	looked   streamtoken.Token // the positions of the last look
	key      uint64            // the request's settings (Request.key)
	// quiet: a look at quietAt found nothing for this request, and its
	// answer would be quietAnswer (see idleAnswer); set only when base
	// was made by the same request.
	quietAt     streamtoken.Token
	quietAnswer *idleAnswer
	compact     bool // req holds its body only (Compact)
}

// idleAnswer is the answer of a request that found nothing new: the
// lists' counts and the extensions' empty results. The same request
// from the state it left, with no stream moved since, finds nothing
// either and is answered alike (only the device's key counts, which no
// stream carries, are read again): an idle connection's polls build
// nothing, clone nothing and read nothing else.
type idleAnswer struct {
	lists map[string]ListResult
	ext   Extensions
}

// idleAnswerOf keeps what an empty answer says, without its key counts.
func idleAnswerOf(resp *Response) *idleAnswer {
	a := &idleAnswer{lists: resp.Lists, ext: resp.Extensions}
	if e := a.ext.E2EE; e != nil {
		a.ext.E2EE = &E2EEResult{}
	}
	return a
}

// Begin starts a request: it applies set_presence and finds the
// connection its pos names (M_UNKNOWN_POS when none), or opens one.
func (s *Service) Begin(ctx context.Context, req Request) (*Poll, error) {
	if err := s.sync.MarkPresence(ctx, req.UserID, req.SetPresence); err != nil {
		return nil, err
	}
	p := &Poll{s: s, req: req, key: req.key()}
	key := connKey{req.UserID, req.DeviceID, req.ConnID}
	if req.Pos == "" {
		p.c = s.conns.open(key)
		p.base, p.gen = p.c.start()
		p.req.Timeout = 0 // a new connection answers at once
	} else {
		var err error
		if p.c, p.base, p.gen, err = s.conns.find(key, req.Pos); err != nil {
			return nil, err
		}
	}
	p.deadline = time.Now().Add(p.req.Timeout)
	return p, nil
}

// Compact drops the decoded request of a poll about to wait, keeping the
// body it came in (a few hundred bytes for a few KiB of lists and
// configs): a poll answered from its state needs none of it, and a look
// after news decodes it again. Called before the poll waits, not while
// it looks.
func (p *Poll) Compact() {
	if p.req.body == nil || p.compact {
		return
	}
	p.req.Lists, p.req.Subscribe, p.req.Unsubscribe, p.req.Extensions = nil, nil, nil, ExtensionsRequest{}
	// Used by Begin only; parts of the request's query, which they
	// would keep whole (with its head, when read outside net/http).
	p.req.Pos, p.req.SetPresence = "", ""
	p.compact = true
}

// expand decodes a compacted request again (it was decoded once: no
// error).
func (p *Poll) expand() {
	if !p.compact {
		return
	}
	r, _ := DecodeRequest(p.req.body, "", "")
	p.req.Lists, p.req.Subscribe, p.req.Unsubscribe, p.req.Extensions = r.Lists, r.Subscribe, r.Unsubscribe, r.Extensions
	p.compact = false
}

// Deadline is when the poll answers even with nothing new.
func (p *Poll) Deadline() time.Time { return p.deadline }

// UserID is the poll's user.
func (p *Poll) UserID() string { return p.req.UserID }

// Look builds the answer as things are now. done reports that it is the
// answer (something new, a new connection, the deadline passed, or
// final); when not, the poll waits for news (WakeAfter) and looks again.
func (p *Poll) Look(ctx context.Context, final bool) (*Response, bool, error) {
	s := p.s
	cur := s.sync.Current()
	if cur.Typing < p.base.token.Typing {
		cur.Typing = p.base.token.Typing // typing restarts with the process
	}
	p.looked = cur
	if p.quietAnswer == nil && p.base.idle != nil && p.base.key == p.key && cur == p.base.token {
		// The state's own request again, nothing moved since it.
		p.quietAt, p.quietAnswer = cur, p.base.idle
	}
	if p.quietAnswer != nil && cur == p.quietAt {
		if !final && time.Now().Before(p.deadline) {
			return nil, false, nil
		}
		return p.answerQuiet(ctx, cur)
	}
	p.expand()
	next := p.base.clone()
	next.token = cur
	applyRequest(next, p.req)
	resp, err := s.build(ctx, p.req, p.c, p.base, next, cur)
	if err != nil {
		return nil, true, err
	}
	empty := !p.base.first && resp.empty(p.base)
	if !final && empty && time.Now().Before(p.deadline) {
		if p.key == p.base.key {
			p.quietAt, p.quietAnswer = cur, idleAnswerOf(resp)
		}
		return nil, false, nil
	}
	next.key = p.key
	if empty {
		next.idle = idleAnswerOf(resp)
	}
	pos := p.c.keep(p.gen, next)
	if pos == "" {
		return nil, true, errcode.UnknownPos("a newer request of this connection came first")
	}
	resp.Pos = pos
	resp.TxnID = p.req.TxnID
	return resp, true, nil
}

// answerQuiet answers a request that found nothing (quietAnswer) with
// no stream moved since: the state it keeps is base's, sharing its maps
// (a kept state is never written), at cur.
func (p *Poll) answerQuiet(ctx context.Context, cur streamtoken.Token) (*Response, bool, error) {
	a := p.quietAnswer
	resp := &Response{Lists: a.lists, Extensions: a.ext, TxnID: p.req.TxnID}
	if a.ext.E2EE != nil {
		e := &E2EEResult{OTKCounts: map[string]int{}, FallbackKeyTypes: []string{}}
		if devices := p.s.sync.Devices(); devices != nil {
			counts, types, err := devices.KeyCounts(ctx, p.req.UserID, p.req.DeviceID)
			if err != nil {
				return nil, true, err
			}
			if counts != nil {
				e.OTKCounts = counts
			}
			if types != nil {
				e.FallbackKeyTypes = types
			}
		}
		resp.Extensions.E2EE = e
	}
	next := *p.base
	next.token, next.first, next.key, next.idle = cur, false, p.key, a
	if resp.Pos = p.c.keep(p.gen, &next); resp.Pos == "" {
		return nil, true, errcode.UnknownPos("a newer request of this connection came first")
	}
	return resp, true, nil
}

// WakeAfter has w woken once at the user's next news after the last
// look (at once when some came since). StopWake cancels it.
func (p *Poll) WakeAfter(w sync.Waker) error {
	return p.s.sync.WakeAfter(sync.Request{UserID: p.req.UserID, Since: p.looked.String(), Filter: noPresence}, w)
}

// noPresence tells the notifier that a sliding sync poll shows no
// presence: presence changes need not wake it.
var noPresence = &filter.Filter{Presence: &filter.EventFilter{Types: []string{}}}

// StopWake cancels a WakeAfter not woken yet.
func (p *Poll) StopWake(w sync.Waker) { p.s.sync.StopWake(p.req.UserID, w) }

// keySeed hashes requests' settings (Request.key), in this process.
var keySeed = maphash.MakeSeed()

// key is a hash of what the request asks for beyond its pos, timeout,
// txn_id and presence: two requests of a connection with one key are
// the same request again.
func (r Request) key() uint64 {
	r.UserID, r.DeviceID, r.TxnID, r.Pos, r.Timeout, r.SetPresence = "", "", "", "", 0, ""
	b, err := json.Marshal(r)
	if err != nil {
		return 0 // never equal to a state's key (0 is none)
	}
	return maphash.Bytes(keySeed, b) | 1
}

// applyRequest sets what a request changes of a connection's sticky
// settings: subscriptions and extensions.
func applyRequest(st *connState, req Request) {
	for _, id := range req.Unsubscribe {
		delete(st.subs, id)
	}
	for id, c := range req.Subscribe {
		if len(st.subs) >= maxSubscriptions {
			break
		}
		st.subs[id] = c
	}
	st.ext.apply(req.Extensions)
	st.lists = make(map[string]int, len(req.Lists))
}

// Response is the answer to a sliding sync request.
type Response struct {
	Pos        string                `json:"pos"`
	TxnID      string                `json:"txn_id,omitempty"`
	Lists      map[string]ListResult `json:"lists"`
	Rooms      map[string]*Room      `json:"rooms,omitempty"`
	Extensions Extensions            `json:"extensions"`
}

// ListResult is a list's size after its filters.
type ListResult struct {
	Count int `json:"count"`
}

// Room is what a response says of a room: everything when Initial, else
// what changed since the room was last sent on the connection.
type Room struct {
	Name    json.RawMessage `json:"name,omitempty"`
	Avatar  json.RawMessage `json:"avatar,omitempty"`
	Heroes  []Hero          `json:"heroes,omitempty"`
	Initial bool            `json:"initial,omitempty"`
	// ExpandedTimeline: the timeline holds events sent before, resent
	// because the room's timeline_limit grew (the unstable name too,
	// which clients of Synapse read).
	ExpandedTimeline         bool              `json:"expanded_timeline,omitempty"`
	UnstableExpandedTimeline bool              `json:"unstable_expanded_timeline,omitempty"`
	IsDM                     *bool             `json:"is_dm,omitempty"`
	Membership               string            `json:"membership,omitempty"`
	Lists                    []string          `json:"lists,omitempty"`
	InviteState              []json.RawMessage `json:"invite_state,omitempty"`
	KnockState               []json.RawMessage `json:"knock_state,omitempty"`
	RequiredState            []json.RawMessage `json:"required_state,omitempty"`
	Timeline                 []json.RawMessage `json:"timeline,omitempty"`
	PrevBatch                string            `json:"prev_batch,omitempty"`
	Limited                  bool              `json:"limited,omitempty"`
	NumLive                  *int              `json:"num_live,omitempty"`
	BumpStamp                *int64            `json:"bump_stamp,omitempty"`
	JoinedCount              *int              `json:"joined_count,omitempty"`
	InvitedCount             *int              `json:"invited_count,omitempty"`
	NotificationCount        *int64            `json:"notification_count,omitempty"`
	HighlightCount           *int64            `json:"highlight_count,omitempty"`
}

// Hero is a member a client may name a room without a name after.
type Hero struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"displayname,omitempty"`
	AvatarURL   string `json:"avatar_url,omitempty"`
}

// empty reports whether a response tells the client nothing new: what a
// long poll keeps waiting after.
func (r *Response) empty(base *connState) bool {
	if len(r.Rooms) > 0 || !r.Extensions.empty() {
		return false
	}
	for name, l := range r.Lists {
		if n, ok := base.lists[name]; !ok || n != l.Count {
			return false
		}
	}
	return true
}

// wanted is a room that lists or subscriptions ask for.
type wanted struct {
	m     store.Membership
	order int64
	cfg   RoomConfig
	lists []string
	sent  []string // the ids of the timeline events sent (set by room)
}

// build computes the answer to a request from the connection state base
// (what the client has) and records in next what it sends.
func (s *Service) build(ctx context.Context, req Request, c *conn, base, next *connState, cur streamtoken.Token) (*Response, error) {
	resp := &Response{Lists: map[string]ListResult{}}
	data := c.data
	if _, err := data.update(ctx, s.store, req.UserID, cur.AccountData); err != nil {
		return nil, err
	}
	ignored, err := s.read.IgnoredUsers(ctx, req.UserID)
	if err != nil {
		return nil, err
	}
	entries, err := s.roomList(ctx, req.UserID, base, data, ignored)
	if err != nil {
		return nil, err
	}
	joined := make(map[string]bool, len(entries))
	for _, e := range entries {
		if e.m.Membership == "join" {
			joined[e.m.RoomID] = true
		}
	}
	want := map[string]*wanted{}
	names := slices.Sorted(maps.Keys(req.Lists))
	for _, name := range names {
		l := req.Lists[name]
		kept, err := s.filterList(ctx, entries, l.Filters, data, joined)
		if err != nil {
			return nil, err
		}
		if l.Room.needsFullState(req.UserID) {
			kept = slices.DeleteFunc(kept, func(e entry) bool { return s.partial(e.m) })
		}
		resp.Lists[name] = ListResult{Count: len(kept)}
		next.lists[name] = len(kept)
		add := func(e entry) {
			w := want[e.m.RoomID]
			if w == nil {
				w = &wanted{m: *e.m, order: e.order, cfg: l.Room}
				want[e.m.RoomID] = w
			} else {
				w.cfg = w.cfg.merge(l.Room)
			}
			if !slices.Contains(w.lists, name) {
				w.lists = append(w.lists, name)
			}
		}
		if l.All {
			for _, e := range kept {
				add(e)
			}
		}
		for _, r := range l.Ranges {
			for i := r[0]; i <= r[1] && i < len(kept); i++ {
				add(kept[i])
			}
		}
	}
	// Subscriptions: rooms the user is or was in, or is invited to or
	// knocked on; others are ignored, as the MSC says.
	if len(next.subs) > 0 {
		ms, err := s.rooms.Memberships(ctx, req.UserID)
		if err != nil {
			return nil, err
		}
		byID := make(map[string]store.Membership, len(ms))
		for _, m := range ms {
			byID[m.RoomID] = m
		}
		for id, cfg := range next.subs {
			if m := byID[id]; cfg.needsFullState(req.UserID) && s.partial(&m) {
				continue
			}
			if w := want[id]; w != nil {
				w.cfg = w.cfg.merge(cfg)
				continue
			}
			m, ok := byID[id]
			if !ok || m.Membership == "invite" && !slices.ContainsFunc(entries, func(e entry) bool { return e.m.RoomID == id }) {
				continue
			}
			es := []entry{{m: &m, order: m.Pos}}
			if err := s.fillOrder(ctx, es); err != nil {
				return nil, err
			}
			want[id] = &wanted{m: m, order: es[0].order, cfg: cfg}
		}
	}
	b := &builder{s: s, req: req, base: base, next: next, cur: cur, data: data, ignored: ignored, resp: resp}
	if err := b.rooms(ctx, want); err != nil {
		return nil, err
	}
	if err := b.extensions(ctx, want); err != nil {
		return nil, err
	}
	if base.first {
		data.dropGlobal()
	}
	return resp, nil
}

// builder holds what one build works with.
type builder struct {
	s       *Service
	req     Request
	base    *connState
	next    *connState
	cur     streamtoken.Token
	data    *userData
	ignored map[string]bool
	resp    *Response
	// initial lists the rooms sent in full; expanded those whose timeline
	// is sent again longer; restate those whose state is sent again in
	// full (their state config changed); timelineIDs their timeline's event ids (for
	// their receipts).
	initial     map[string]bool
	expanded    map[string]bool
	restate     map[string]bool
	timelineIDs map[string]bool
}

// bumpTypes are the events that move a room's bump_stamp.
var bumpTypes = []string{"m.room.create", "m.room.message", "m.room.encrypted", "m.sticker", "m.call.invite", "m.poll.start", "m.beacon_info"}

// rooms decides which wanted rooms to send and builds them.
func (b *builder) rooms(ctx context.Context, want map[string]*wanted) error {
	b.initial, b.expanded, b.restate, b.timelineIDs = map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	// Unread counts move with events and receipts: counted (for all the
	// wanted joined rooms at once) only when one of those moved.
	var counts map[string]sync.Unread
	if b.base.first || b.cur.Events != b.base.token.Events || b.cur.Receipts != b.base.token.Receipts {
		var ids []string
		for id, w := range want {
			if w.m.Membership == "join" {
				ids = append(ids, id)
			}
		}
		var err error
		if counts, err = b.s.sync.UnreadCounts(ctx, b.req.UserID, ids, b.cur.Events); err != nil {
			return err
		}
	}
	var send []*wanted
	for id, w := range want {
		prev, sent := b.base.rooms[id]
		cfgKey := w.cfg.stateKey()
		initial := !sent || (prev.membership != "join" && w.m.Membership == "join")
		// Asked for other state than when last sent: the state the new
		// config asks for, in full, without the room's other fields.
		restate := sent && !initial && cfgKey != prev.stateKey && w.m.Membership != "invite" && w.m.Membership != "knock"
		// A longer timeline than the client holds: its newest events are
		// sent again, at once (MSC4186 "Changes to timeline_limit").
		expanded := !initial && w.m.Membership == "join" && w.cfg.TimelineLimit > prev.have
		unread := prev.unread // counted for joined rooms only
		if c, ok := counts[id]; ok {
			unread = c
		} else if counts != nil && w.m.Membership == "join" {
			unread = sync.Unread{}
		}
		changed := initial || expanded || restate || w.m.Pos != prev.memberPos || b.data.isDM(id) != prev.isDM || unread != prev.unread
		if !changed && w.m.Membership == "join" && w.order > prev.pos {
			changed = true
		}
		if !changed && (w.m.Membership == "leave" || w.m.Membership == "ban") && min(w.m.Pos, b.cur.Events) > prev.pos {
			changed = true
		}
		if !changed {
			prev.stateKey = cfgKey
			b.next.rooms[id] = prev
			continue
		}
		if initial {
			b.initial[id] = true
		}
		if expanded {
			b.expanded[id] = true
		}
		if restate {
			b.restate[id] = true
		}
		send = append(send, w)
	}
	if len(send) == 0 {
		return nil
	}
	b.resp.Rooms = make(map[string]*Room, len(send))
	// Member counts and heroes of the rooms sent in full, in one read.
	var full []string
	for _, w := range send {
		if b.initial[w.m.RoomID] && w.m.Membership == "join" {
			full = append(full, w.m.RoomID)
		}
	}
	summaries := map[string]*roomread.Summary{}
	if len(full) > 0 {
		var err error
		if summaries, err = b.s.read.RoomSummaries(ctx, full, b.req.UserID); err != nil {
			return err
		}
	}
	heroes := make(map[string][]string, len(summaries))
	for id, sum := range summaries {
		if sum != nil {
			heroes[id] = sum.Heroes
		}
	}
	pre, err := b.prefetch(ctx, send, heroes)
	if err != nil {
		return err
	}
	for _, w := range send {
		var unread *sync.Unread
		if c, ok := counts[w.m.RoomID]; ok {
			unread = &c
		} else if counts != nil && w.m.Membership == "join" {
			unread = &sync.Unread{}
		}
		r, err := b.room(ctx, w, unread, summaries[w.m.RoomID], pre)
		if err != nil {
			return err
		}
		b.resp.Rooms[w.m.RoomID] = r
	}
	return nil
}

// room builds one room of the response and records what it sent.
func (b *builder) room(ctx context.Context, w *wanted, unread *sync.Unread, sum *roomread.Summary, pre *prefetched) (*Room, error) {
	id, m := w.m.RoomID, w.m
	prev := b.base.rooms[id]
	initial := b.initial[id]
	expanded := b.expanded[id]
	sent := sentRoom{membership: constMembership(m.Membership), memberPos: m.Pos, have: prev.have, stateKey: w.cfg.stateKey(),
		isDM: b.data.isDM(id), pos: prev.pos, lazy: prev.lazy, unread: prev.unread,
		receipts: prev.receipts, typing: prev.typing}
	if unread != nil {
		sent.unread = *unread
	}
	r := &Room{Initial: initial, Lists: w.lists, ExpandedTimeline: expanded, UnstableExpandedTimeline: expanded}
	if initial || m.Pos != prev.memberPos {
		r.Membership = m.Membership
	}
	if initial && sent.isDM || !initial && sent.isDM != prev.isDM {
		r.IsDM = &sent.isDM
	}
	switch m.Membership {
	case "invite", "knock":
		if initial || m.Pos != prev.memberPos {
			stripped, err := b.s.read.StrippedState(ctx, id, b.req.UserID)
			if err != nil {
				return nil, err
			}
			if m.Membership == "invite" {
				r.InviteState = stripped
			} else {
				r.KnockState = stripped
			}
		}
		stamp := m.Pos
		r.BumpStamp = &stamp
		sent.pos = m.Pos
		b.next.rooms[id] = sent
		return r, nil
	}
	if unread != nil && (initial || *unread != prev.unread) {
		r.NotificationCount, r.HighlightCount = &unread.NotificationCount, &unread.HighlightCount
	}
	hi := b.cur.Events
	if m.Membership != "join" {
		hi = min(m.Pos, hi)
	}
	lo := int64(0)
	if !initial && !expanded {
		lo = prev.pos
	}
	if initial {
		sent.lazy = nil
	}
	limit := w.cfg.TimelineLimit
	var rows []*store.EventRow
	prefetched, fromPre := pre.rows[id]
	fromPre = fromPre && initial && m.Membership == "join"
	if fromPre {
		rows = slices.Clone(prefetched)
	} else if hi > lo {
		var ok bool
		rows, ok = b.s.rooms.RecentEvents(id, lo, hi, limit+1)
		if ok {
			rows = slices.Clone(rows)
		} else {
			var err error
			if rows, err = b.s.store.RoomEvents(ctx, id, lo, hi, true, limit+1); err != nil {
				return nil, err
			}
		}
	}
	// bump_stamp: the newest event of a bumping type; the membership's
	// position when not joined.
	var bump int64
	for _, row := range rows {
		if slices.Contains(bumpTypes, row.Type) {
			bump = row.Pos
			break
		}
	}
	if bump == 0 && initial && m.Membership == "join" {
		var err error
		if bump, err = b.s.store.LatestOfTypes(ctx, id, bumpTypes, hi); err != nil {
			return nil, err
		}
	}
	if m.Membership != "join" && (initial || m.Pos != prev.memberPos) {
		bump = m.Pos
	}
	if bump > 0 {
		r.BumpStamp = &bump
	}
	limited := len(rows) > limit
	// The state that changed is what came after the room was last sent:
	// for an expanded timeline, its rows newer than that (a gap when all
	// limit+1 read are).
	stateLo, stateRows, stateLimited := lo, rows, limited
	if expanded {
		n := 0
		for n < len(rows) && rows[n].Pos > prev.pos {
			n++
		}
		stateLo, stateRows, stateLimited = prev.pos, slices.Clone(rows[:min(n, limit)]), n > limit
	}
	if limited {
		rows = rows[:limit]
	}
	switch {
	case limited:
		sent.have = len(rows)
	case initial || expanded:
		sent.have = haveAll
	default:
		sent.have = min(prev.have+len(rows), haveAll)
	}
	slices.Reverse(rows)
	var visible []*store.EventRow
	var err error
	if m.Membership == "join" {
		visible, err = b.s.rooms.VisibleTo(ctx, m, rows)
	} else {
		visible, err = b.s.rooms.Visible(ctx, id, b.req.UserID, m.Membership, rows)
	}
	if err != nil {
		return nil, err
	}
	var bundles map[string]json.RawMessage
	if limited && fromPre {
		bundles = pre.bundles
	} else if limited {
		if bundles, err = b.s.read.Bundles(ctx, b.req.UserID, hi, visible); err != nil {
			return nil, err
		}
	}
	membershipAt := b.s.rooms.MembershipLookup(m)
	lazyWant := map[string]bool{}
	live := 0
	for _, row := range visible {
		if b.ignored[row.Sender] {
			continue
		}
		r.Timeline = append(r.Timeline, b.s.read.ClientEvent(row, roomread.Format{Viewer: b.req.UserID, DeviceID: b.req.DeviceID,
			OmitRoomID: true, Relations: bundles[row.EventID], Membership: membershipAt(ctx, row)}))
		b.timelineIDs[row.EventID] = true
		w.sent = append(w.sent, row.EventID)
		lazyWant[row.Sender] = true
		if row.Type == "m.room.member" && row.StateKey.Valid {
			lazyWant[row.StateKey.String] = true
		}
		if !b.base.first && row.Pos > b.base.token.Events {
			live++
		}
	}
	if !b.base.first {
		r.NumLive = &live
	}
	r.Limited = limited
	if len(rows) > 0 {
		r.PrevBatch = streamtoken.Pagination(rows[0].Pos - 1)
	} else if initial {
		r.PrevBatch = streamtoken.Pagination(hi)
	}
	if hi > sent.pos {
		sent.pos = hi
	}
	var pst map[store.StateKey]*store.EventRow
	if fromPre {
		pst = pre.state[id]
	}
	if err := b.state(ctx, w, r, &sent, initial, initial || b.restate[id], stateLo, hi, stateRows, stateLimited, lazyWant, sum, pst); err != nil {
		return nil, err
	}
	b.next.rooms[id] = sent
	return r, nil
}

// constMembership is a membership as a constant string: one read from
// the database is an allocation of its own, which a sentRoom would keep.
func constMembership(m string) string {
	for _, c := range [...]string{"join", "invite", "leave", "ban", "knock"} {
		if m == c {
			return c
		}
	}
	return m
}

// state fills a room's required_state and what derives from state: name,
// avatar, heroes and member counts.
func (b *builder) state(ctx context.Context, w *wanted, r *Room, sent *sentRoom, initial, all bool, lo, hi int64,
	rows []*store.EventRow, limited bool, lazyWant map[string]bool, sum *roomread.Summary, pst map[store.StateKey]*store.EventRow) error {
	id, m, user := w.m.RoomID, w.m, b.req.UserID
	lazy := w.cfg.lazy()
	if !lazy {
		lazyWant = nil
	}
	for u := range lazyWant {
		if _, had := slices.BinarySearch(sent.lazy, u); had {
			delete(lazyWant, u)
		}
	}
	// changed: the state keys set in the window (nil when all are sent).
	var changed map[store.StateKey]bool
	if !all {
		changed = map[store.StateKey]bool{}
		if limited {
			gap, err := b.s.store.RoomStateEventsBetween(ctx, id, lo, hi)
			if err != nil {
				return err
			}
			for _, g := range gap {
				changed[store.StateKey{Type: g.Type, StateKey: g.StateKey.String}] = true
			}
		} else {
			for _, row := range rows {
				if row.StateKey.Valid {
					changed[store.StateKey{Type: row.Type, StateKey: row.StateKey.String}] = true
				}
			}
		}
	}
	wantKey := func(k store.StateKey) bool {
		if k.Type == "m.room.member" && lazyWant[k.StateKey] {
			return true
		}
		return (changed == nil || changed[k]) && w.cfg.matches(k.Type, k.StateKey, user)
	}
	var st store.StateMap
	var have map[string]*store.EventRow // rows of st already read
	var err error
	if pst != nil {
		// Read with the window's other rooms (prefetch): the wanted keys.
		st, have = make(store.StateMap, len(pst)), make(map[string]*store.EventRow, len(pst))
		for k, row := range pst {
			st[k], have[row.EventID] = row.EventID, row
		}
	} else if m.Membership == "join" {
		st, err = b.s.rooms.CurrentStateIDsOf(ctx, id, func(u string) bool { return wantKey(store.StateKey{Type: "m.room.member", StateKey: u}) })
	} else {
		st, err = b.s.read.StateAfter(ctx, m.EventID)
		if errcodeNotFound(err) {
			st, err = store.StateMap{}, nil
		}
	}
	if err != nil {
		return err
	}
	if len(lazyWant) > 0 && m.Membership == "join" && b.s.rooms.IsPartialState(id) {
		// The state of a room joined with partial state lacks most
		// members: the senders' member events are among their events'
		// auth events, as /sync finds them.
		extra, err := b.s.rooms.SenderMembersFromAuth(ctx, id, w.sent, lazyWant)
		if err != nil {
			return err
		}
		st = maps.Clone(st)
		for k, ev := range extra {
			if _, ok := st[k]; !ok {
				st[k] = ev
			}
		}
	}
	keep := store.StateMap{}
	for k, ev := range st {
		if wantKey(k) {
			keep[k] = ev
		}
	}
	if len(keep) > 0 {
		if r.RequiredState, err = b.s.read.RenderState(ctx, keep, user, have); err != nil {
			return err
		}
	}
	// State deleted in the window (what state resolution can do): a stub.
	for k := range changed {
		if _, ok := st[k]; !ok && m.Membership == "join" && w.cfg.matches(k.Type, k.StateKey, user) {
			stub, _ := json.Marshal(map[string]string{"type": k.Type, "state_key": k.StateKey})
			r.RequiredState = append(r.RequiredState, stub)
		}
	}
	if len(lazyWant) > 0 {
		var set []string
		if len(sent.lazy)+len(lazyWant) <= maxLazyMembers {
			set = append(make([]string, 0, len(sent.lazy)+len(lazyWant)), sent.lazy...)
		}
		for u := range lazyWant {
			set = append(set, u)
		}
		slices.Sort(set)
		sent.lazy = set
	}
	if m.Membership != "join" {
		return nil
	}
	// Name, avatar, heroes and counts: in full for an initial room, else
	// when the state behind them changed.
	nameChanged := initial || changed[store.StateKey{Type: "m.room.name"}]
	membersChanged := initial
	for k := range changed {
		if k.Type == "m.room.member" {
			membersChanged = true
			break
		}
	}
	// stateField reads a field of current state: from what prefetch read
	// when it did, else through the rooms cache.
	stateField := func(typ, key, field string) string {
		if pst != nil {
			return contentString(pst[store.StateKey{Type: typ, StateKey: key}], field)
		}
		return b.s.stateString(ctx, id, typ, key, field)
	}
	name := ""
	if nameChanged || membersChanged {
		name = stateField("m.room.name", "", "name")
	}
	if nameChanged {
		r.Name = jsonStringOrNull(name, initial)
	}
	if initial || changed[store.StateKey{Type: "m.room.avatar"}] {
		r.Avatar = jsonStringOrNull(stateField("m.room.avatar", "", "url"), initial)
	}
	if !membersChanged {
		return nil
	}
	if sum == nil {
		if sum, err = b.s.read.RoomSummary(ctx, id, user); err != nil {
			return err
		}
	}
	if sum == nil {
		return nil
	}
	r.JoinedCount, r.InvitedCount = &sum.JoinedMemberCount, &sum.InvitedMemberCount
	if name == "" {
		for _, h := range sum.Heroes {
			r.Heroes = append(r.Heroes, Hero{UserID: h, DisplayName: stateField("m.room.member", h, "displayname"),
				AvatarURL: stateField("m.room.member", h, "avatar_url")})
		}
	}
	return nil
}

// stateString is a string field of a room's current state event ("" when
// unset).
func (s *Service) stateString(ctx context.Context, roomID, typ, key, field string) string {
	ev, err := s.rooms.CurrentStateEvent(ctx, roomID, typ, key)
	if err != nil {
		return ""
	}
	var c map[string]any
	if json.Unmarshal(ev.Content, &c) != nil {
		return ""
	}
	v, _ := c[field].(string)
	return v
}

// jsonStringOrNull is a name or avatar as sent: omitted when unset in an
// initial room, null when it was removed.
func jsonStringOrNull(v string, initial bool) json.RawMessage {
	if v == "" {
		if initial {
			return nil
		}
		return json.RawMessage("null")
	}
	b, _ := json.Marshal(v)
	return b
}

// matches reports whether a config asks for a state entry.
func (c RoomConfig) matches(typ, key, userID string) bool {
	for _, st := range c.States {
		if st.matches(typ, key, userID) {
			return true
		}
	}
	return false
}

// matches applies one required state: entries naming the type rule it;
// entries of any type ("*") rule the types no entry names.
func (rs RequiredState) matches(typ, key, userID string) bool {
	keyMatch := func(p StatePair) bool {
		return p.StateKey == wildcard || p.StateKey == key || p.StateKey == "$ME" && key == userID
	}
	for _, p := range rs.Exclude {
		if (p.Type == wildcard || p.Type == typ) && keyMatch(p) {
			return false
		}
	}
	named := false
	for _, p := range rs.Include {
		if p.Type == typ {
			named = true
			if keyMatch(p) {
				return true
			}
		}
	}
	if named {
		return false
	}
	for _, p := range rs.Include {
		if p.Type == wildcard && keyMatch(p) {
			return true
		}
	}
	return false
}

// partial reports whether a room is one the user joined whose full state
// is still being fetched (a partial-state join): lists and subscriptions
// whose config needs its full state do not show it until it comes, as
// the MSC has it; the others (lazy members, $ME) show it at once.
func (s *Service) partial(m *store.Membership) bool {
	return m.Membership == "join" && s.rooms.IsPartialState(m.RoomID)
}

// needsFullState reports whether a config asks for state a partial-state
// room may lack: any type, every member, or a member of another server.
// Lazy members, $ME and local users are known at once.
func (c RoomConfig) needsFullState(userID string) bool {
	_, server, _ := strings.Cut(userID, ":")
	for _, st := range c.States {
		for _, p := range st.Include {
			switch {
			case p.Type == wildcard:
				return true
			case p.Type != "m.room.member" || p.StateKey == "$ME" || p.StateKey == "$LAZY":
			case p.StateKey == wildcard:
				return true
			default:
				if _, s, _ := strings.Cut(p.StateKey, ":"); s != server {
					return true
				}
			}
		}
	}
	return false
}

func errcodeNotFound(err error) bool { return err != nil && errors.Is(err, store.ErrNotFound) }

// PosToken returns the stream positions a pos of the device's
// connections stands for (the lower bound of pagings that complete its
// answer, such as MSC4308's); false when it names no live connection.
func (s *Service) PosToken(userID, deviceID, pos string) (streamtoken.Token, bool) {
	return s.conns.tokenOf(userID, deviceID, pos)
}
