package gdpr

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"luxchat/internal/matrix/errcode"
	"luxchat/internal/matrix/id"
	"luxchat/internal/media"
	"luxchat/internal/notifications"
	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Service answers data-protection requests. It is safe for concurrent
// use; it keeps no state of its own.
type Service struct {
	serverName string
	store      *store.Store
	rooms      *rooms.Service
	media      *media.Service
	push       *notifications.Service // nil: push rules are not exported
	log        *slog.Logger
	now        func() time.Time
}

// New returns the service.
func New(serverName string, st *store.Store, rs *rooms.Service, ms *media.Service, push *notifications.Service, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{serverName: serverName, store: st, rooms: rs, media: ms, push: push, log: log, now: time.Now}
}

// CheckUser checks that userID names an account of this server:
// M_INVALID_PARAM for a malformed or another server's id, M_NOT_FOUND
// when there is no such account.
func (s *Service) CheckUser(ctx context.Context, userID string) (*store.User, error) {
	u, err := id.ParseUserID(userID)
	if err != nil {
		return nil, errcode.InvalidParam("invalid user id: %v", err)
	}
	if string(u.Server()) != s.serverName {
		return nil, errcode.InvalidParam("only local users can be exported or erased")
	}
	user, err := s.store.GetUser(ctx, userID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errcode.NotFound("user not found")
	}
	if err != nil {
		return nil, fmt.Errorf("get user: %w", err)
	}
	return user, nil
}

// Erase deletes what the server holds of a deactivated local user
// (GDPR article 17) and has their events served redacted from now on to
// those who did not see them: their uploads (blobs and thumbnails), then,
// in one transaction, their rows in every table that names them (but
// store.KeptUserColumns) and their events' search rows, marking them
// erased at the current events position. It is what accounts.EraseUser
// runs after clearing the profile; running it again is harmless.
func (s *Service) Erase(ctx context.Context, userID string) error {
	user, err := s.CheckUser(ctx, userID)
	if err != nil {
		return err
	}
	if !user.Deactivated {
		return errcode.InvalidParam("only a deactivated account can be erased")
	}
	media, err := s.media.DeleteUploads(ctx, userID)
	if err != nil {
		return fmt.Errorf("erase media: %w", err)
	}
	upTo := s.store.Streams.Events.Current()
	rows, err := s.store.EraseUserRows(ctx, userID, upTo, s.now().UnixMilli())
	if err != nil {
		return err
	}
	s.rooms.SenderErased(userID, upTo)
	if s.push != nil {
		if err := s.push.UserErased(ctx, userID); err != nil {
			return fmt.Errorf("erase push state: %w", err)
		}
	}
	var total int64
	for _, n := range rows {
		total += n
	}
	s.log.Info("user erased", "user_id", userID, "media", media, "rows", total, "events_up_to", upTo)
	return nil
}
