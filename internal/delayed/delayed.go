// Package delayed serves delayed events (MSC4140): events a user
// schedules to be sent into a room later, and may restart, send at once
// or cancel until then. A due event enters the room through the rooms
// pipeline like any client send, as its user, with the auth checks of
// the moment it is sent.
//
// The rows live in the store (store/delayed.go); this package keeps no
// per-event memory: one timer waits for the soonest due row, and at each
// wake the due rows are read from the database. So a restart (or a
// crash) loses nothing: at start the timer fires at once and overdue
// events are sent in the order they were due.
//
// It must not import httpapi.
package delayed

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/pdu"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Limits bound what users may schedule.
type Limits struct {
	// MaxDelay is the longest delay accepted.
	MaxDelay time.Duration
	// MaxPerUser is how many scheduled events a user may have at once
	// (0: scheduling is disallowed).
	MaxPerUser int
	// SendRate takes a token of the user's request rate limit when one
	// of their events falls due, and returns how long to wait when there
	// is none (nil: no limit). The wiring passes the client API's
	// limiter, so events sent late count as requests: scheduling many
	// for one moment does not get round the limit (MSC4140,
	// "rate-limiting at the point of sending").
	SendRate func(userID string) time.Duration
	// RateExempt reports whether an application service is exempt from
	// rate limits (rate_limited: false in its registration): the events
	// its as_token scheduled are sent when due without drawing on
	// SendRate, as its requests are served (nil: none is).
	RateExempt func(appServiceID string) bool
}

// Actions on a scheduled delayed event.
const (
	ActionCancel  = "cancel"
	ActionRestart = "restart"
	ActionSend    = "send"
)

// Retention of finalised delayed events, as the MSC recommends: 7 days
// or the user's 1,000 most recent, whichever is fewer.
const (
	keepFinalised        = 7 * 24 * time.Hour
	KeepFinalisedPerUser = 1000
	pruneEvery           = time.Hour
)

// fireBatch is how many due events one wake reads at a time (ids only),
// and fireWorkers how many rooms are sent into at once: a room's events
// go in order through one worker, different rooms in parallel. On
// PostgreSQL the commits of concurrent sends share a transaction (up to
// 32, store.InTxGrouped): as many workers fill the groups, so a burst
// pays one commit per group, not one per event. A batch above the
// bursts expected (1,000 due at once) spares a second round, which
// would wait for the slowest room of the first.
const (
	fireBatch   = 2048
	fireWorkers = 32
)

// Event is a scheduled or finalised delayed event.
type Event = store.DelayedEvent

// Outcomes of a finalised event (Event.Outcome).
const (
	OutcomeSent      = store.DelayedSent
	OutcomeCancelled = store.DelayedCancelled
	OutcomeFailed    = store.DelayedFailed
)

// Service schedules and sends delayed events. It is safe for concurrent
// use: actions on one delayed event and its sending are serialised by
// one of a few locks chosen by the delay id, and the scheduler runs on
// one goroutine (Run).
type Service struct {
	store  *store.Store
	rooms  *rooms.Service
	log    *slog.Logger
	limits Limits

	locks [64]sync.Mutex
	seed  maphash.Seed

	// wake tells Run to look again for the next due time: an event was
	// scheduled or restarted earlier than the timer's.
	wake chan struct{}
	mu   sync.Mutex
	next int64 // ms of the timer's wake; 0: no timer
}

// New returns the service; Run makes it send due events.
func New(st *store.Store, rs *rooms.Service, limits Limits, log *slog.Logger) *Service {
	return &Service{store: st, rooms: rs, log: log, limits: limits, seed: maphash.MakeSeed(), wake: make(chan struct{}, 1)}
}

// Limits returns the configured limits (the capability advertises them).
func (s *Service) Limits() Limits { return s.limits }

func (s *Service) lock(delayID string) *sync.Mutex {
	return &s.locks[maphash.String(s.seed, delayID)%uint64(len(s.locks))]
}

