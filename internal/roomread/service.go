package roomread

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"

	"luxchat/internal/rooms"
	"luxchat/internal/store"
)

// Service answers the read questions of clients about rooms. Its own
// state is the users' ignore lists; the caches of events, of their client
// form and of bundled aggregations are the pipeline's, which drops and
// updates them as events are persisted.
type Service struct {
	store *store.Store
	rooms *rooms.Service

	ignored    sync.Map    // user id → map[string]bool, see IgnoredUsers
	bundlesOff atomic.Bool // see SetBundleAggregations
}

// New returns the read side over the store and the room pipeline.
func New(st *store.Store, rs *rooms.Service) *Service {
	return &Service{store: st, rooms: rs}
}

// IgnoredUsers returns the users a user ignores (m.ignored_user_list),
// cached until ForgetIgnoredUsers.
func (s *Service) IgnoredUsers(ctx context.Context, userID string) (map[string]bool, error) {
	if v, ok := s.ignored.Load(userID); ok {
		return v.(map[string]bool), nil
	}
	raw, err := s.store.GetAccountData(ctx, userID, "", "m.ignored_user_list")
	if errors.Is(err, store.ErrNotFound) {
		s.ignored.Store(userID, map[string]bool(nil))
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c struct {
		IgnoredUsers map[string]json.RawMessage `json:"ignored_users"`
	}
	_ = json.Unmarshal(raw, &c)
	out := make(map[string]bool, len(c.IgnoredUsers))
	for u := range c.IgnoredUsers {
		out[u] = true
	}
	s.ignored.Store(userID, out)
	return out, nil
}

// ForgetIgnoredUsers drops the cached ignore list after it changed.
func (s *Service) ForgetIgnoredUsers(userID string) { s.ignored.Delete(userID) }
