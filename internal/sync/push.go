package sync

import (
	"context"

	"luxchat/internal/store"
)

// fillCounts sets the unread notification counts of every joined room of
// a response with one query. With unread_thread_notifications in the
// timeline filter, unread_notifications covers the main timeline only and
// each thread with unread notifications gets its own counts.
func (s *Service) fillCounts(ctx context.Context, req Request, join map[string]*JoinedRoom, upTo int64, early *earlyCounts) error {
	if s.hooks.NotificationCounts == nil || len(join) == 0 {
		early.wait()
		return nil
	}
	var counts []store.ThreadCount
	var err error
	if early != nil {
		// Counted for all joined rooms, which hold those of join.
		early.wait()
		counts, err = early.counts, early.err
	} else {
		ids := make([]string, 0, len(join))
		for id := range join {
			ids = append(ids, id)
		}
		counts, err = s.hooks.NotificationCounts(ctx, req.UserID, ids, upTo)
	}
	if err != nil {
		return err
	}
	tf := timelineFilter(req.Filter)
	byThread := tf != nil && tf.UnreadThreadNotifs
	for _, c := range counts {
		jr := join[c.RoomID]
		if jr == nil {
			continue
		}
		if !byThread || c.ThreadID == "main" {
			jr.UnreadNotifications.NotificationCount += c.Notify
			jr.UnreadNotifications.HighlightCount += c.Highlight
			continue
		}
		if jr.UnreadThreadNotifications == nil {
			jr.UnreadThreadNotifications = map[string]Unread{}
		}
		jr.UnreadThreadNotifications[c.ThreadID] = Unread{NotificationCount: c.Notify, HighlightCount: c.Highlight}
	}
	return nil
}

// addDefaultPushRules adds the m.push_rules event to an initial sync of a
// user who never changed their rules (and so has no stored event): the
// spec has clients learn their rules from it.
func (s *Service) addDefaultPushRules(ctx context.Context, req Request, ads []store.AccountData, resp *Response) error {
	if s.hooks.PushRules == nil || !req.Filter.AccountData.Allows("m.push_rules", "") {
		return nil
	}
	for _, ad := range ads {
		if ad.RoomID == "" && ad.Type == "m.push_rules" {
			return nil
		}
	}
	content, err := s.hooks.PushRules(ctx, req.UserID)
	if err != nil {
		return err
	}
	if resp.AccountData == nil {
		resp.AccountData = &Events{}
	}
	resp.AccountData.Events = append(resp.AccountData.Events, mustJSON(map[string]any{"type": "m.push_rules", "content": content}))
	return nil
}

// earlyCounts are unread counts taken while the rest of a sync is built.
type earlyCounts struct {
	done   chan struct{}
	counts []store.ThreadCount
	err    error
}

// countEarly starts counting the unread notifications of rooms.
func (s *Service) countEarly(ctx context.Context, userID string, roomIDs []string, upTo int64) *earlyCounts {
	e := &earlyCounts{done: make(chan struct{})}
	go func() {
		defer close(e.done)
		e.counts, e.err = s.hooks.NotificationCounts(ctx, userID, roomIDs, upTo)
	}()
	return e
}

// wait waits for the counts (nil: none were started).
func (e *earlyCounts) wait() {
	if e != nil {
		<-e.done
	}
}