// Request is an event to schedule.
type Request struct {
	UserID, DeviceID string
	// TxnKey identifies the client transaction (nil: none): a repeat
	// returns the first delay id.
	TxnKey   *string
	RoomID   string
	Type     string
	StateKey *string
	Content  json.RawMessage
	DelayMS  int64
	// AppService is the id of the application service whose as_token
	// made the request ("": the user's own token).
	AppService string
}

// ParseDelay reads a delay in milliseconds as a query parameter gives it:
// a positive integer. Anything else is M_INVALID_PARAM; a delay above the
// maximum is M_MAX_DELAY_EXCEEDED.
func (s *Service) ParseDelay(v string) (int64, error) {
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return 0, errcode.InvalidParam("the delay must be a positive number of milliseconds, not %q", v)
	}
	return ms, s.CheckDelay(ms)
}

// CheckDelay refuses a delay above the configured maximum with
// M_MAX_DELAY_EXCEEDED (and the maximum in max_delay).
func (s *Service) CheckDelay(ms int64) error {
	if ms <= 0 {
		return errcode.InvalidParam("the delay must be a positive number of milliseconds")
	}
	if max := s.limits.MaxDelay.Milliseconds(); ms > max {
		return (&errcode.Error{Code: "M_MAX_DELAY_EXCEEDED", Status: 400,
			Message: fmt.Sprintf("the delay may be at most %d ms", max)}).With("max_delay", max)
	}
	return nil
}

// LookupTxn returns the delay id scheduled earlier under a client
// transaction, or "" when there is none.
func (s *Service) LookupTxn(ctx context.Context, userID, deviceID, txnKey string) (string, error) {
	e, err := s.store.DelayedEventByTxn(ctx, userID, deviceID, txnKey)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read delayed event transaction: %w", err)
	}
	return e.DelayID, nil
}

