package notifications

import (
	"context"
	"encoding/json"
	"time"

	"luxchat/internal/matrix/eventauth"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/push"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Index evaluates an event for the room's joined local members (and the
// target of an invite), except its sender, and stores the notifications
// (and queues the pushes) in the event's transaction: a sync never sees
// an event without its counts. It is a rooms.Indexer.
func (s *Service) Index(ctx context.Context, tx *store.Tx, ev *pdu.Event, pos int64) error {
	if !s.cfg.Push.Enabled {
		return nil
	}
	var (
		sets        map[*push.Compiled]map[string]struct{}
		setsErr     error
		memberCount int
		create, pl  *pdu.Event
		local       []string // the sender, when a local member
		invited     string   // the target of an invite, who is not a member yet
	)
	s.rooms.InspectLocked(ev.RoomID, func(joined map[string]struct{}, state map[pdu.StateTuple]*pdu.Event) {
		memberCount = len(joined)
		sets, setsErr = s.memberSets(ctx, tx, ev.RoomID, joined)
		if _, ok := joined[ev.Sender]; ok && s.isLocal(ev.Sender) {
			local = append(local, ev.Sender)
		}
		create = state[pdu.StateTuple{Type: "m.room.create"}]
		pl = state[pdu.StateTuple{Type: "m.room.power_levels"}]
		if ev.Type == "m.room.member" && ev.StateKey != nil {
			target := *ev.StateKey
			if _, isMember := joined[target]; !isMember && target != ev.Sender && s.isLocal(target) && membership(ev.Content) == "invite" {
				invited = target
			}
		}
	})
	if setsErr != nil {
		return setsErr
	}
	if ev.Type == "m.room.member" && ev.StateKey != nil && s.isLocal(*ev.StateKey) {
		// Notifications count from the start of a membership: cached
		// counts of the member are counted again.
		target := *ev.StateKey
		tx.OnCommitted(func() { s.counts.dropMember(target, ev.RoomID) })
	}
	if ev.Type == "m.room.redaction" && ev.Redacts != "" {
		// A redacted event notifies no more (counts, /notifications).
		if target, err := tx.GetEvent(ctx, ev.Redacts); err == nil && target.RoomID == ev.RoomID {
			if err := tx.ForgetPushes(ctx, ev.RoomID, target.Pos, append(local, usersOf(sets, ev.Sender)...)); err != nil {
				return err
			}
			tx.OnCommitted(func() { s.counts.dropRoom(ev.RoomID) })
		}
	}
	thread := ""
	if len(local) > 0 && !ev.IsState() {
		// Sending marks the sender's thread read up to the event.
		thread = s.threadOf(ctx, ev.Content)
		if err := tx.MarkSent(ctx, ev.Sender, ev.RoomID, thread, pos); err != nil {
			return err
		}
		sent := note{pos: pos, thread: thread, sentBy: ev.Sender}
		tx.OnCommitted(func() { s.counts.record(ev.RoomID, sent) })
	}
	pev, err := push.NewEventFields(push.Fields{EventID: ev.ID, RoomID: ev.RoomID, Sender: ev.Sender, Type: ev.Type, StateKey: ev.StateKey, OriginServerTS: ev.OriginServerTS}, ev.Content)
	if err != nil {
		return nil // not an object: nothing can match
	}
	room := &push.Room{MemberCount: memberCount}
	lv := s.powerLevels(create, pl)
	room.SenderLevel = lv.sender(ev.Sender)
	room.NotificationLevel = lv.notification
	now := time.Now().UnixMilli()
	var queued []store.QueuedPush
	// Most users share one rule set: what does not depend on the
	// recipient is checked once per rule set, and a set whose verdict is
	// the same for all its members and notifies none (a join, for the
	// defaults) costs nothing per member.
	prepared := map[*push.Compiled]*push.Prepared{}
	prepare := func(c *push.Compiled) *push.Prepared {
		p := prepared[c]
		if p == nil {
			p = c.Prepare(pev, room)
			prepared[c] = p
		}
		return p
	}
	// Thread subscriptions (MSC4306), read once for the event's thread
	// when a rule set asks for them.
	var subscribed map[string]bool
	if root := pev.ThreadRoot(); root != "" && usesThreadSubs(sets) {
		if subscribed, err = tx.ThreadSubscribers(ctx, ev.RoomID, root); err != nil {
			return err
		}
	}
	outcome := func(c *push.Compiled, u string) *push.Actions {
		who := push.Recipient{UserID: u, ThreadSubscribed: subscribed[u]}
		if c.UsesDisplayName() {
			s.rooms.InspectLocked(ev.RoomID, func(_ map[string]struct{}, state map[pdu.StateTuple]*pdu.Event) {
				who.DisplayName = displayName(state[pdu.StateTuple{Type: "m.room.member", StateKey: u}])
			})
		}
		a, _ := prepare(c).Evaluate(who)
		if a == nil || !a.Notify {
			return nil
		}
		return a
	}
	// each calls f for every member but the sender, with their outcome
	// (nil: not notified).
	each := func(f func(u string, a *push.Actions)) {
		for c, members := range sets {
			skip := false
			if _, self := members[ev.Sender]; len(members) == 0 || len(members) == 1 && self {
				skip = true
			} else if a, same := prepare(c).Uniform(); same && (a == nil || !a.Notify) {
				skip = true
			}
			for u := range members {
				if u == ev.Sender {
					continue
				}
				if skip {
					f(u, nil)
				} else {
					f(u, outcome(c, u))
				}
			}
		}
	}
	// The first pass only counts (and queues pushes): in a room of
	// thousands most members get the same actions, and the room-wide
	// notification then needs only the exceptions, which the second pass
	// lists. Keeping a recipient per member between the passes was most
	// of what a message into a room of 10,000 cost.
	reached := 0
	byActions := map[*push.Actions]int{}
	each(func(u string, a *push.Actions) {
		if a == nil {
			return
		}
		reached++
		byActions[a]++
		for _, k := range s.pushersOf(u) {
			queued = append(queued, store.QueuedPush{UserID: u, AppID: k.AppID, Pushkey: k.Pushkey, RoomID: ev.RoomID, EventID: ev.ID, Pos: pos, Actions: a.JSON, NextTry: now})
		}
	})
	var invitedActions *push.Actions
	if invited != "" {
		c, err := s.compiledFor(ctx, tx, []string{invited})
		if err != nil {
			return err
		}
		if invitedActions = outcome(c[invited], invited); invitedActions != nil {
			reached++
			for _, k := range s.pushersOf(invited) {
				queued = append(queued, store.QueuedPush{UserID: invited, AppID: k.AppID, Pushkey: k.Pushkey, RoomID: ev.RoomID, EventID: ev.ID, Pos: pos, Actions: invitedActions.JSON, NextTry: now})
			}
		}
	}
	if reached == 0 {
		return nil
	}
	if thread == "" {
		thread = s.threadOf(ctx, ev.Content)
	}
	// One row however many recipients: the per-user rows are written
	// later, many events at a time (see compact).
	staged := store.StagedPush{Pos: pos, RoomID: ev.RoomID, EventID: ev.ID, ThreadID: thread, TS: now}
	common, wide := "", false
	if !ev.IsState() && invited == "" {
		common, wide = roomWide(byActions)
	}
	if wide {
		staged.Everyone = json.RawMessage(common)
		each(func(u string, a *push.Actions) {
			switch {
			case a == nil:
				staged.Recipients = append(staged.Recipients, store.StagedRecipient{UserID: u, Actions: json.RawMessage(`[]`), Skip: true})
			case a.Highlight || string(a.JSON) != common:
				staged.Recipients = append(staged.Recipients, store.StagedRecipient{UserID: u, Highlight: a.Highlight, Actions: a.JSON})
			}
		})
	} else {
		staged.Recipients = make([]store.StagedRecipient, 0, reached)
		each(func(u string, a *push.Actions) {
			if a != nil {
				staged.Recipients = append(staged.Recipients, store.StagedRecipient{UserID: u, Highlight: a.Highlight, Actions: a.JSON})
			}
		})
		if invitedActions != nil {
			staged.Recipients = append(staged.Recipients, store.StagedRecipient{UserID: invited, Highlight: invitedActions.Highlight, Actions: invitedActions.JSON})
		}
	}
	if err := tx.StagePush(ctx, staged); err != nil {
		return err
	}
	notified := note{pos: pos, thread: thread, recipients: staged.Recipients, everyone: staged.Everyone != nil, sender: ev.Sender}
	tx.OnCommitted(func() { s.counts.record(ev.RoomID, notified) })
	if len(queued) > 0 {
		return tx.EnqueuePushes(ctx, queued)
	}
	return nil
}

// usesThreadSubs reports whether a rule set has a thread subscription
// condition.
func usesThreadSubs(sets map[*push.Compiled]map[string]struct{}) bool {
	for c := range sets {
		if c.UsesThreadSubscriptions() {
			return true
		}
	}
	return false
}

// usersOf lists the members of sets but sender.
func usersOf(sets map[*push.Compiled]map[string]struct{}, sender string) []string {
	var out []string
	for _, members := range sets {
		for u := range members {
			if u != sender {
				out = append(out, u)
			}
		}
	}
	return out
}

// Committed wakes the workers after events committed. It is a
// rooms.Listener.
func (s *Service) Committed(c rooms.Committed) {
	if !s.cfg.Push.Enabled {
		return
	}
	s.membersChanged(c)
	select {
	case s.staged <- struct{}{}:
	default:
	}
	if s.hasPushers() {
		s.poke()
	}
}

// compactDelay lets a burst of events gather before they are moved
// together; compactBatch bounds one move.
const (
	compactDelay = time.Second
	compactBatch = 2000
)

// compactLoop moves staged pushes into push_actions until ctx ends.
// Run has compacted what was staged before it starts.
func (s *Service) compactLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute) // also catches a failed move
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.staged:
			select {
			case <-ctx.Done():
				return
			case <-time.After(compactDelay):
			}
		case <-t.C:
		}
		s.compactAll(ctx)
	}
}

