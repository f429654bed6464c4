package search

import (
	"context"
	"encoding/json"
	"maps"
	"math"

	"luxchat/internal/store"
)

// bundles returns the bundled aggregations (unsigned m.relations) of the
// results, by event id, as /messages shows them: in a room the user left,
// only children sent up to their leave count. One call per distinct
// limit: every joined room shares one.
func (s *Service) bundles(ctx context.Context, userID string, rows []*store.EventRow, ranges []store.SearchRange) (map[string]json.RawMessage, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	left := map[string]int64{}
	for _, r := range ranges {
		if r.MaxPos > 0 {
			left[r.RoomID] = r.MaxPos
		}
	}
	byLimit := map[int64][]*store.EventRow{}
	for _, row := range rows {
		upTo, ok := left[row.RoomID]
		if !ok {
			upTo = math.MaxInt64
		}
		byLimit[upTo] = append(byLimit[upTo], row)
	}
	out := map[string]json.RawMessage{}
	for upTo, group := range byLimit {
		b, err := s.read.Bundles(ctx, userID, upTo, group)
		if err != nil {
			return nil, err
		}
		maps.Copy(out, b)
	}
	return out, nil
}