// Schedule stores a delayed event and returns its delay id. The event is
// not checked against the room now: the auth rules apply when it is sent.
func (s *Service) Schedule(ctx context.Context, req Request) (string, error) {
	if err := s.CheckDelay(req.DelayMS); err != nil {
		return "", err
	}
	if s.limits.MaxPerUser <= 0 {
		return "", errcode.Forbidden("delayed events are disabled on this server")
	}
	now := time.Now().UnixMilli()
	e := &store.DelayedEvent{DelayID: newDelayID(), UserID: req.UserID, DeviceID: req.DeviceID, TxnKey: req.TxnKey,
		RoomID: req.RoomID, Type: req.Type, StateKey: req.StateKey, Content: req.Content, DelayMS: req.DelayMS,
		ScheduledAt: now, DueMS: now + req.DelayMS, AppService: req.AppService}
	prev, soonest, err := s.store.ScheduleDelayedEvent(ctx, e, s.limits.MaxPerUser)
	if errors.Is(err, store.ErrDelayedLimit) {
		wait := max(soonest-now, 0)
		return "", (&errcode.Error{Code: "M_LIMIT_EXCEEDED", Status: 429,
			Message: fmt.Sprintf("the maximum number of scheduled delayed events (%d) has been reached", s.limits.MaxPerUser)}).
			With("retry_after_ms", wait)
	}
	if err != nil && req.TxnKey != nil {
		// The same transaction, scheduled meanwhile by a concurrent retry.
		if id, lerr := s.LookupTxn(ctx, req.UserID, req.DeviceID, *req.TxnKey); lerr == nil && id != "" {
			return id, nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("schedule delayed event: %w", err)
	}
	if prev != nil {
		return prev.DelayID, nil
	}
	s.dueAt(e.DueMS)
	return e.DelayID, nil
}

// newDelayID returns an unguessable id: the management endpoints accept
// it alone, without an access token.
func newDelayID() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// dueAt tells Run that an event is due at ms, when that is before the
// timer's wake.
func (s *Service) dueAt(ms int64) {
	s.mu.Lock()
	earlier := s.next == 0 || ms < s.next
	if earlier {
		s.next = ms
	}
	s.mu.Unlock()
	if earlier {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// pageSize is how many scheduled events one page of the list holds.
const pageSize = 100

// Finalised returns a page of a user's finalised delayed events, the
// most recently finalised first, after the page token from ("" for the
// first page), and the token of the next page ("" at the end).
func (s *Service) Finalised(ctx context.Context, userID, from string) ([]store.DelayedEvent, string, error) {
	var beforeTS, beforeSeq int64 = 1 << 62, 0
	if from != "" {
		d, q, ok := strings.Cut(strings.TrimPrefix(from, "f"), "_")
		var err1, err2 error
		beforeTS, err1 = strconv.ParseInt(d, 10, 64)
		beforeSeq, err2 = strconv.ParseInt(q, 10, 64)
		if !ok || !strings.HasPrefix(from, "f") || err1 != nil || err2 != nil {
			return nil, "", errcode.InvalidParam("invalid from token")
		}
	}
	rows, err := s.store.FinalisedDelayedEvents(ctx, userID, beforeTS, beforeSeq, pageSize+1)
	if err != nil {
		return nil, "", fmt.Errorf("list finalised delayed events: %w", err)
	}
	next := ""
	if len(rows) > pageSize {
		rows = rows[:pageSize]
		last := rows[len(rows)-1]
		next = "f" + strconv.FormatInt(last.FinalisedTS, 10) + "_" + strconv.FormatInt(last.Seq, 10)
	}
	return rows, next, nil
}

// Prune forgets finalised delayed events beyond the retention (Run does
// it every hour) and returns how many.
func (s *Service) Prune(ctx context.Context) (int64, error) {
	return s.store.PruneDelayedEvents(ctx, time.Now().Add(-keepFinalised).UnixMilli(), KeepFinalisedPerUser)
}

// Get returns one of the user's delayed events, scheduled or finalised.
func (s *Service) Get(ctx context.Context, userID, delayID string) (*store.DelayedEvent, error) {
	e, err := s.store.DelayedEventByID(ctx, delayID)
	if errors.Is(err, store.ErrNotFound) || err == nil && e.UserID != userID {
		return nil, errcode.NotFound("no such delayed event")
	}
	if err != nil {
		return nil, fmt.Errorf("read delayed event: %w", err)
	}
	return e, nil
}

// Act applies an action to a delayed event. userID is the caller's, or ""
// for a caller that only knows the delay id (the MSC's management
// endpoints take it as their credential). Repeating an action that
// already took effect succeeds; one that conflicts with the event's
// outcome is refused with 409.
func (s *Service) Act(ctx context.Context, userID, delayID, action string) error {
	l := s.lock(delayID)
	l.Lock()
	defer l.Unlock()
	e, err := s.store.DelayedEventByID(ctx, delayID)
	if errors.Is(err, store.ErrNotFound) || err == nil && userID != "" && e.UserID != userID {
		return errcode.NotFound("no such delayed event")
	}
	if err != nil {
		return fmt.Errorf("read delayed event: %w", err)
	}
	if e.FinalisedTS != 0 {
		sent := e.Outcome == store.DelayedSent
		if action == ActionSend && sent || action == ActionCancel && !sent {
			return nil
		}
		return &errcode.Error{Code: "M_UNKNOWN", Status: 409, Message: "the delayed event was already " + pastTense(e.Outcome)}
	}
	now := time.Now().UnixMilli()
	switch action {
	case ActionCancel:
		_, err = s.store.FinaliseDelayedEvent(ctx, delayID, store.DelayedCancelled, "", nil, now)
	case ActionRestart:
		var due int64
		if due, err = s.store.RestartDelayedEvent(ctx, delayID, now); err == nil {
			s.dueAt(due)
		}
	case ActionSend:
		// An error is the caller's, as for a plain send; the event stays
		// scheduled: the cause may pass before its time.
		if _, err = s.send(ctx, e); err != nil {
			return err
		}
	default:
		return errcode.InvalidParam("unknown action %q", action)
	}
	if err != nil {
		return fmt.Errorf("%s delayed event: %w", action, err)
	}
	return nil
}

func pastTense(outcome string) string {
	switch outcome {
	case store.DelayedSent:
		return "sent"
	case store.DelayedFailed:
		return "refused when sent"
	}
	return "cancelled"
}

// sending is what IndexEvent needs to recognise, in the transaction of
// an event, the delayed event it is (see send).
type sending struct {
	e *store.DelayedEvent
	// recorded is set once the event's transaction recorded the delayed
	// event as sent (possibly twice: a grouped transaction may re-run).
	recorded atomic.Bool
}

type sendingKey struct{}

// send sends a delayed event as its user through the rooms pipeline, and
// records it as sent in the same transaction (IndexEvent): a crash leaves
// it either sent and finalised or neither, so it is never sent twice.
func (s *Service) send(ctx context.Context, e *store.DelayedEvent) (string, error) {
	p := rooms.Proto{Type: e.Type, StateKey: e.StateKey, Sender: e.UserID, Content: e.Content}
	if e.Type == "m.room.redaction" && e.StateKey == nil {
		var c struct {
			Redacts string `json:"redacts"`
		}
		_ = json.Unmarshal(e.Content, &c)
		p.Redacts = c.Redacts // rooms before version 11 carry it outside the content
	}
	sn := &sending{e: e}
	ctx = context.WithValue(ctx, sendingKey{}, sn)
	id, err := s.rooms.SendDelayed(ctx, e.RoomID, p, e.DelayID)
	if err == nil && !sn.recorded.Load() {
		// No new event (the state already held this content).
		_, err = s.store.FinaliseDelayedEvent(ctx, e.DelayID, store.DelayedSent, id, nil, time.Now().UnixMilli())
	}
	return id, err
}

// Run sends delayed events when they are due until ctx ends. At start it
// sends those that fell due while the server was down.
func (s *Service) Run(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	lastPrune := time.Time{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.wake:
		}
		retry := false
		for ctx.Err() == nil {
			n, err := s.fireDue(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Warn("delayed events: send due events", "err", err)
				}
				retry = true
				break
			}
			if n < fireBatch {
				break
			}
		}
		if time.Since(lastPrune) >= pruneEvery {
			lastPrune = time.Now()
			if _, err := s.Prune(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("delayed events: prune finalised", "err", err)
			}
		}
		// From here until the timer is set, any event scheduled wakes
		// the loop again: one committed after the look-up below would
		// otherwise wait for nothing.
		s.mu.Lock()
		s.next = 0
		s.mu.Unlock()
		next, ok, err := s.store.NextDelayedDue(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Warn("delayed events: next due time", "err", err)
			ok, retry = false, true
		}
		if !ok && retry {
			next, ok = time.Now().UnixMilli(), true
		}
		if retry {
			// A failing row or database: try again later, not in a loop.
			next = max(next, time.Now().Add(5*time.Second).UnixMilli())
		}
		s.mu.Lock()
		if ok && (s.next == 0 || next < s.next) {
			s.next = next
		}
		s.mu.Unlock()
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		if ok {
			timer.Reset(max(time.Until(time.UnixMilli(next)), 0)) // overdue: at once
		}
	}
}

// fireDue sends the events due now, up to fireBatch, and returns how
// many rows it read. An event the room refuses is finalised with the
// refusal (logged); a failure of the server itself leaves the event
// scheduled, and the error ends the round.
func (s *Service) fireDue(ctx context.Context) (int, error) {
	due, err := s.store.DueDelayedIDs(ctx, time.Now().UnixMilli(), fireBatch)
	if err != nil || len(due) == 0 {
		return 0, err
	}
	// A room's events go to one worker, in the order they were due.
	queues := make([][]store.DueDelayed, fireWorkers)
	for _, d := range due {
		w := maphash.String(s.seed, d.RoomID) % fireWorkers
		queues[w] = append(queues[w], d)
	}
	var wg sync.WaitGroup
	errs := make([]error, fireWorkers)
	for w, q := range queues {
		if len(q) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, e := range q {
				// One failing event must not hold back those after it.
				if err := s.fire(ctx, e.DelayID); err != nil {
					errs[w] = errors.Join(errs[w], err)
				}
			}
		}()
	}
	wg.Wait()
	return len(due), errors.Join(errs...)
}