// Compact moves every staged notification into its per-user rows now,
// a batch at a time, as the background loop does compactDelay after a
// burst; tests call it instead of waiting for the loop. It is safe beside
// the loop: a row moves once, by whichever gets it first.
func (s *Service) Compact(ctx context.Context) error {
	for {
		n, err := s.compact(ctx)
		if err != nil || n < compactBatch {
			return err
		}
	}
}

// compactAll is Compact for the loop, which logs a failure and tries
// again later.
func (s *Service) compactAll(ctx context.Context) {
	if err := s.Compact(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("push: compacting staged notifications", "err", err)
	}
}

func (s *Service) compact(ctx context.Context) (int, error) {
	ps, err := s.store.StagedPushes(ctx, compactBatch)
	if err != nil || len(ps) == 0 {
		return 0, err
	}
	if err := s.store.CompactStaged(ctx, ps); err != nil {
		return 0, err
	}
	return len(ps), s.store.VacuumStaged(ctx)
}

// roomWideMin is how many members must share an outcome for an event's
// notification to be stored once for the room rather than once per
// member: a message in a big room then costs a row, not thousands.
const roomWideMin = 8

// roomWide decides whether a message's notification is stored once for
// the room (see push_room_actions): when at least roomWideMin of its
// local members but the sender are notified, and at least roomWideMin
// with the same actions and no highlight. It returns those actions:
// everyone gets them, and the staged push lists the exceptions, the
// users notified otherwise and (Skip) those not notified. The sender
// needs no row: their own event marks its thread read (push_read), which
// counts honour, and /notifications leaves out a user's own events. State
// events stay per member, as the room-wide count relies on that mark,
// which only messages set. byActions counts the members notified with
// each outcome.
func roomWide(byActions map[*push.Actions]int) (string, bool) {
	total := 0
	byJSON := make(map[string]int, len(byActions))
	common, best := "", 0
	for a, n := range byActions {
		total += n
		if a.Highlight {
			continue
		}
		k := string(a.JSON)
		byJSON[k] += n
		if byJSON[k] > best {
			common, best = k, byJSON[k]
		}
	}
	if total < roomWideMin || best < roomWideMin {
		return "", false
	}
	return common, true
}

