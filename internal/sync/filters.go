package sync

import (
	"context"
	"encoding/json"
	"errors"

	"luxchat/internal/filter"
	"luxchat/internal/matrix/errcode"
	"luxchat/internal/store"
)

// PutFilter stores a user's filter, in its normal form, and returns its
// id (per user, increasing). Stored filters never change.
func (s *Service) PutFilter(ctx context.Context, userID string, f *filter.Filter) (int64, error) {
	norm, _ := json.Marshal(f)
	var id int64
	err := s.store.InTx(ctx, func(tx *store.Tx) error {
		var err error
		id, err = tx.PutFilter(ctx, userID, string(norm))
		return err
	})
	return id, err
}

// Filter returns a user's stored filter as JSON; M_NOT_FOUND when there
// is none with that id.
func (s *Service) Filter(ctx context.Context, userID string, id int64) (json.RawMessage, error) {
	f, err := s.store.GetFilter(ctx, userID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errcode.NotFound("unknown filter")
	}
	if err != nil {
		return nil, err
	}
	return json.RawMessage(f), nil
}