// fire sends one due event unless, since it was read, it was cancelled,
// sent or restarted.
func (s *Service) fire(ctx context.Context, delayID string) error {
	l := s.lock(delayID)
	l.Lock()
	defer l.Unlock()
	e, err := s.store.DelayedEventByID(ctx, delayID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	if e.FinalisedTS != 0 || e.DueMS > now {
		return nil
	}
	if s.limits.SendRate != nil && !s.rateExempt(e) {
		if wait := s.limits.SendRate(e.UserID); wait > 0 {
			// Not retried (as the MSC asks): the error is there for the
			// user's client to find, and to send again if it still wants.
			merr := errcode.LimitExceeded(wait.Milliseconds() + 1)
			s.log.Info("delayed event dropped: the user's rate limit was reached when it fell due", "user", e.UserID, "room", e.RoomID,
				"type", e.Type, "delay_id", e.DelayID, "errcode", merr.Code)
			body, _ := json.Marshal(merr)
			_, err = s.store.FinaliseDelayedEvent(ctx, delayID, store.DelayedFailed, "", body, now)
			return err
		}
	}
	if _, err := s.send(ctx, e); err != nil {
		merr, ok := errcode.As(err)
		if !ok || merr.Status >= 500 {
			return fmt.Errorf("send delayed event %s: %w", e.DelayID, err)
		}
		s.log.Info("delayed event dropped: refused when due", "user", e.UserID, "room", e.RoomID, "type", e.Type,
			"delay_id", e.DelayID, "errcode", merr.Code, "reason", merr.Message)
		body, _ := json.Marshal(merr)
		_, err = s.store.FinaliseDelayedEvent(ctx, delayID, store.DelayedFailed, "", body, now)
		return err
	}
	return nil
}

// rateExempt reports whether e was scheduled by an application service
// exempt from rate limits (as its registration says now: a service
// registered again with rate_limited: true is limited from then on).
func (s *Service) rateExempt(e *store.DelayedEvent) bool {
	return e.AppService != "" && s.limits.RateExempt != nil && s.limits.RateExempt(e.AppService)
}

// cancelledByState is the error recorded on a delayed state event that
// another user's state event over the same key cancelled.
var cancelledByState, _ = json.Marshal(&errcode.Error{Code: "M_CANCELLED_BY_STATE_UPDATE", Status: 409,
	Message: "another user changed the state this delayed event would have set"})

// IndexEvent runs in the transaction of each event that enters a room:
// a state event cancels the scheduled delayed state events of other
// users over the same key (MSC4140: the newer state wins; the user's
// own delayed events stay theirs to manage).
//
// It also records a delayed event being sent (see send) in its event's
// transaction.
func (s *Service) IndexEvent(ctx context.Context, tx *store.Tx, ev *pdu.Event) error {
	now := time.Now().UnixMilli()
	if sn, ok := ctx.Value(sendingKey{}).(*sending); ok && sn.e.RoomID == ev.RoomID && sn.e.UserID == ev.Sender && sn.e.Type == ev.Type &&
		(sn.e.StateKey == nil) == (ev.StateKey == nil) && (ev.StateKey == nil || *ev.StateKey == *sn.e.StateKey) {
		if err := tx.DelayedEventSent(ctx, sn.e.DelayID, ev.ID, now); err != nil {
			return err
		}
		sn.recorded.Store(true)
	}
	if ev.StateKey == nil {
		return nil
	}
	return tx.CancelDelayedStateEvents(ctx, ev.RoomID, ev.Type, *ev.StateKey, ev.Sender, cancelledByState, now)
}