func membership(content json.RawMessage) string {
	var c struct {
		Membership string `json:"membership"`
	}
	_ = json.Unmarshal(content, &c)
	return c.Membership
}

func displayName(member *pdu.Event) string {
	if member == nil {
		return ""
	}
	var c struct {
		DisplayName string `json:"displayname"`
	}
	_ = json.Unmarshal(member.Content, &c)
	return c.DisplayName
}

// maxThreadHops bounds the walk from a related event to its thread, as
// the spec recommends.
const maxThreadHops = 3

// threadOf returns the thread an event belongs to: the root of the first
// m.thread relation found following relations, "main" when there is none.
func (s *Service) threadOf(ctx context.Context, content json.RawMessage) string {
	for range maxThreadHops {
		var c struct {
			RelatesTo struct {
				RelType string `json:"rel_type"`
				EventID string `json:"event_id"`
			} `json:"m.relates_to"`
		}
		if json.Unmarshal(content, &c) != nil || c.RelatesTo.EventID == "" {
			return "main"
		}
		if c.RelatesTo.RelType == "m.thread" {
			return c.RelatesTo.EventID
		}
		parent, err := s.rooms.Event(ctx, c.RelatesTo.EventID)
		if err != nil {
			return "main"
		}
		content = parent.Content
	}
	return "main"
}

// levels are the power levels an evaluation needs, parsed once per power
// levels event.
type levels struct {
	pl *eventauth.PowerLevels
}

func (l *levels) sender(userID string) int64 {
	if l.pl == nil {
		return 0
	}
	return int64(l.pl.UserLevel(userID))
}

func (l *levels) notification(key string) int64 {
	if l.pl == nil {
		return 50
	}
	return int64(l.pl.Notification(key))
}

const maxCachedLevels = 10000

func (s *Service) powerLevels(create, pl *pdu.Event) *levels {
	key := ""
	if pl != nil {
		key = pl.ID
	} else if create != nil {
		key = create.ID
	}
	if v, ok := s.levels.Load(key); ok {
		return v.(*levels)
	}
	lv := &levels{}
	if create != nil || pl != nil {
		lv.pl = eventauth.RoomPowerLevels(create, pl)
	}
	if key != "" {
		if n := s.levelCount.Add(1); n > maxCachedLevels {
			s.levels.Clear()
			s.levelCount.Store(0)
		}
		s.levels.Store(key, lv)
	}
	return lv
}
