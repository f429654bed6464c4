package reports

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/roomread"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// MaxReasonBytes bounds a report's reason.
const MaxReasonBytes = 4096

// Per reporter: a burst of burst reports, then one every interval.
const (
	burst    = 10
	interval = 30 * time.Second
)

// Service accepts reports. It is safe for concurrent use.
type Service struct {
	store      *store.Store
	rooms      *rooms.Service
	read       *roomread.Service
	serverName string

	mu      sync.Mutex
	buckets map[string]*bucket // reporter → allowance
}

type bucket struct {
	tokens float64
	last   time.Time
}

// New returns the reports service.
func New(st *store.Store, rs *rooms.Service, read *roomread.Service, serverName string) *Service {
	return &Service{store: st, rooms: rs, read: read, serverName: serverName, buckets: map[string]*bucket{}}
}

// take spends one report of the reporter's allowance: reports reach
// humans, so a flood from one account is refused whatever the server's
// general rate limits are.
func (s *Service) take(reporter string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if len(s.buckets) > 10000 {
		for k, b := range s.buckets {
			if now.Sub(b.last) > burst*interval {
				delete(s.buckets, k)
			}
		}
	}
	b := s.buckets[reporter]
	if b == nil {
		b = &bucket{tokens: burst, last: now}
		s.buckets[reporter] = b
	}
	b.tokens = min(burst, b.tokens+now.Sub(b.last).Seconds()/interval.Seconds())
	b.last = now
	if b.tokens < 1 {
		wait := time.Duration((1 - b.tokens) * float64(interval))
		return errcode.LimitExceeded(wait.Milliseconds() + 1)
	}
	b.tokens--
	return nil
}

func checkReason(reason string) error {
	if len(reason) > MaxReasonBytes {
		return errcode.InvalidParam("reason is longer than %d bytes", MaxReasonBytes)
	}
	if strings.ContainsRune(reason, 0) {
		return errcode.InvalidParam("reason must not contain NUL characters")
	}
	return nil
}

// ReportEvent records a report of an event. The reporter must be joined
// to the room and able to see the event; otherwise, as when the event does
// not exist, the answer is the same 404.
func (s *Service) ReportEvent(ctx context.Context, reporter, roomID, eventID, reason string, score *int) error {
	if err := checkReason(reason); err != nil {
		return err
	}
	if score != nil && (*score < -100 || *score > 0) {
		return errcode.InvalidParam("score must be between -100 and 0")
	}
	notFound := errcode.NotFound("the event was not found or you are not joined to the room")
	joined, err := s.rooms.IsJoined(ctx, roomID, reporter)
	if _, ok := errcode.As(err); ok {
		return notFound
	}
	if err != nil {
		return err
	}
	if !joined {
		return notFound
	}
	if _, err := s.read.GetEvent(ctx, roomID, eventID, reporter, ""); err != nil {
		if _, ok := errcode.As(err); ok || errors.Is(err, store.ErrNotFound) {
			return notFound
		}
		return err
	}
	if err := s.take(reporter); err != nil {
		return err
	}
	var sc sql.NullInt64
	if score != nil {
		sc = sql.NullInt64{Int64: int64(*score), Valid: true}
	}
	return s.store.AddReport(ctx, store.Report{Kind: "event", Reporter: reporter, RoomID: roomID, EventID: eventID, Reason: reason, Score: sc})
}

// ReportRoom records a report of a room, whether or not the reporter is in
// it (they may have seen it in the directory or an invite).
func (s *Service) ReportRoom(ctx context.Context, reporter, roomID, reason string) error {
	if err := checkReason(reason); err != nil {
		return err
	}
	if _, err := s.rooms.Version(ctx, roomID); err != nil {
		if _, ok := errcode.As(err); ok {
			return errcode.NotFound("the room was not found")
		}
		return err
	}
	if err := s.take(reporter); err != nil {
		return err
	}
	return s.store.AddReport(ctx, store.Report{Kind: "room", Reporter: reporter, RoomID: roomID, Reason: reason})
}

// ReportUser records a report of a user, whether or not the reporter
// shares a room with them. Local users must exist; other servers' users
// cannot be checked here and are accepted.
func (s *Service) ReportUser(ctx context.Context, reporter, userID, reason string) error {
	if err := checkReason(reason); err != nil {
		return err
	}
	local, server, ok := strings.Cut(userID, ":")
	if !ok || len(local) < 2 || local[0] != '@' || server == "" || len(userID) > 255 {
		return errcode.InvalidParam("invalid user id")
	}
	if server == s.serverName {
		if _, err := s.store.GetUser(ctx, userID); errors.Is(err, store.ErrNotFound) {
			return errcode.NotFound("the user was not found")
		} else if err != nil {
			return err
		}
	}
	if err := s.take(reporter); err != nil {
		return err
	}
	return s.store.AddReport(ctx, store.Report{Kind: "user", Reporter: reporter, UserID: userID, Reason: reason})
}
